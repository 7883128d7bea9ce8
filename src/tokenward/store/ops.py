"""Store operations as values, so one request's state changes travel in one batch.

The guard plans every read-check-write a request needs (consume its challenge, hit its
rate windows, count distinct addresses per device, reserve its budget...) and hands the
list to :meth:`Store.execute`: the memory store runs them in order without yielding; the
Redis store sends them as one pipeline of Lua scripts — one network round trip, each
operation atomic on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Append",
    "Budget",
    "Cadence",
    "CadenceResult",
    "Commit",
    "Consume",
    "Distinct",
    "Get",
    "Hit",
    "Inflight",
    "Op",
    "Put",
    "Range",
    "Rate",
    "RateResult",
    "Reserve",
    "ReserveResult",
    "WindowResult",
]


@dataclass(frozen=True, slots=True)
class Budget:
    """A spend limit: at most ``limit`` units per fixed ``window`` seconds under ``key``."""

    key: str
    limit: float
    window: float


@dataclass(frozen=True, slots=True)
class WindowResult:
    allowed: bool
    count: float  # weighted count in the window after this hit (or as it stands, if refused)
    limit: float
    retry_after: float  # seconds until a hit of the same cost could pass; 0 when allowed


@dataclass(frozen=True, slots=True)
class ReserveResult:
    ok: bool
    exhausted: Budget | None = None  # the first budget that would overflow
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class CadenceResult:
    count: int  # arrivals seen (capped)
    mean_interval: float  # EWMA of seconds between arrivals
    cv: float  # coefficient of variation of the intervals: near 0 means clockwork


# -- operations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Consume:
    """Mark ``key`` used for ``ttl`` seconds -> True only for the first caller."""

    key: str
    ttl: float


@dataclass(frozen=True, slots=True)
class Hit:
    """Sliding-window counter: add ``cost`` if the window stays within ``limit``
    -> :class:`WindowResult`. ``limit=inf`` just counts."""

    key: str
    limit: float
    window: float
    cost: float = 1.0


@dataclass(frozen=True, slots=True)
class Reserve:
    """Hold ``amount`` against every budget, all or nothing -> :class:`ReserveResult`.
    The hold lasts until :class:`Commit` or ``ttl`` seconds, whichever comes first."""

    budgets: tuple[Budget, ...]
    amount: float
    reservation: str
    ttl: float


@dataclass(frozen=True, slots=True)
class Commit:
    """Replace a hold by the exact amount spent (0 releases it) -> None."""

    reservation: str
    actual: float


@dataclass(frozen=True, slots=True)
class Distinct:
    """Note ``member`` under ``key`` -> how many distinct members were seen in the last
    ``window`` seconds (at most ``cap`` are remembered; the oldest go first)."""

    key: str
    member: str
    window: float
    cap: int = 256


@dataclass(frozen=True, slots=True)
class Inflight:
    """Add ``delta`` to a concurrency counter -> its value after (never below 0). The
    counter resets ``ttl`` seconds after its last change, so a lost decrement heals."""

    key: str
    delta: int
    ttl: float


@dataclass(frozen=True, slots=True)
class Get:
    """-> the bytes stored under ``key``, or None."""

    key: str


@dataclass(frozen=True, slots=True)
class Put:
    """Store ``value`` for ``ttl`` seconds -> True; with ``only_new``, only if no live
    value exists (-> False otherwise)."""

    key: str
    value: bytes
    ttl: float
    only_new: bool = False


@dataclass(frozen=True, slots=True)
class Cadence:
    """Note an arrival now under ``key`` -> :class:`CadenceResult` of the intervals
    between arrivals (EWMA over about ``span`` arrivals). Forgotten after ``ttl``."""

    key: str
    span: int = 20
    ttl: float = 3600.0


@dataclass(frozen=True, slots=True)
class Append:
    """Append ``item`` to the list under ``key`` -> the list's length after. Only the
    last ``max_items`` are kept; the list expires ``ttl`` seconds after its last append."""

    key: str
    item: bytes
    max_items: int
    ttl: float


@dataclass(frozen=True, slots=True)
class Range:
    """-> every item of the list under ``key``, oldest first ([] when none)."""

    key: str


@dataclass(frozen=True, slots=True)
class RateResult:
    current: float  # total in the current bucket, this call included
    previous: float  # total in the last complete bucket (0 if it saw nothing)
    baseline: float  # EWMA of complete buckets' totals (0 until one completed)
    buckets: int  # complete buckets folded into the baseline so far (capped)


@dataclass(frozen=True, slots=True)
class Rate:
    """Add ``amount`` to a per-``bucket``-seconds total and keep an EWMA baseline of
    past totals with the given ``half_life`` (seconds) -> :class:`RateResult`. Empty
    buckets count as zeros. Used for traffic and spend baselines."""

    key: str
    amount: float
    bucket: float = 60.0
    half_life: float = 3600.0


Op = Consume | Hit | Reserve | Commit | Distinct | Inflight | Get | Put | Cadence | Append | Range | Rate
