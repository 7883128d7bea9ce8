"""A challenge must mean something (issue 16): a call whose risk reaches a ``challenge``
threshold and comes back with the harder proof, but with nothing new about who sent it,
gets the threshold's ``answered`` action (``degrade`` by default), not an answer; only
new evidence (a risk below the threshold) or an operator's ``answered: allow`` lets it
through. Any solver pays the extra bits in milliseconds: work is not a person."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tokenward.decision import Action
from tokenward.guard import Guard
from tokenward.proof import KeyRing
from tokenward.store import MemoryStore

from .test_guard import NOW, FakeClock, ListLog, facts_for, make_policy, solved_proof

# An operator's rule that weighs a tell: its weight alone reaches the challenge threshold.
TELL = {"name": "headless", "action": "weigh", "header": {"x-tell": "headless"}, "weight": 3}


def guard_with(**settings: Any) -> Guard:
    clock = FakeClock()
    policy = make_policy(rules=[TELL], **settings)
    return Guard(policy, store=MemoryStore(clock=clock), keys=KeyRing.generate(), log=ListLog(), clock=clock)


def facts(guard: Guard, proof: str | None, *, tell: bool = True, request_id: str = "r") -> Any:
    f = facts_for(guard, proof=proof, request_id=request_id)
    if not tell:
        return f
    headers = {**f.headers, "x-tell": "headless"}
    return replace(f, headers=headers, raw_headers=[*f.raw_headers, (b"x-tell", b"headless")])


async def challenged_then_answered(guard: Guard, *, tell_again: bool = True) -> tuple[Any, Any]:
    first = await guard.check(facts(guard, solved_proof(guard), request_id="first"))
    assert first.action is Action.CHALLENGE and first.code == "challenge"
    bits = first.challenge["difficulty"]
    assert bits == 8 + 4  # the route's difficulty and the threshold's extra bits
    answer = solved_proof(guard, difficulty=bits, now=NOW)
    second = await guard.check(facts(guard, answer, tell=tell_again, request_id="second"))
    return first, second


async def test_a_harder_proof_alone_is_degraded_by_default() -> None:
    _, second = await challenged_then_answered(guard_with())
    assert second.action is Action.DEGRADE and second.forwards
    assert second.name == "risk/3/answered" and "challenge/answered" in second.reasons
    assert second.degrade == {"max_tokens": 256, "model": None}
    assert "rule/headless" in second.reasons  # the log says what was still there


@pytest.mark.parametrize(("answered", "action", "code", "status"), [
    ("block", Action.BLOCK, "blocked", 403),
    ("throttle", Action.THROTTLE, "throttled", 429),
])  # fmt: skip
async def test_the_operator_may_refuse_an_answer_without_new_evidence(
    answered: str, action: Action, code: str, status: int
) -> None:
    thresholds = [{"score": 9, "action": "block"}, {"score": 3, "action": "challenge", "answered": answered}]
    _, second = await challenged_then_answered(guard_with(thresholds=thresholds))
    assert (second.action, second.code, second.status) == (action, code, status)
    assert not second.forwards and second.name == "risk/3/answered"


async def test_new_evidence_lets_the_answer_through() -> None:
    _, second = await challenged_then_answered(guard_with(), tell_again=False)
    assert second.action is Action.ALLOW and second.name == "proof/ok"


async def test_answered_allow_keeps_the_harder_proof_sufficient() -> None:
    thresholds = [{"score": 3, "action": "challenge", "answered": "allow"}]
    _, second = await challenged_then_answered(guard_with(thresholds=thresholds))
    assert second.action is Action.ALLOW and second.name == "proof/ok"


async def test_an_operators_challenge_rule_still_takes_a_harder_proof() -> None:
    rule = {"name": "lab", "action": "challenge", "header": {"x-tell": "headless"}, "extra_bits": 4}
    clock = FakeClock()
    guard = Guard(make_policy(rules=[rule]), store=MemoryStore(clock=clock), keys=KeyRing.generate(), log=ListLog(),
                  clock=clock)  # fmt: skip
    first = await guard.check(facts(guard, solved_proof(guard), request_id="first"))
    assert first.action is Action.CHALLENGE
    answer = solved_proof(guard, difficulty=first.challenge["difficulty"])
    second = await guard.check(facts(guard, answer, request_id="second"))
    assert second.action is Action.ALLOW  # the operator asked for work from these, and got it


async def test_a_low_risk_call_is_untouched() -> None:
    guard = guard_with()
    decision = await guard.check(facts(guard, solved_proof(guard), tell=False))
    assert decision.action is Action.ALLOW and "challenge/answered" not in decision.reasons


def test_answered_is_validated() -> None:
    with pytest.raises(ValueError, match="answered"):
        make_policy(thresholds=[{"score": 3, "action": "challenge", "answered": "maybe"}])
