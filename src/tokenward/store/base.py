"""The Store protocol: the only shared state, every read-check-write one atomic call.

Each operation is shaped so a Redis backend can run it as one Lua script (one round
trip) and behave exactly like the in-memory backend under concurrency. Keys are plain
strings chosen by the caller; the store adds its own prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Budget",
    "ReserveResult",
    "Store",
    "StoreFull",
    "StoreUnavailable",
    "WindowResult",
]


class StoreUnavailable(RuntimeError):
    """The backing store cannot answer; the caller applies its fail-open/closed policy."""


class StoreFull(StoreUnavailable):
    """A bounded structure is full of live entries and refusing is safer than evicting
    (evicting a consumed challenge would let it be replayed)."""


@dataclass(frozen=True, slots=True)
class WindowResult:
    allowed: bool
    count: float  # weighted count in the window after this hit (or as it stands, if refused)
    limit: float
    retry_after: float  # seconds until a hit of the same cost could pass; 0 when allowed


@dataclass(frozen=True, slots=True)
class Budget:
    """A spend limit: at most ``limit`` units per fixed ``window`` seconds under ``key``."""

    key: str
    limit: float
    window: float


@dataclass(frozen=True, slots=True)
class ReserveResult:
    ok: bool
    exhausted: Budget | None = None  # the first budget that would overflow
    retry_after: float = 0.0


@runtime_checkable
class Store(Protocol):
    async def consume_once(self, key: str, ttl: float) -> bool:
        """Mark ``key`` used for ``ttl`` seconds. True only for the first caller."""
        ...

    async def hit(self, key: str, *, limit: float, window: float, cost: float = 1.0) -> WindowResult:
        """Sliding-window counter: add ``cost`` if the window stays within ``limit``."""
        ...

    async def reserve(
        self, budgets: Sequence[Budget], amount: float, reservation: str, ttl: float
    ) -> ReserveResult:
        """Hold ``amount`` against every budget, all or nothing.

        The hold lasts until :meth:`commit` or ``ttl`` seconds, whichever comes first, so
        a crashed request never leaves a budget blocked forever.
        """
        ...

    async def commit(self, reservation: str, actual: float) -> None:
        """Replace a hold by the exact amount spent (0 releases it)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
