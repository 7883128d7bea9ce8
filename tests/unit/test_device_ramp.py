"""Device trust that is earned (issue 16) and challenges that mean something for scripts.

A device starts with ``devices.ramp.start`` of every device-keyed limit and budget; each
call it had answered (in full or degraded: not refused) moves it towards the whole,
reached after ``full_after`` such calls. And a call that comes back
with the harder proof while still carrying a sign of automation (no input behind a long
prompt...) from a device with no clean call gets the threshold's ``automated`` action
(``block`` by default) instead of ``answered``.

The requests are a browser persona's (the simulator's: its headers in Chrome's order, its
signals report), signed by a device key stored the way registration stores it.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from typing import Any

import pytest

from tokenward.decision import Action
from tokenward.guard import Guard
from tokenward.guard.base import INF
from tokenward.guard.devices import DeviceTrust
from tokenward.limits import Keys
from tokenward.money.budgets import BudgetSpec, budgets_for
from tokenward.policy import DeviceRamp
from tokenward.proof import KeyRing
from tokenward.sdk.device import DeviceKey
from tokenward.simulate.population import browser_fetch_headers, make_persona, signals_value
from tokenward.store import Hit, MemoryStore, Put

from .test_guard import CHAT, NOW, FakeClock, ListLog, facts_for, make_policy, solved_proof

ORIGIN = "https://chat.example"
PROMPT = "Write a 600-word blog post about the benefits of remote work for small companies."
BROWSER_ROUTE = {"path": CHAT, "api": "openai", "clients": "browser"}
# An operator's rule whose weight alone reaches the challenge threshold: answered, degraded.
DEGRADED = {"name": "odd", "action": "weigh", "header": {"user-agent": "Chrome"}, "weight": 3}
PERSONA = make_persona(random.Random(4))


def body_of(text: str = PROMPT, n: int = 0) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{text} ({n})"}]}).encode()


def guard_with(**settings: Any) -> Guard:
    clock = FakeClock()
    policy = make_policy(routes=[BROWSER_ROUTE], **settings)
    return Guard(policy, store=MemoryStore(clock=clock), keys=KeyRing.generate(), log=ListLog(), clock=clock)


async def stored_device(guard: Guard, clean: float = 0.0) -> DeviceKey:
    """A registered device (its key where registration puts it), with ``clean`` calls behind it."""
    device = DeviceKey()
    ops: list[Any] = [Put(f"devkey:{device.id}", device.spki, 3600)]
    if clean:
        ops.append(Hit(f"clean:{device.id}", INF, guard.policy.devices.ramp.window, clean))
    await guard.store.execute(ops)
    return device


def request(
    guard: Guard, device: DeviceKey, body: bytes, *, typed: bool, difficulty: int | None = None, rid: str = "r"
) -> Any:
    chars = len(json.loads(body)["messages"][0]["content"])
    counts = {"keys": chars if typed else 0, "pastes": 0, "pasted_chars": 0, "chars": chars, "focus_ms": 9000}
    signals = signals_value(PERSONA, now=NOW, input_counts=counts)
    proof = solved_proof(guard, body=body, signals=signals, difficulty=difficulty)
    device_header = device.header(proof, body)
    headers = [
        ("Host", "chat.example"),
        *browser_fetch_headers(PERSONA, ORIGIN, ORIGIN + "/", proof=proof, signals=signals, device=device_header),
    ]
    f = facts_for(guard, body=body, proof=proof, signals=signals, request_id=rid)
    return replace(
        f,
        headers={k.lower(): v for k, v in headers},
        raw_headers=[(k.lower().encode(), v.encode()) for k, v in headers],
    )


async def send(guard: Guard, device: DeviceKey, n: int, *, typed: bool = True) -> Any:
    """One call, re-sent once with the harder proof when it is challenged (as the SDK does)."""
    body = body_of(n=n)
    decision = await settled(guard, await guard.check(request(guard, device, body, typed=typed, rid=f"c{n}")))
    if decision.action is Action.CHALLENGE and decision.code == "challenge":
        bits = decision.challenge["difficulty"]
        again = request(guard, device, body, typed=typed, difficulty=bits, rid=f"c{n}b")
        decision = await settled(guard, await guard.check(again))
    return decision


async def settled(guard: Guard, decision: Any) -> Any:
    """What the HTTP layer does after the response: settle (a clean call is counted there,
    a refused one gives its counts back)."""
    if decision.work.settle:
        await guard.store.execute(list(decision.work.settle))
    return decision


LIMIT = [{"name": "per-device", "key": "device", "limit": 8, "window": 600}]
SLOW = {"ramp": {"full_after": 20}}  # a slow ramp, to see the share at work


async def test_a_typed_call_from_a_persona_is_allowed() -> None:
    guard = guard_with()
    decision = await send(guard, await stored_device(guard), 0)
    assert decision.action is Action.ALLOW, [(s.name, s.score) for s in decision.signals if s.score]


async def test_a_fresh_device_gets_a_share_of_its_limit() -> None:
    # start 0.25 of 8 = 2 calls, +0.3 for each clean call: the third call (count 3 > 2.6) is over.
    guard = guard_with(limits=LIMIT, devices=SLOW)
    device = await stored_device(guard)
    decisions = [await send(guard, device, n) for n in range(4)]
    assert [d.action for d in decisions[:2]] == [Action.ALLOW, Action.ALLOW]
    third = decisions[2]
    assert third.action is Action.THROTTLE and third.name == "limit/per-device", third.name
    assert third.retry_after is not None and third.retry_after >= 1


async def test_a_device_with_clean_calls_behind_it_gets_the_whole_limit() -> None:
    guard = guard_with(limits=LIMIT, devices=SLOW)
    device = await stored_device(guard, clean=20)
    decisions = [await send(guard, device, n) for n in range(9)]
    assert [d.action for d in decisions[:8]] == [Action.ALLOW] * 8
    assert decisions[8].action is Action.THROTTLE and decisions[8].name == "limit/per-device"


async def test_without_the_ramp_a_fresh_device_gets_the_whole_limit() -> None:
    guard = guard_with(limits=LIMIT, devices={"ramp": {"enabled": False}})
    device = await stored_device(guard)
    decisions = [await send(guard, device, n) for n in range(9)]
    assert [d.action for d in decisions[:8]] == [Action.ALLOW] * 8
    assert decisions[8].action is Action.THROTTLE


async def test_with_the_default_ramp_a_person_answered_every_time_is_never_slowed() -> None:
    # 0.25 + 0.15 per answered call grows faster than the calls: all 8 of a burst pass.
    guard = guard_with(limits=LIMIT)
    device = await stored_device(guard)
    decisions = [await send(guard, device, n) for n in range(9)]
    assert [d.action for d in decisions[:8]] == [Action.ALLOW] * 8
    assert decisions[8].action is Action.THROTTLE


async def test_a_degraded_call_is_a_clean_call() -> None:
    # A person whose calls are degraded (an ambiguous risk) is still answered: not slowed.
    guard = guard_with(limits=LIMIT, rules=[DEGRADED])
    device = await stored_device(guard)
    decisions = [await send(guard, device, n) for n in range(3)]
    assert [d.action for d in decisions] == [Action.DEGRADE] * 3, [d.name for d in decisions]
    assert guard.trust.clean(device.id) == 2.0  # as the third call's batch read it


async def test_refused_calls_earn_nothing() -> None:
    # Untyped calls are refused (below): the device stays at its start share however long it tries.
    guard = guard_with(limits=LIMIT, devices=SLOW)
    device = await stored_device(guard)
    for n in range(5):
        await send(guard, device, n, typed=False)
    assert guard.trust.clean(device.id) == 0.0
    typed = [await send(guard, device, 10 + n) for n in range(4)]
    # Its untyped calls were given back (refused calls do not count), so it starts over at 2 + 0.3/call.
    assert [d.action for d in typed] == [Action.ALLOW, Action.ALLOW, Action.THROTTLE, Action.THROTTLE]


async def test_an_untyped_call_from_a_fresh_device_is_refused_after_its_challenge() -> None:
    guard = guard_with()
    decision = await send(guard, await stored_device(guard), 0, typed=False)
    assert decision.action is Action.BLOCK and decision.name == "risk/3/automated", decision.name
    assert "browser/no-input" in decision.reasons and "challenge/automated" in decision.reasons
    assert decision.code == "blocked" and "type your message again" in (decision.message or "")


async def test_an_untyped_call_from_a_device_with_clean_calls_is_only_degraded() -> None:
    # A person who dictated a message, on a device with a history: not refused.
    guard = guard_with()
    decision = await send(guard, await stored_device(guard, clean=3), 0, typed=False)
    assert decision.action is Action.DEGRADE and decision.name == "risk/3/answered", decision.name


async def test_the_operator_may_answer_automation_like_any_other_answered_call() -> None:
    thresholds = [{"score": 9, "action": "block"}, {"score": 3, "action": "challenge", "automated": "answered"}]
    guard = guard_with(thresholds=thresholds)
    decision = await send(guard, await stored_device(guard), 0, typed=False)
    assert decision.action is Action.DEGRADE and decision.name == "risk/3/answered"


def test_the_share_grows_with_clean_calls_to_the_whole() -> None:
    ramp = DeviceRamp(start=0.25, full_after=20)
    shares = [ramp.share(n) for n in range(0, 30)]
    assert shares[0] == 0.25 and shares[20] == 1.0 and shares[29] == 1.0
    assert all(a < b for a, b in itertools.pairwise(shares[:21]))
    assert DeviceRamp(enabled=False).share(0) == 1.0
    with pytest.raises(ValueError):
        DeviceRamp(start=0)


def test_device_budgets_are_the_devices_share() -> None:
    specs = [
        BudgetSpec(name="dev", key="device", usd=1.0, window=3600),
        BudgetSpec(name="acct", key="account", usd=2.0, window=3600),
    ]
    with_device = Keys("203.0.113.7", "203.0.113.0/24", CHAT, device="d1", account="a1")
    limits = {b.key.split(":")[1]: b.limit for b in budgets_for(specs, with_device, device_share=0.25)}
    assert limits == {"dev": 0.25, "acct": 2.0}
    # Never less than one call's worst case (within the whole budget): else it could never earn more.
    limits = {b.key.split(":")[1]: b.limit for b in budgets_for(specs, with_device, device_share=0.25, one_call=0.4)}
    assert limits == {"dev": 0.4, "acct": 2.0}
    # Under attack new identities get less; a device that earned its whole budget is not new.
    limits = {b.key.split(":")[1]: b.limit for b in budgets_for(specs, with_device, tighten=0.25, device_share=1.0)}
    assert limits == {"dev": 1.0, "acct": 0.5}
    # Without a verified device the budget falls back to the address, and is not scaled.
    no_device = replace(with_device, device=None)
    limits = {b.key.split(":")[1]: b.limit for b in budgets_for(specs, no_device, device_share=0.25)}
    assert limits == {"dev": 1.0, "acct": 2.0}


async def test_the_next_budget_uses_what_the_last_batch_read() -> None:
    guard = guard_with(budgets=[{"name": "dev", "key": "device", "usd": 1.0, "window": 3600}])
    device = await stored_device(guard, clean=20)
    assert guard.trust.clean(device.id) == 0.0  # not seen here yet: the start share
    await send(guard, device, 0)
    assert guard.trust.clean(device.id) == 20.0


def test_the_trust_cache_is_bounded() -> None:
    trust = DeviceTrust(capacity=3)
    for i in range(10):
        trust.learn(f"d{i}", float(i))
    assert len(trust) == 3 and trust.clean("d9") == 9.0 and trust.clean("d0") == 0.0
