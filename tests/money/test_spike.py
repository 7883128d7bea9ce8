"""Under-attack mode and the spend breaker, replayed on the memory store with a fake clock.

Traffic goes through the real ``Rate`` and ``Reserve``/``Commit`` operations of the
memory store, whose clock the test moves; nothing sleeps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from pydantic import ValidationError

from tokenward.money.spike import (
    BreakerSettings,
    RouteMode,
    SpendBreaker,
    SpikeDetector,
    SpikeSettings,
    StateChange,
)
from tokenward.store.memory import MemoryStore
from tokenward.store.ops import Commit, RateResult, Reserve

ROUTE = "/v1/chat/completions"
MINUTE = 60.0
T0 = 1_800_000_000.0  # a whole number of minutes: bucket edges at whole minutes


class Replay:
    """Drives requests through the store's Rate op and the detector, per request."""

    def __init__(self, settings: SpikeSettings | None = None) -> None:
        self.now = T0
        self.store = MemoryStore(clock=lambda: self.now)
        self.settings = settings or SpikeSettings()
        self.detector = SpikeDetector(self.settings)
        self.events: list[StateChange] = []
        self.attack_seconds = 0.0  # seconds spent under attack (sampled at each arrival)
        self._last = T0

    async def arrive(self, t: float, count: float = 1.0, dollars: float | None = None) -> RouteMode:
        """``count`` requests at time ``t`` (one Rate op with that amount), then their spend."""
        self.now = t
        op = replace(self.settings.requests_op(ROUTE), amount=count)
        [requests] = await self.store.execute([op])
        verdict = self.detector.observe(ROUTE, t, requests=requests)
        self.events += verdict.events
        if dollars is not None:
            [spend] = await self.store.execute([self.settings.spend_op(ROUTE, dollars)])
            verdict = self.detector.observe(ROUTE, t, spend=spend)
            self.events += verdict.events
        if verdict.under_attack:
            self.attack_seconds += t - self._last
        self._last = t
        return verdict.mode

    async def traffic(
        self,
        start: float,
        end: float,
        per_minute: Callable[[float], float],
        *,
        per_request: bool = False,
        dollars: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Requests from ``start`` to ``end`` at ``per_minute(t)``: one arrival each
        (``per_request``), else one aggregated arrival per second (Poisson if ``rng``)."""
        t = start
        if per_request:
            while t < end:
                await self.arrive(t, 1.0, dollars)
                t += MINUTE / per_minute(t)
            return
        while t < end:
            mean = per_minute(t) / MINUTE
            count = float(_poisson(rng, mean)) if rng is not None else mean
            await self.arrive(t, count, None if dollars is None else dollars * count)
            t += 1.0


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    k, p, limit = 0, 1.0, math.exp(-mean)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def names(events: list[StateChange]) -> list[str]:
    return [e.name for e in events]


async def test_incident_replay_engages_within_a_minute_and_recovers_after_cool_down() -> None:
    """Baseline ~130 req/min for 70 minutes, then 1,300 req/min for 20 minutes, then
    back to 130: the shape of the documented incident. $0.002 per request."""
    sim = Replay()
    spike_start = T0 + 70 * MINUTE + 17  # mid-bucket, as real spikes start
    spike_end = spike_start + 20 * MINUTE
    stop = spike_end + 20 * MINUTE
    await sim.traffic(T0, spike_start, lambda t: 130, per_request=True, dollars=0.002)
    assert sim.events == [] and sim.detector.mode(ROUTE) is RouteMode.NORMAL

    await sim.traffic(spike_start, spike_end, lambda t: 1300, per_request=True, dollars=0.002)
    assert names(sim.events) == ["spike/under_attack"]  # engaged once, stayed engaged
    engaged = sim.events[0]
    assert 0 < engaged.at - spike_start <= 60
    assert engaged.subject == ROUTE
    assert engaged.detail["requests_baseline"] == pytest.approx(130, rel=0.05)  # the frozen baseline
    assert sim.attack_seconds == pytest.approx(spike_end - engaged.at, abs=1)

    await sim.traffic(spike_end, stop, lambda t: 130, per_request=True, dollars=0.002)
    assert names(sim.events) == ["spike/under_attack", "spike/normal"]
    released = sim.events[1].at - spike_end
    settings = sim.settings
    # The spike must leave the previous-bucket figure (at most two buckets), then cool down.
    assert settings.cool_down <= released <= 2 * settings.bucket + settings.cool_down
    assert sim.events[0].as_dict()["event"] == "spike/under_attack"


async def test_a_slow_organic_ramp_never_triggers() -> None:
    """+10% per hour for a day (130 -> ~1,200 req/min), with Poisson noise."""
    sim = Replay()
    rng = random.Random(5)
    await sim.traffic(T0, T0 + 24 * 3600, lambda t: 130 * 1.1 ** ((t - T0) / 3600), rng=rng, dollars=0.002)
    assert sim.events == []


async def test_noisy_steady_traffic_never_triggers() -> None:
    sim = Replay()
    await sim.traffic(T0, T0 + 6 * 3600, lambda t: 130, rng=random.Random(1))
    assert sim.events == []


async def test_warm_up_and_quiet_routes_do_not_decide() -> None:
    # A spike in the first minutes: no baseline yet, no decision.
    sim = Replay()
    await sim.traffic(T0, T0 + 10 * MINUTE, lambda t: 130)
    await sim.traffic(T0 + 10 * MINUTE, T0 + 20 * MINUTE, lambda t: 1300)
    assert sim.events == []
    # A quiet route: 2 req/min, then a 10x burst of 20 req/min, under the 60/min floor.
    quiet = Replay()
    await quiet.traffic(T0, T0 + 60 * MINUTE, lambda t: 2)
    await quiet.traffic(T0 + 60 * MINUTE, T0 + 70 * MINUTE, lambda t: 20)
    assert quiet.events == []


async def test_hysteresis_holds_between_release_and_k() -> None:
    sim = Replay(SpikeSettings(cool_down=120))
    t1 = T0 + 60 * MINUTE
    await sim.traffic(T0, t1, lambda t: 130)
    await sim.traffic(t1, t1 + 5 * MINUTE, lambda t: 1000)
    assert names(sim.events) == ["spike/under_attack"]
    # 2x baseline: below k (no new attack) but above release: stays under attack.
    await sim.traffic(t1 + 5 * MINUTE, t1 + 30 * MINUTE, lambda t: 260)
    assert names(sim.events) == ["spike/under_attack"]
    await sim.traffic(t1 + 30 * MINUTE, t1 + 40 * MINUTE, lambda t: 130)
    assert names(sim.events) == ["spike/under_attack", "spike/normal"]


async def test_the_baseline_does_not_learn_from_the_attack() -> None:
    """After a two-hour attack the store's EWMA baseline has risen ~8x; a second wave
    must still be caught against the pre-attack baseline."""
    sim = Replay()
    t1 = T0 + 60 * MINUTE
    await sim.traffic(T0, t1, lambda t: 130)
    await sim.traffic(t1, t1 + 120 * MINUTE, lambda t: 1300)
    t2 = t1 + 120 * MINUTE
    await sim.traffic(t2, t2 + 30 * MINUTE, lambda t: 130)
    assert names(sim.events) == ["spike/under_attack", "spike/normal"]
    [live] = await sim.store.execute([replace(sim.settings.requests_op(ROUTE), amount=0.0)])
    assert live.baseline > 3 * 130 * 1.5  # the store's own baseline would hide a new wave
    t3 = t2 + 30 * MINUTE
    await sim.traffic(t3, t3 + 5 * MINUTE, lambda t: 1300)
    assert names(sim.events) == ["spike/under_attack", "spike/normal", "spike/under_attack"]
    assert sim.events[-1].at - t3 <= 60


async def test_spend_alone_can_engage() -> None:
    """Same request rate, but each call suddenly costs 10x (long prompts, big outputs)."""
    sim = Replay()
    t1 = T0 + 60 * MINUTE
    await sim.traffic(T0, t1, lambda t: 130, dollars=0.02)  # $2.6 per minute
    await sim.traffic(t1, t1 + 5 * MINUTE, lambda t: 130, dollars=0.2)  # $26 per minute
    assert names(sim.events) == ["spike/under_attack"]
    assert "spend" in sim.events[0].reason


def test_stale_observations_do_not_hold_the_mode() -> None:
    """A metric that stops being observed (no commits) cannot keep a route under attack."""
    detector = SpikeDetector(SpikeSettings(cool_down=60))
    hot = RateResult(current=5000, previous=0, baseline=100, buckets=100)
    calm = RateResult(current=10, previous=100, baseline=100, buckets=100)
    assert detector.observe(ROUTE, 0.0, spend=RateResult(50, 0, 1, 100), requests=hot).under_attack
    t = 0.0
    while detector.mode(ROUTE) is RouteMode.UNDER_ATTACK and t < 1000:
        t += 10
        detector.observe(ROUTE, t, requests=calm)
    assert detector.mode(ROUTE) is RouteMode.NORMAL and t <= 2 * 60 + 60 + 10


def test_disabled_detector_and_settings_validation() -> None:
    detector = SpikeDetector(SpikeSettings(enabled=False))
    hot = RateResult(current=5000, previous=0, baseline=100, buckets=100)
    assert not detector.observe(ROUTE, 0.0, requests=hot).under_attack
    with pytest.raises(ValidationError):
        SpikeSettings(k=2, release=2)
    with pytest.raises(ValidationError):
        SpikeSettings(k=1)
    with pytest.raises(ValidationError):
        SpikeSettings(off_purpose="ignore")
    with pytest.raises(ValidationError):
        BreakerSettings(ceiling=-1)
    with pytest.raises(ValidationError):
        SpikeSettings.model_validate({"kk": 3})


# -- the breaker ----------------------------------------------------------------------


async def test_breaker_holds_spend_under_the_ceiling_through_the_incident() -> None:
    """$5 per minute ceiling; each call reserves $0.05 worst case and spends $0.03.
    130 req/min ($3.90) fits; 1,300 req/min ($39) trips it until the spike is over."""
    now = T0
    store = MemoryStore(clock=lambda: now)
    breaker = SpendBreaker(BreakerSettings(ceiling=5.0, window=60, min_open=60))
    budget = breaker.budget()
    assert budget is not None
    events: list[StateChange] = []
    spent: dict[int, float] = {}
    refused = 0
    spike_start, spike_end, stop = T0 + 30 * MINUTE + 17, T0 + 50 * MINUTE + 17, T0 + 70 * MINUTE
    n = 0
    while now < stop:
        rate = 1300 if spike_start <= now < spike_end else 130
        verdict = breaker.check(now)
        events += verdict.events
        if verdict.open:
            refused += 1
            assert verdict.retry_after > 0
        else:
            n += 1
            [result] = await store.execute([Reserve((budget,), 0.05, f"r{n}", ttl=600)])
            tripped = breaker.record(now, result)
            events += tripped
            if result.ok:
                await store.execute([Commit(f"r{n}", 0.03)])
                window = math.floor(now / 60)
                spent[window] = spent.get(window, 0.0) + 0.03
            else:
                refused += 1
        now += MINUTE / rate
    assert max(spent.values()) <= 5.0
    assert refused > 0
    opened = [e for e in events if e.name == "breaker/open"]
    assert opened and all(spike_start <= e.at < spike_end for e in opened)
    assert names(events)[-1] == "breaker/closed"
    assert events[-1].at < spike_end + 2 * MINUTE
    assert [e.name for e in events] == ["breaker/open", "breaker/closed"] * len(opened)
    # Before and after the spike every window spent its normal $3.90.
    assert spent[math.floor(T0 / 60) + 5] == pytest.approx(3.9, abs=0.05)
    assert spent[math.floor(stop / 60) - 2] == pytest.approx(3.9, abs=0.05)


async def test_breaker_fails_closed_while_open_even_when_budget_frees_up() -> None:
    breaker = SpendBreaker(BreakerSettings(ceiling=1.0, window=10, min_open=30))
    budget = breaker.budget()
    assert budget is not None
    now = 100.0
    store = MemoryStore(clock=lambda: now)
    [first] = await store.execute([Reserve((budget,), 0.9, "a", ttl=60)])
    assert first.ok and breaker.record(now, first) == ()
    [second] = await store.execute([Reserve((budget,), 0.2, "b", ttl=60)])
    [event] = breaker.record(now, second)
    assert event.name == "breaker/open" and event.detail["open_for"] == 30
    now = 115.0  # the 10 s window has rolled over: the budget has room, the breaker does not
    assert breaker.check(now).open and breaker.check(now).retry_after == pytest.approx(15)
    now = 130.0
    verdict = breaker.check(now)
    assert not verdict.open and names(list(verdict.events)) == ["breaker/closed"]
    assert breaker.check(now).events == ()


def test_breaker_ignores_other_budgets_and_can_be_off() -> None:
    from tokenward.store.ops import Budget, ReserveResult

    breaker = SpendBreaker(BreakerSettings(ceiling=1.0))
    other = ReserveResult(False, Budget("account:x", 1.0, 60), 5.0)
    assert breaker.record(0.0, other) == () and not breaker.is_open(0.0)
    off = SpendBreaker()
    assert not off.enabled and off.budget() is None and not off.check(0.0).open
