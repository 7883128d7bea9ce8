"""Requests that bring no work are refused without being judged (guard/unproved.py, issue 17).

The shortcut must say exactly what the pipeline would have said: the same code, the same
decision name, the same bytes in the route's dialect, a challenge that works, one record
in the log. These tests hold it against the pipeline itself (``Guard.check`` over the same
request) and send every request the shortcut must leave alone to the pipeline.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenward.decision import Flavour, refusal_body, refusal_template
from tokenward.facts import RequestFacts
from tokenward.guard import Guard, refuse_unproved
from tokenward.guard.base import MESSAGES
from tokenward.money.spike import RouteMode
from tokenward.proof import KeyRing, issue_challenge, solve, verify_proof
from tokenward.proof.scope import Spent
from tokenward.store import MemoryStore

from .test_guard import BODY, CHAT, NOW, FakeClock, ListLog, facts_for, make_policy, solved_proof

MESSAGES_ROUTE = "/v1/messages"


def guard_with(**settings: Any) -> Guard:
    clock = FakeClock()
    return Guard(make_policy(**settings), store=MemoryStore(clock=clock), keys=KeyRing.generate(), log=ListLog(),
                 clock=clock)  # fmt: skip


def quick(guard: Guard, facts: RequestFacts, peer: str = "203.0.113.7") -> Any:
    assert facts.route is not None
    return refuse_unproved(
        guard, facts.route, facts.method, facts.path, facts.raw_headers, peer, facts.body, facts.request_id,
        facts.received_at, time.perf_counter(),
    )  # fmt: skip


# -- the bytes ---------------------------------------------------------------------------
@given(
    flavour=st.sampled_from(list(Flavour)),
    code=st.sampled_from(["proof_required", "proof_invalid", "proof_expired", "body_mismatch", "route_mismatch"]),
    message=st.text(max_size=80).filter(lambda m: "\x00" not in m),
    difficulty=st.integers(0, 40),
    now=st.floats(0, 4e9),
    ttl=st.floats(1, 86_400),
)
def test_template_and_challenge_json_are_the_bytes_refusal_body_makes(
    flavour: Flavour, code: str, message: str, difficulty: int, now: float, ttl: float
) -> None:
    challenge = issue_challenge(KeyRing.generate(), CHAT, difficulty, ttl, now)
    assert challenge.wire_json() == orjson.dumps(challenge.to_wire())
    head, tail = refusal_template(flavour, code, message)
    assert head + challenge.wire_json() + tail == refusal_body(flavour, code, message, challenge.to_wire())


# -- the same answer as the pipeline ---------------------------------------------------------
def _cases(guard: Guard) -> list[tuple[str, RequestFacts]]:
    valid = solved_proof(guard)
    other_route = solved_proof(guard, "/api/hard")
    token = valid.split(".")[1]
    return [
        ("missing", facts_for(guard)),
        ("missing, anthropic", facts_for(guard, MESSAGES_ROUTE)),
        ("missing, body not JSON", facts_for(guard, body=b"not json")),
        ("garbled", facts_for(guard, proof="v1.nonsense")),
        ("bad nonce text", facts_for(guard, proof=f"v1.{token}.12x")),
        ("forged", facts_for(guard, proof=f"v1.{token[:-4]}AAAA.1")),
        ("other key", facts_for(guard, proof=solved_proof(guard_with()))),
        ("other route", facts_for(guard, proof=other_route)),
        ("other body", facts_for(guard, body=BODY + b" ", proof=valid)),
        ("expired", facts_for(guard, proof=valid, now=NOW + 3600)),
    ]


@pytest.mark.parametrize("index", range(10))
async def test_refusals_match_the_pipeline(index: int) -> None:
    ours, theirs = guard_with(), guard_with()
    theirs.keys = ours.keys  # the same key ring: the same proofs verify on both
    label, facts = _cases(ours)[index]
    answer = quick(ours, facts)
    assert answer is not None, label
    status, headers, content = answer
    decision = await theirs.check(facts)
    assert decision.code is not None and decision.challenge is not None
    assert status == decision.status == 401
    body = orjson.loads(content)
    inner = body["error"]
    expected = orjson.loads(refusal_body(facts.route.api, decision.code, decision.message, decision.challenge))  # type: ignore[union-attr]
    assert inner.pop("challenge").keys() == expected["error"].pop("challenge").keys()
    assert body == expected, label
    names = dict(headers)
    assert names[b"tokenward-decision"] == decision.header.encode() == b"challenge"
    assert names[b"content-length"] == str(len(content)).encode()
    assert names[b"www-authenticate"].startswith(b"Tokenward")
    [record] = ours.log.records  # type: ignore[union-attr]
    assert (record.name, record.code, record.action, record.status) == (decision.name, decision.code, "challenge", 401)
    assert record.route == facts.route.path and record.client_ip == "203.0.113.7"  # type: ignore[union-attr]
    assert record.held_usd and record.held_usd > 0  # what the refusal saved at most, as the pipeline logs it


async def test_its_challenge_is_one_the_pipeline_accepts() -> None:
    guard = guard_with()
    _, _, content = quick(guard, facts_for(guard))
    challenge = orjson.loads(content)["error"]["challenge"]
    assert challenge["difficulty"] == 8  # the route's
    proof = f"v1.{challenge['challenge']}.{solve(challenge['challenge'], BODY, challenge['difficulty'])}"
    assert quick(guard, facts_for(guard, proof=proof)) is None  # work done: the pipeline judges it
    decision = await guard.check(facts_for(guard, proof=proof))
    assert decision.forwards and decision.name == "proof/ok"


async def test_under_attack_the_challenge_is_as_hard_as_the_pipelines() -> None:
    ours, theirs = (
        guard_with(spike={"enabled": True, "difficulty_bonus": 3}),
        guard_with(spike={"enabled": True, "difficulty_bonus": 3}),
    )
    for g in (ours, theirs):  # the detector's verdict, as a spike would leave it
        g.spike.mode = lambda route: RouteMode.UNDER_ATTACK  # type: ignore[method-assign]
    _, _, content = quick(ours, facts_for(ours))
    decision = await theirs.check(facts_for(theirs))
    assert decision.challenge is not None
    assert orjson.loads(content)["error"]["challenge"]["difficulty"] == decision.challenge["difficulty"] == 11


def test_repeated_and_capitalised_headers_are_read_as_the_pipeline_reads_them() -> None:
    guard = guard_with(trusted_proxies=["10.0.0.0/8"])
    valid = solved_proof(guard)
    facts = facts_for(guard, proof=valid)
    # Capitalised: a server that does not lower-case names must not hide a proof or a signature.
    facts.raw_headers[:] = [(k.title(), v) for k, v in facts.raw_headers]
    assert quick(guard, facts) is None
    twice = facts_for(guard, proof=valid)
    twice.raw_headers.append((b"tokenward-proof", valid.encode()))  # two proofs join into one that fails
    assert quick(guard, twice)[2].count(b"proof_invalid") == 1
    forwarded = facts_for(guard)
    forwarded.raw_headers.extend([(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"198.51.100.2")])
    quick(guard, forwarded, peer="10.1.2.3")
    assert guard.log.records[-1].client_ip == "198.51.100.2"  # type: ignore[union-attr]


# -- left to the pipeline ----------------------------------------------------------------
def test_a_valid_proof_goes_to_the_pipeline() -> None:
    guard = guard_with()
    assert quick(guard, facts_for(guard, proof=solved_proof(guard))) is None
    assert guard.log.records == []  # type: ignore[union-attr]


def test_shadow_routes_go_to_the_pipeline() -> None:
    guard = guard_with()
    assert quick(guard, facts_for(guard, "/api/chat")) is None  # mode: shadow in make_policy


def test_signed_routes_go_to_the_pipeline() -> None:
    guard = guard_with(routes=[{"path": CHAT, "api": "openai", "signed": "require"}])
    assert quick(guard, facts_for(guard)) is None


def test_an_open_breaker_goes_to_the_pipeline() -> None:
    guard = guard_with()
    guard.breaker._open_until = NOW + 60  # type: ignore[attr-defined]
    assert quick(guard, facts_for(guard)) is None


def test_a_proof_check_that_passes_on_these_bytes_is_not_refused() -> None:
    """Differential over many bodies: the shortcut refuses exactly when verify_proof fails."""
    guard = guard_with()
    route = guard.policy.route_for(CHAT)
    assert route is not None
    c = issue_challenge(guard.keys, CHAT, 8, 60, NOW)
    nonce = solve(c.token, BODY, 8)
    for i in range(64):
        body = BODY if i == 0 else BODY[:-2] + b"%d}]}" % i
        facts = facts_for(guard, body=body, proof=f"v1.{c.token}.{nonce}")
        fails = not hasattr(verify_proof(guard.keys, f"v1.{c.token}.{nonce}", route=CHAT, body=body,
                                         signals_header=None, now=NOW), "challenge_id")  # fmt: skip
        assert (quick(guard, facts) is not None) == fails
    assert MESSAGES["proof_required"]


# -- replays of a challenge consumed here ----------------------------------------------------
async def test_a_replay_of_a_challenge_consumed_here_is_refused_as_the_pipeline_refuses_it() -> None:
    guard = guard_with()
    proof = solved_proof(guard)
    assert quick(guard, facts_for(guard, proof=proof)) is None  # fresh: the pipeline's
    assert (await guard.check(facts_for(guard, proof=proof))).forwards
    answer = quick(guard, facts_for(guard, proof=proof, request_id="replay"))
    assert answer is not None
    record = guard.log.records[-1]  # type: ignore[union-attr]
    decision = await guard.check(facts_for(guard, proof=proof))  # the pipeline, on the same replay
    assert decision.code == record.code == "proof_replayed" and decision.name == record.name == "proof/replayed"
    body = orjson.loads(answer[2])["error"]
    assert body["code"] == "proof_replayed" and body["message"] == decision.message
    assert decision.proof is not None and record.proof is not None
    assert record.proof.keys() == decision.proof.keys()
    assert record.proof["challenge_id"] == decision.proof["challenge_id"]


async def test_a_replay_of_a_challenge_consumed_elsewhere_is_left_to_the_store() -> None:
    ours = guard_with()
    theirs = Guard(ours.policy, store=ours.store, keys=ours.keys, log=ListLog(), clock=ours.clock)
    proof = solved_proof(ours)
    assert (await theirs.check(facts_for(theirs, proof=proof))).forwards  # another guard consumed it
    assert quick(ours, facts_for(ours, proof=proof)) is None
    assert (await ours.check(facts_for(ours, proof=proof))).code == "proof_replayed"  # the batch finds it


async def test_a_replay_with_a_device_header_is_left_to_the_pipeline() -> None:
    guard = guard_with()
    proof = solved_proof(guard)
    await guard.check(facts_for(guard, proof=proof))
    facts = facts_for(guard, proof=proof)
    facts.raw_headers.append((b"tokenward-device", b"v1.x.y"))
    assert quick(guard, facts) is None


def test_the_record_of_spent_challenges_is_bounded() -> None:
    spent = Spent(cap=3)
    for i in range(5):
        spent.add(bytes([i]) * 16, NOW + 60)
    assert len(spent) == 3
    assert not spent.spent(bytes([0]) * 16, NOW) and spent.spent(bytes([4]) * 16, NOW)
    assert not spent.spent(bytes([4]) * 16, NOW + 61)  # expired: refused as such by the proof check


# -- one retry is enough --------------------------------------------------------------------
ODD = {"name": "odd", "action": "weigh", "header": {"user-agent": "curl"}, "weight": 3}  # reaches `challenge`


def risky(guard: Guard, **kwargs: Any) -> RequestFacts:
    facts = facts_for(guard, **kwargs)
    facts.headers["user-agent"] = "curl/8"
    facts.raw_headers.append((b"user-agent", b"curl/8"))
    return facts


def _retry_with(answer: Any) -> str:
    challenge = orjson.loads(answer[2])["error"]["challenge"]
    return f"v1.{challenge['challenge']}.{solve(challenge['challenge'], BODY, challenge['difficulty'])}"


async def test_after_a_failed_proof_of_ours_one_retry_is_judged_on_its_merits() -> None:
    """A protocol client retries once. When its proof of ours failed (here: expired), the
    new challenge is as hard as the route's risk could ask, so a risky client's retry is
    answered (degraded, the threshold's `answered`), not asked for a harder proof again."""
    guard = guard_with(rules=[ODD])
    expired = risky(guard, proof=solved_proof(guard), now=NOW + 3600)
    answer = quick(guard, expired)
    assert answer is not None and orjson.loads(answer[2])["error"]["code"] == "proof_expired"
    assert orjson.loads(answer[2])["error"]["challenge"]["difficulty"] == 8 + 4
    decision = await guard.check(risky(guard, proof=_retry_with(answer)))
    assert decision.code != "challenge" and decision.forwards, decision


async def test_without_any_proof_the_challenge_is_the_routes_own() -> None:
    """A request without a proof gets the route's difficulty (its risk is not read): a
    risky client is asked for the extra bits when it comes back (docs/risk.md)."""
    guard = guard_with(rules=[ODD])
    answer = quick(guard, risky(guard))
    assert orjson.loads(answer[2])["error"]["challenge"]["difficulty"] == 8
    decision = await guard.check(risky(guard, proof=_retry_with(answer)))
    assert decision.code == "challenge" and decision.challenge is not None
    assert decision.challenge["difficulty"] == 12
