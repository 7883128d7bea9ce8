"""Traffic spikes, under-attack mode, and the global spend breaker — pure state machines.

**Spike detection.** Each protected route keeps two traffic baselines in the Store with
the :class:`~tokenward.store.ops.Rate` op: requests per minute (one per request) and
dollars per minute (the exact cost, at commit). :class:`SpikeDetector` reads the
:class:`~tokenward.store.ops.RateResult` of each and decides, per route:

* the rate is ``max(current bucket so far, previous complete bucket)`` — it needs no
  clock alignment with the store and sees a 10x spike within seconds;
* **engage** ``under_attack`` when a metric's rate is above ``k`` x its baseline *and* at
  least its absolute floor (``min_requests`` / ``min_spend``), once the baseline has
  ``warmup`` complete buckets behind it;
* **disengage** when every metric has stayed at or below ``release`` x baseline (or
  under its floor) for ``cool_down`` seconds without a break. After a spike ends that
  takes at most two buckets (until no bucket in view saw the spike) plus ``cool_down``.

The Store's baseline keeps learning while a route is under attack (the ``Rate`` op
folds every bucket); the detector does not let that poison its decisions: on engaging it
**freezes** each metric's baseline and judges against the frozen value while under
attack; after disengaging it uses ``min(live, frozen)`` until the live baseline has
decayed back to within 10% of the frozen one. So a second wave is caught as quickly as
the first, and the caller only ever issues one ``Rate`` op per metric. The frozen values
live in this object (per gateway instance); the rates they are compared with are shared.

**Spend breaker.** :class:`SpendBreaker` holds the whole gateway's upstream spend under
a ceiling per window. Its :meth:`~SpendBreaker.budget` goes *first* in every request's
``Reserve``, so each request's worst-case cost is held against it atomically: spend in a
window can never exceed the ceiling. When that budget is exhausted the breaker **trips**:
every request on a protected route is refused (503) until the window frees up (at least
``min_open`` seconds), even ones that would fit — it fails closed.

Every state change is returned as a :class:`StateChange` (log it, alert on it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..store.ops import Budget, Rate, RateResult, ReserveResult

__all__ = [
    "BreakerSettings",
    "BreakerVerdict",
    "RouteMode",
    "SpendBreaker",
    "SpikeDetector",
    "SpikeSettings",
    "SpikeVerdict",
    "StateChange",
]

_RECOVERED = 1.1  # the live baseline is trusted again within 10% of the frozen one


class SpikeSettings(BaseModel):
    """The policy's ``spike:`` section. Defaults suit a route with tens of requests per
    minute or more; every threshold is per ``bucket`` (one minute by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="false: never enter under-attack mode")
    k: float = Field(3.0, gt=1, description="engage when the rate exceeds k x baseline")
    release: float = Field(1.5, ge=1, description="calm when the rate is at most release x baseline")
    cool_down: float = Field(300.0, ge=0, description="seconds of calm before returning to normal")
    min_requests: float = Field(60.0, ge=0, description="requests per bucket below which a route is never under attack")
    min_spend: float = Field(1.0, ge=0, description="USD per bucket below which spend never engages")
    warmup: int = Field(30, ge=1, description="complete buckets of baseline before any decision")
    bucket: float = Field(60.0, gt=0, description="seconds per rate bucket")
    half_life: float = Field(3600.0, gt=0, description="seconds: half-life of the EWMA baselines")
    # What the guard does while a route is under attack:
    difficulty_bonus: int = Field(2, ge=0, le=16, description="proof-of-work bits added")
    new_client_budget_factor: float = Field(
        0.25, gt=0, le=1, description="budgets of new devices/accounts are multiplied by this"
    )
    off_purpose: str = Field("refuse", pattern="^(score|refuse)$", description="off-purpose calls: score|refuse")

    @model_validator(mode="after")
    def _release_below_k(self) -> SpikeSettings:
        if self.release >= self.k:
            raise ValueError(f"release ({self.release}) must be below k ({self.k}), or the mode flaps")
        return self

    def requests_op(self, route: str) -> Rate:
        """The ``Rate`` op to run with every request on ``route`` (in the guard's batch)."""
        return Rate(f"spike:req:{route}", 1.0, self.bucket, self.half_life)

    def spend_op(self, route: str, dollars: float) -> Rate:
        """The ``Rate`` op to run when a call on ``route`` is committed at ``dollars``."""
        return Rate(f"spike:usd:{route}", max(dollars, 0.0), self.bucket, self.half_life)


