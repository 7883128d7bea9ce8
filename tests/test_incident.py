"""The documented incident, replayed against the guard with an injected clock.

A docs chat at ~130 requests/minute goes to 10x (1,300/minute) for ten minutes, then
back. Under-attack mode must engage within 60 s of the spike, the spend breaker must
hold upstream spend under its ceiling, alerts must fire, and the mode must return to
normal after the spike within the configured hysteresis. No sleeping: time is injected.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator

import orjson
import pytest
from aiohttp import web
from tests.conftest import free_port

from tokenward.decision import Action
from tokenward.facts import RequestFacts, parse_call
from tokenward.guard import Guard, RequestOutcome
from tokenward.money.spike import RouteMode
from tokenward.money.usage import Usage
from tokenward.policy import parse_policy
from tokenward.proof import KeyRing, issue_challenge, solve
from tokenward.store import MemoryStore

CHAT = "/v1/chat/completions"
START = 1_800_000_000.0
COST = 0.02  # dollars per call: 2,000 output tokens at $10 per million
CEILING = 8.0  # dollars per minute: ~3x the baseline's $2.60


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A real webhook receiver on a loopback socket."""
    events: list[dict] = []
    loop = asyncio.new_event_loop()
    port = free_port()

    async def hook(request: web.Request) -> web.Response:
        events.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/hook", events
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def facts(guard: Guard, i: int, ip: str, challenge: dict | None = None) -> RequestFacts:
    body = orjson.dumps({"model": "demo-1", "max_tokens": 2000, "messages": [{"role": "user", "content": f"q{i}"}]})
    route = guard.policy.route_for(CHAT)
    if challenge is None:
        challenge = issue_challenge(guard.keys, CHAT, 0, 120, guard.clock()).to_wire()
    nonce = solve(challenge["challenge"], body, challenge["difficulty"])
    headers = {"content-type": "application/json", "tokenward-proof": f"v1.{challenge['challenge']}.{nonce}"}
    call = parse_call(route.api, body)
    return RequestFacts(
        request_id=f"r{i}", received_at=guard.clock(), method="POST", path=CHAT, client_ip=ip,
        headers=headers, raw_headers=[], body=body, route=route, call=call,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_incident_replay(receiver: tuple[str, list[dict]]) -> None:
    hook, delivered = receiver
    clock = Clock()
    policy = parse_policy({
        "proof": {"difficulty": 0},
        "prices": {"demo-1": {"input": 0, "output": 10}, "default": {"input": 0, "output": 10}},
        "breaker": {"ceiling": CEILING, "window": 60, "min_open": 30},
        "spike": {"k": 3, "release": 1.5, "cool_down": 300, "warmup": 30, "min_requests": 60},
        "limits": [], "weights": {"behaviour/*": 0},
        "alerts": {"webhook": hook, "base_delay": 0.01, "max_attempts": 3},
        "log": "sqlite:///unused.db",
    })  # fmt: skip
    store = MemoryStore(clock=clock)
    guard = Guard(policy, store=store, keys=KeyRing.generate(), clock=clock)
    await guard.start()
    rng = random.Random(5)
    spend_by_minute: dict[int, float] = {}
    modes: list[tuple[float, RouteMode]] = []
    refused_by_breaker = challenged = 0
    timeline = [(70, 130), (10, 1300), (20, 130)]  # (minutes, requests per minute)
    minute = 0
    i = 0
    for minutes, rate in timeline:
        for _ in range(minutes):
            for k in range(rate):
                clock.now = START + minute * 60 + (k + rng.random()) * 60 / rate
                # Attack traffic comes from a rotating pool; legit users from a stable one.
                ip = f"198.51.{rng.randrange(200)}.{rng.randrange(1, 250)}" if rate > 130 else f"203.0.113.{k % 200}"
                f = facts(guard, i, ip)
                decision = await guard.check(f)
                if decision.code == "challenge":  # under attack: clients re-solve a harder proof
                    await guard.finish(f, decision, RequestOutcome(), 0.1, 1.0)
                    await guard.settled()
                    challenged += 1
                    f = facts(guard, i, ip, decision.challenge)  # type: ignore[arg-type]
                    decision = await guard.check(f)
                outcome = RequestOutcome()
                if decision.forwards:
                    outcome.status = 200
                    outcome.usage = Usage(50, 2000, True)
                    spend_by_minute[minute] = spend_by_minute.get(minute, 0.0) + COST
                elif decision.code == "spend_limit":
                    refused_by_breaker += 1
                await guard.finish(f, decision, outcome, 0.1, 1.0)
                await guard.settled()  # settling runs as its own task; with a fake clock, keep order
                i += 1
            modes.append((clock.now, guard.spike.mode(CHAT)))
            minute += 1
    spike_start = START + 70 * 60
    engaged = next(t for t, m in modes if m is RouteMode.UNDER_ATTACK)
    assert engaged - spike_start <= 60, f"engaged {engaged - spike_start:.0f}s after the spike"
    assert all(m is RouteMode.NORMAL for t, m in modes if t < spike_start)
    spike_end = START + 80 * 60
    back = next(t for t, m in modes if t > spike_end and m is RouteMode.NORMAL)
    hysteresis = policy.spike.cool_down + 2 * policy.spike.bucket
    assert back - spike_end <= hysteresis + 60, f"normal again {back - spike_end:.0f}s after the spike"
    assert all(m is RouteMode.UNDER_ATTACK for t, m in modes if spike_start + 60 < t < spike_end)
    # The breaker held spend per minute under the ceiling throughout, and it did act.
    assert max(spend_by_minute.values()) <= CEILING + 1e-9
    assert refused_by_breaker > 0
    assert challenged > 0  # under attack, proofs got harder
    baseline = sum(spend_by_minute[m] for m in range(60, 70)) / 10
    assert 2.0 < baseline < 3.2
    await guard.close()  # drains the alerter
    names = [e["event"] for e in delivered]
    assert "spike/under_attack" in names and "spike/normal" in names and "breaker/open" in names, names
    assert names.index("spike/under_attack") < names.index("spike/normal")
    decision_after = await guard.check(facts(guard, i, "203.0.113.1"))
    assert decision_after.action is Action.ALLOW
