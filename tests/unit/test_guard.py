"""The guard pipeline over RequestFacts built by hand: proof, replay, shadow, outages, log."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from tokenward.decision import Action, Decision
from tokenward.facts import RequestFacts
from tokenward.guard import Guard, RequestOutcome
from tokenward.log import DecisionRecord
from tokenward.policy import Policy, parse_policy
from tokenward.proof import KeyRing, issue_challenge, solve
from tokenward.store import MemoryStore, Op, StoreMethods, StoreUnavailable

NOW = 1_700_000_000.0
CHAT = "/v1/chat/completions"
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
WIRE_KEYS = {"v", "challenge", "difficulty", "expires_at"}


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ListLog:
    """A decision log that keeps records in a list."""

    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []
        self.started = False
        self.closed = False

    def record(self, rec: DecisionRecord) -> None:
        self.records.append(rec)

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True


class DownStore(StoreMethods):
    """A store whose backend is unreachable (test double for an outage)."""

    def __init__(self) -> None:
        self.closed = False

    async def execute(self, ops: Sequence[Op]) -> list[Any]:
        raise StoreUnavailable("connection refused")

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        self.closed = True


def make_policy(**settings: Any) -> Policy:
    data: dict[str, Any] = {
        "proof": {"difficulty": 8, "ttl": 60},
        "routes": [
            {"path": CHAT, "api": "openai"},
            {"path": "/v1/messages", "api": "anthropic"},
            {"path": "/api/chat", "api": "custom", "mode": "shadow"},
            {"path": "/api/hard", "api": "custom", "difficulty": 10},
            {"path": "/v1/models", "protect": False},
        ],
    }
    data.update(settings)
    return parse_policy(data)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def log() -> ListLog:
    return ListLog()


@pytest.fixture
def guard(clock: FakeClock, keys: KeyRing, log: ListLog) -> Guard:
    return Guard(make_policy(), store=MemoryStore(clock=clock), keys=keys, log=log, clock=clock)


def facts_for(
    guard: Guard,
    path: str = CHAT,
    *,
    body: bytes = BODY,
    proof: str | None = None,
    signals: str | None = None,
    now: float = NOW,
    problem: str | None = None,
    request_id: str = "req-1",
) -> RequestFacts:
    headers = {"content-type": "application/json"}
    if proof is not None:
        headers["tokenward-proof"] = proof
    if signals is not None:
        headers["tokenward-signals"] = signals
    return RequestFacts(
        request_id=request_id,
        received_at=now,
        method="POST",
        path=path,
        client_ip="203.0.113.7",
        headers=headers,
        raw_headers=[(k.encode(), v.encode()) for k, v in headers.items()],
        body=body,
        route=guard.policy.route_for(path),
        problem=problem,
    )


def solved_proof(
    guard: Guard,
    path: str = CHAT,
    *,
    body: bytes = BODY,
    signals: str | None = None,
    difficulty: int | None = None,
    now: float = NOW,
) -> str:
    route = guard.policy.route_for(path)
    assert route is not None
    bits = guard.policy.difficulty_for(route) if difficulty is None else difficulty
    c = issue_challenge(guard.keys, route.path, bits, guard.policy.ttl_for(route), now)
    nonce = solve(c.token, body, bits, signals.encode() if signals is not None else None)
    return f"v1.{c.token}.{nonce}"


def assert_refused(decision: Decision, code: str, status: int = 401) -> None:
    assert decision.code == code
    assert decision.status == status
    assert not decision.forwards
    assert decision.message
    assert decision.header == decision.action.value != "allow"


def assert_fresh_challenge(decision: Decision, difficulty: int = 8) -> None:
    assert decision.challenge is not None
    assert set(decision.challenge) == WIRE_KEYS
    assert decision.challenge["v"] == 1
    assert decision.challenge["difficulty"] == difficulty
    assert decision.challenge["expires_at"] == int(NOW + 60)


# -- allow --------------------------------------------------------------------------------


async def test_valid_proof_is_allowed(guard: Guard) -> None:
    decision = await guard.check(facts_for(guard, proof=solved_proof(guard)))
    assert decision.action is Action.ALLOW
    assert decision.name == "proof/ok"
    assert decision.reasons == ("proof/ok",)
    assert decision.forwards and not decision.shadow
    assert decision.status == 200
    assert decision.header == "allow"
    assert decision.code is None and decision.challenge is None
    assert decision.proof is not None and decision.proof["difficulty"] == 8


async def test_valid_proof_with_signals_header_is_allowed(guard: Guard) -> None:
    proof = solved_proof(guard, signals="eyJhIjoxfQ")
    decision = await guard.check(facts_for(guard, proof=proof, signals="eyJhIjoxfQ"))
    assert decision.name == "proof/ok"


async def test_proof_evidence_records_the_age(guard: Guard) -> None:
    proof = solved_proof(guard, now=NOW - 2.5)
    decision = await guard.check(facts_for(guard, proof=proof))
    assert decision.name == "proof/ok"
    assert decision.proof is not None
    assert decision.proof["age_ms"] == 2500.0
    assert decision.signals[0].evidence["age_ms"] == 2500.0


async def test_unprotected_route_is_allowed_without_proof(guard: Guard) -> None:
    decision = await guard.check(facts_for(guard, "/v1/models"))
    assert decision.action is Action.ALLOW
    assert decision.name == "route/unprotected"
    assert decision.forwards


async def test_path_without_a_route_is_not_judged_by_the_guard(guard: Guard) -> None:
    # other_routes (pass/refuse) is the HTTP layer's job; the guard only sees routes.
    decision = await guard.check(facts_for(guard, "/nowhere"))
    assert decision.name == "route/unprotected"


# -- refusals ----------------------------------------------------------------------------------


async def test_missing_proof_is_proof_required_with_a_challenge(guard: Guard) -> None:
    decision = await guard.check(facts_for(guard))
    assert decision.action is Action.CHALLENGE
    assert decision.name == "proof/missing"
    assert_refused(decision, "proof_required")
    assert_fresh_challenge(decision)


async def test_attached_challenge_can_be_solved_and_is_then_allowed(guard: Guard) -> None:
    refused = await guard.check(facts_for(guard))
    assert refused.challenge is not None
    token, bits = refused.challenge["challenge"], refused.challenge["difficulty"]
    proof = f"v1.{token}.{solve(token, BODY, bits)}"
    assert (await guard.check(facts_for(guard, proof=proof))).name == "proof/ok"


async def test_route_difficulty_is_used_for_the_challenge(guard: Guard) -> None:
    decision = await guard.check(facts_for(guard, "/api/hard"))
    assert_fresh_challenge(decision, difficulty=10)


async def test_replayed_proof_is_refused(guard: Guard) -> None:
    proof = solved_proof(guard)
    first = await guard.check(facts_for(guard, proof=proof, request_id="a"))
    second = await guard.check(facts_for(guard, proof=proof, request_id="b"))
    assert first.name == "proof/ok"
    assert second.name == "proof/replayed"
    assert_refused(second, "proof_replayed")
    assert_fresh_challenge(second)


async def test_concurrent_copies_of_one_proof_are_allowed_once(guard: Guard) -> None:
    proof = solved_proof(guard)
    decisions = await asyncio.gather(
        *(guard.check(facts_for(guard, proof=proof, request_id=str(i))) for i in range(50))
    )
    names = [d.name for d in decisions]
    assert names.count("proof/ok") == 1
    assert names.count("proof/replayed") == 49


async def test_replay_is_refused_until_after_expiry(guard: Guard) -> None:
    proof = solved_proof(guard)
    assert (await guard.check(facts_for(guard, proof=proof))).name == "proof/ok"
    late = await guard.check(facts_for(guard, proof=proof, now=NOW + 59.9))
    assert late.code == "proof_replayed"
    expired = await guard.check(facts_for(guard, proof=proof, now=NOW + 60))
    assert expired.code == "proof_expired"


@pytest.mark.parametrize("header", ["v1.nonsense.1", "v2.abc.1", "Bearer xyz", "v1..0", "v1.AAAA.99999999999999999999"])
async def test_malformed_proof_is_proof_invalid(guard: Guard, header: str) -> None:
    decision = await guard.check(facts_for(guard, proof=header))
    assert decision.name == "proof/invalid"
    assert_refused(decision, "proof_invalid")
    assert_fresh_challenge(decision)


async def test_proof_signed_by_another_key_is_proof_invalid(guard: Guard) -> None:
    stranger = Guard(guard.policy, store=MemoryStore(), keys=KeyRing.generate(), clock=FakeClock())
    decision = await guard.check(facts_for(guard, proof=solved_proof(stranger)))
    assert_refused(decision, "proof_invalid")


async def test_expired_proof_is_proof_expired(guard: Guard) -> None:
    proof = solved_proof(guard, now=NOW - 61)
    decision = await guard.check(facts_for(guard, proof=proof))
    assert decision.name == "proof/expired"
    assert_refused(decision, "proof_expired")


async def test_proof_for_another_route_is_route_mismatch(guard: Guard) -> None:
    proof = solved_proof(guard, "/v1/messages")
    decision = await guard.check(facts_for(guard, proof=proof))
    assert decision.name == "proof/route_mismatch"
    assert_refused(decision, "route_mismatch")


async def test_proof_for_another_body_is_body_mismatch(guard: Guard) -> None:
    other = BODY.replace(b"hi", b"a much more expensive question")
    # A nonce for the other body also fits BODY with p = 2^-8: then try another challenge.
    for _ in range(100):
        proof = solved_proof(guard, body=other)
        decision = await guard.check(facts_for(guard, proof=proof))
        if decision.name != "proof/ok":
            break
    assert decision.name == "proof/body_mismatch"
    assert_refused(decision, "body_mismatch")


async def test_too_easy_proof_is_challenge(guard: Guard) -> None:
    proof = solved_proof(guard, "/api/hard", difficulty=8)
    decision = await guard.check(facts_for(guard, "/api/hard", proof=proof))
    assert decision.name == "proof/challenge"
    assert_refused(decision, "challenge")
    assert_fresh_challenge(decision, difficulty=10)


async def test_a_refused_proof_does_not_burn_the_challenge(guard: Guard) -> None:
    # A proof refused before the consume step (here: wrong route) leaves nothing behind.
    proof = solved_proof(guard)
    assert (await guard.check(facts_for(guard, "/v1/messages", proof=proof))).code
    assert (await guard.check(facts_for(guard, proof=proof))).name == "proof/ok"


async def test_bad_request_is_refused_before_the_proof(guard: Guard) -> None:
    decision = await guard.check(facts_for(guard, body=b"{", proof=solved_proof(guard, body=b"{"), problem="not JSON"))
    assert decision.action is Action.INVALID
    assert decision.name == "request/bad"
    assert_refused(decision, "bad_request", status=400)
    assert decision.message == "not JSON"


# -- shadow mode ------------------------------------------------------------------------------


async def test_policy_shadow_mode_forwards_but_keeps_the_verdict(clock: FakeClock, keys: KeyRing) -> None:
    guard = Guard(make_policy(mode="shadow"), store=MemoryStore(clock=clock), keys=keys)
    decision = await guard.check(facts_for(guard))
    assert decision.shadow is True
    assert decision.forwards is True
    assert decision.header == "allow"
    assert decision.status == 200
    assert decision.action is Action.CHALLENGE  # what enforce mode would have done
    assert decision.code == "proof_required"


async def test_route_shadow_mode_forwards(guard: Guard) -> None:
    decision = await guard.check(facts_for(guard, "/api/chat"))
    assert decision.shadow and decision.forwards
    assert decision.header == "allow"
    assert decision.name == "proof/missing"


async def test_route_enforce_overrides_policy_shadow(clock: FakeClock, keys: KeyRing) -> None:
    policy = make_policy(mode="shadow", routes=[{"path": CHAT, "api": "openai", "mode": "enforce"}])
    guard = Guard(policy, store=MemoryStore(clock=clock), keys=keys)
    decision = await guard.check(facts_for(guard))
    assert not decision.shadow and not decision.forwards


async def test_shadow_mode_does_not_mark_allowed_requests(guard: Guard) -> None:
    decision = await guard.check(facts_for(guard, "/api/chat", proof=solved_proof(guard, "/api/chat")))
    assert decision.name == "proof/ok"
    assert decision.shadow is False


async def test_shadow_mode_still_counts_replays(guard: Guard) -> None:
    proof = solved_proof(guard, "/api/chat")
    await guard.check(facts_for(guard, "/api/chat", proof=proof))
    again = await guard.check(facts_for(guard, "/api/chat", proof=proof))
    assert again.name == "proof/replayed"
    assert again.shadow and again.forwards


async def test_shadow_mode_forwards_when_the_store_is_down(keys: KeyRing, clock: FakeClock) -> None:
    # DESIGN.md §2: shadow mode "computes and logs everything but always forwards".
    guard = Guard(make_policy(mode="shadow"), store=DownStore(), keys=keys, clock=clock)
    decision = await guard.check(facts_for(guard, proof=solved_proof(guard)))
    assert decision.code == "store_unavailable"
    assert decision.forwards


async def test_shadow_mode_forwards_a_request_it_cannot_parse(keys: KeyRing, clock: FakeClock) -> None:
    guard = Guard(make_policy(mode="shadow"), store=MemoryStore(clock=clock), keys=keys)
    decision = await guard.check(facts_for(guard, body=b"{", problem="not JSON"))
    assert decision.code == "bad_request"
    assert decision.forwards


# -- store outage -----------------------------------------------------------------------------


async def test_store_outage_is_store_unavailable(keys: KeyRing, clock: FakeClock) -> None:
    guard = Guard(make_policy(), store=DownStore(), keys=keys, clock=clock)
    decision = await guard.check(facts_for(guard, proof=solved_proof(guard)))
    assert decision.code == "store_unavailable"
    assert decision.status == 503
    assert decision.name == "store/unavailable"
    assert decision.retry_after is not None and decision.retry_after > 0
    assert not decision.forwards
    assert decision.proof is not None and "connection refused" in decision.proof["error"]


async def test_store_outage_does_not_matter_without_a_proof(keys: KeyRing, clock: FakeClock) -> None:
    # No proof: nothing to consume, the challenge is stateless.
    guard = Guard(make_policy(), store=DownStore(), keys=keys, clock=clock)
    decision = await guard.check(facts_for(guard))
    assert decision.code == "proof_required"


# -- challenges and lifecycle -------------------------------------------------------------------


async def test_challenge_for_uses_the_guard_clock(guard: Guard, clock: FakeClock) -> None:
    route = guard.policy.route_for(CHAT)
    assert route is not None
    clock.now = NOW + 1000
    assert guard.challenge_for(route).expires_at == NOW + 1060
    assert guard.challenge_for(route, now=NOW).expires_at == NOW + 60


async def test_start_and_close_reach_the_log_and_store(keys: KeyRing, log: ListLog) -> None:
    store = DownStore()
    guard = Guard(make_policy(), store=store, keys=keys, log=log)
    await guard.start()
    await guard.close()
    assert log.started and log.closed and store.closed


# -- the decision log ---------------------------------------------------------------------------


async def test_record_writes_one_decision_record(guard: Guard, log: ListLog) -> None:
    facts = facts_for(guard, proof=solved_proof(guard), request_id="rid-42")
    decision = await guard.check(facts)
    outcome = RequestOutcome()
    outcome.status, outcome.upstream_status = 200, 200
    guard.record(facts, decision, outcome, decision_ms=1.23456, total_ms=9.87654)
    assert len(log.records) == 1
    rec = log.records[0]
    assert rec.request_id == "rid-42"
    assert rec.ts == NOW
    assert (rec.method, rec.path, rec.route, rec.client_ip) == ("POST", CHAT, CHAT, "203.0.113.7")
    assert (rec.action, rec.name, rec.code, rec.shadow_action) == ("allow", "proof/ok", None, None)
    assert rec.reasons == ["proof/ok"]
    assert rec.signals[0]["name"] == "proof/ok"
    assert rec.signals[0]["evidence"]["difficulty"] == 8
    assert rec.proof is not None and rec.proof["difficulty"] == 8
    assert (rec.status, rec.upstream_status, rec.error) == (200, 200, None)
    assert (rec.decision_ms, rec.total_ms) == (1.235, 9.877)


async def test_record_of_a_shadow_decision_keeps_both_actions(guard: Guard, log: ListLog) -> None:
    facts = facts_for(guard, "/api/chat")
    decision = await guard.check(facts)
    guard.record(facts, decision, RequestOutcome(), 0.1, 0.2)
    rec = log.records[0]
    assert rec.action == "allow"
    assert rec.shadow_action == "challenge"
    assert rec.code == "proof_required"
    assert rec.reasons == ["proof/missing"]


async def test_record_of_a_refusal(guard: Guard, log: ListLog) -> None:
    facts = facts_for(guard, proof="v1.x.1")
    decision = await guard.check(facts)
    outcome = RequestOutcome()
    outcome.status = decision.status
    guard.record(facts, decision, outcome, 0.5, 0.6)
    rec = log.records[0]
    assert (rec.action, rec.code, rec.status) == ("challenge", "proof_invalid", 401)
    assert rec.proof is None


async def test_record_without_a_route(guard: Guard, log: ListLog) -> None:
    facts = facts_for(guard, "/nowhere")
    guard.record(facts, await guard.check(facts), RequestOutcome(), 0.0, 0.0)
    assert log.records[0].route is None
    assert log.records[0].path == "/nowhere"