class BreakerSettings(BaseModel):
    """The policy's ``breaker:`` section: a ceiling on the whole gateway's upstream
    spend. Off unless ``ceiling`` is set — set it to what an hour of attack may cost you
    divided by 60, at most."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ceiling: float | None = Field(None, gt=0, description="USD per window over all routes; null = off")
    window: float = Field(60.0, gt=0, description="seconds per spend window")
    min_open: float = Field(60.0, ge=0, description="seconds a tripped breaker stays open, at least")

    @model_validator(mode="after")
    def _finite(self) -> BreakerSettings:
        if self.ceiling is not None and not math.isfinite(self.ceiling):
            raise ValueError("ceiling must be a finite number of dollars")
        return self


class RouteMode(StrEnum):
    NORMAL = "normal"
    UNDER_ATTACK = "under_attack"


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition, for the log and for alerts.

    ``name``: ``spike/under_attack``, ``spike/normal``, ``breaker/open`` or
    ``breaker/closed``; ``subject``: the route path, or ``global`` for the breaker.
    """

    name: str
    subject: str
    at: float
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"event", "subject", "at", "reason", "detail"}``."""
        return {
            "event": self.name,
            "subject": self.subject,
            "at": self.at,
            "reason": self.reason,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True, slots=True)
class SpikeVerdict:
    """A route's mode after an observation, and the transitions it caused (0 or 1)."""

    mode: RouteMode
    events: tuple[StateChange, ...] = ()

    @property
    def under_attack(self) -> bool:
        return self.mode is RouteMode.UNDER_ATTACK


_NORMAL = SpikeVerdict(RouteMode.NORMAL)
_ATTACK = SpikeVerdict(RouteMode.UNDER_ATTACK)


@dataclass(slots=True)
class _Metric:
    live: float = 0.0  # the store's baseline at the last observation
    frozen: float | None = None
    rate: float = 0.0
    seen_at: float = -math.inf
    hot: bool = False
    calm: bool = True


@dataclass(slots=True)
class _Route:
    mode: RouteMode = RouteMode.NORMAL
    since: float = 0.0
    calm_since: float | None = None
    metrics: dict[str, _Metric] = field(default_factory=dict)


_MAX_ROUTES = 10_000  # routes come from the policy; this only bounds a misuse


class SpikeDetector:
    """Per-route under-attack state machine (one per gateway process; not thread-safe,
    call it from the event loop)."""

    def __init__(self, settings: SpikeSettings | None = None) -> None:
        self.settings = settings or SpikeSettings()
        self._routes: dict[str, _Route] = {}

    def mode(self, route: str) -> RouteMode:
        """The route's current mode (without observing anything)."""
        state = self._routes.get(route)
        return RouteMode.NORMAL if state is None else state.mode

    def observe(
        self,
        route: str,
        now: float,
        *,
        requests: RateResult | None = None,
        spend: RateResult | None = None,
    ) -> SpikeVerdict:
        """Fold in the latest rates of ``route`` (either may be missing) -> its mode.

        Call with ``requests=`` the result of :meth:`SpikeSettings.requests_op` on every
        request, and with ``spend=`` the result of :meth:`SpikeSettings.spend_op` at
        commit. ``now`` is the guard's clock (seconds).
        """
        s = self.settings
        if not s.enabled:
            return _NORMAL
        state = self._routes.get(route)
        if state is None:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            state = self._routes[route] = _Route(since=now)
        if requests is not None:
            self._update(state, "requests", requests, s.min_requests, now)
        if spend is not None:
            self._update(state, "spend", spend, s.min_spend, now)
        # An observation older than two buckets no longer describes the traffic.
        fresh = {name: m for name, m in state.metrics.items() if now - m.seen_at <= 2 * s.bucket}
        if state.mode is RouteMode.NORMAL:
            hot = [name for name, m in fresh.items() if m.hot]
            if not hot:
                return _NORMAL
            for m in state.metrics.values():
                m.frozen = m.live if m.frozen is None else min(m.frozen, m.live)
            state.mode, state.since, state.calm_since = RouteMode.UNDER_ATTACK, now, None
            metric = state.metrics[hot[0]]
            event = StateChange(
                "spike/under_attack",
                route,
                now,
                f"{hot[0]} at {metric.rate:g} per {s.bucket:g}s, over {s.k:g}x the baseline of {metric.frozen or 0:g}",
                self._detail(state),
            )
            return SpikeVerdict(RouteMode.UNDER_ATTACK, (event,))
        if not all(m.calm for m in fresh.values()):
            state.calm_since = None
            return _ATTACK
        if state.calm_since is None:
            state.calm_since = now
        if now - state.calm_since < s.cool_down:
            return _ATTACK
        lasted = now - state.since
        state.mode, state.since, state.calm_since = RouteMode.NORMAL, now, None
        event = StateChange(
            "spike/normal",
            route,
            now,
            f"calm for {s.cool_down:g}s after {lasted:g}s under attack",
            {**self._detail(state), "lasted": lasted},
        )
        return SpikeVerdict(RouteMode.NORMAL, (event,))

    def _update(self, state: _Route, name: str, result: RateResult, floor: float, now: float) -> None:
        s = self.settings
        m = state.metrics.get(name)
        if m is None:
            m = state.metrics[name] = _Metric()
        m.live = result.baseline
        m.rate = max(result.current, result.previous)
        m.seen_at = now
        base = m.live
        if m.frozen is not None:
            if state.mode is RouteMode.UNDER_ATTACK:
                base = m.frozen
            elif m.live <= m.frozen * _RECOVERED:
                m.frozen = None  # the live baseline has forgotten the attack
            else:
                base = min(m.live, m.frozen)
        warm = result.buckets >= s.warmup
        m.hot = warm and m.rate >= floor and m.rate > s.k * base
        m.calm = m.rate < floor or m.rate <= s.release * base

    @staticmethod
    def _detail(state: _Route) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, m in state.metrics.items():
            out[f"{name}_rate"] = m.rate
            out[f"{name}_baseline"] = m.frozen if m.frozen is not None else m.live
        return out


@dataclass(frozen=True, slots=True)
class BreakerVerdict:
    """``open``: refuse the request (503) with ``Retry-After: retry_after``."""

    open: bool
    retry_after: float = 0.0
    events: tuple[StateChange, ...] = ()


class SpendBreaker:
    """The global spend ceiling (see the module doc). Per gateway process; the budget
    it reserves against is shared through the Store.

    Per request: ``verdict = breaker.check(now)``; if ``verdict.open`` refuse with 503.
    Otherwise put ``breaker.budget()`` first in the ``Reserve`` and pass its result to
    ``breaker.record(now, result)``; if that returns events the breaker just tripped
    (refuse this request with 503 too).
    """

    KEY = "breaker:global"

    def __init__(self, settings: BreakerSettings | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self._open_until: float | None = None
        self._budget = (
            None if self.settings.ceiling is None else Budget(self.KEY, self.settings.ceiling, self.settings.window)
        )

    @property
    def enabled(self) -> bool:
        return self._budget is not None

    def budget(self) -> Budget | None:
        """The budget to put first in every ``Reserve`` (None when the breaker is off)."""
        return self._budget

    @property
    def quiet(self) -> bool:
        """Never opened, or closed again and reported: :meth:`check` has nothing to say."""
        return self._open_until is None

    def is_open(self, now: float) -> bool:
        return self._open_until is not None and now < self._open_until

    def check(self, now: float) -> BreakerVerdict:
        """Before reserving: is the breaker open? Closes it (with an event) once its
        open period is over."""
        until = self._open_until
        if until is None:
            return BreakerVerdict(False)
        if now < until:
            return BreakerVerdict(True, until - now)
        self._open_until = None
        event = StateChange("breaker/closed", "global", now, "the spend window has room again", self._detail())
        return BreakerVerdict(False, 0.0, (event,))

    def record(self, now: float, result: ReserveResult) -> tuple[StateChange, ...]:
        """After reserving: trip when the breaker's own budget was the one exhausted."""
        budget = self._budget
        if budget is None or result.ok or result.exhausted is None or result.exhausted.key != budget.key:
            return ()
        hold = max(result.retry_after, self.settings.min_open)
        already_open = self.is_open(now)
        self._open_until = max(self._open_until or now, now + hold)
        if already_open:
            return ()
        reason = f"upstream spend reached the ceiling of ${budget.limit:g} per {budget.window:g}s"
        return (StateChange("breaker/open", "global", now, reason, {**self._detail(), "open_for": hold}),)

    def _detail(self) -> dict[str, Any]:
        return {"ceiling": self.settings.ceiling, "window": self.settings.window}
