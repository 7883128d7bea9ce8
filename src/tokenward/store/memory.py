"""In-memory Store: one process, bounded memory, lazy expiry.

Every operation runs without an ``await`` between its read and its write, so on one
event loop it is atomic by construction. (A lock would add nothing: the gateway serves
one process per memory store; several processes need the Redis store.)
"""

from __future__ import annotations

import heapq
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import Budget, ReserveResult, StoreFull, WindowResult

__all__ = ["MemoryStore"]

# How many expired entries each write sweeps: lazy expiry that keeps up with traffic
# without a background thread.
_SWEEP = 4


@dataclass(slots=True)
class _Window:
    index: int
    previous: float
    current: float
    expires: float


@dataclass(slots=True)
class _Hold:
    buckets: tuple[str, ...]
    amount: float
    expires: float


class MemoryStore:
    """Bounded in-memory backend.

    ``max_used`` caps single-use keys (consumed challenges): when full of live entries
    the store refuses (:class:`StoreFull`) rather than forget one, since forgetting a
    consumed challenge would allow a replay. ``max_keys`` caps counters and budget
    buckets, evicting the least recently used: a forgotten counter is a milder failure.
    """

    def __init__(
        self,
        *,
        max_used: int = 500_000,
        max_keys: int = 200_000,
        clock: Callable[[], float] = time.time,
    ):
        self._clock = clock
        self._max_used = max_used
        self._max_keys = max_keys
        self._used: dict[str, float] = {}
        self._used_heap: list[tuple[float, str]] = []
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [used, expires]
        self._holds: dict[str, _Hold] = {}
        self._holds_heap: list[tuple[float, str]] = []

    # -- single use ---------------------------------------------------------------
    async def consume_once(self, key: str, ttl: float) -> bool:
        now = self._clock()
        self._expire_used(now, _SWEEP)
        expires = self._used.get(key)
        if expires is not None and expires > now:
            return False
        if len(self._used) >= self._max_used:
            self._expire_used(now, len(self._used_heap))
            if len(self._used) >= self._max_used:
                raise StoreFull(f"single-use store is full ({self._max_used} live entries)")
        self._used[key] = now + ttl
        heapq.heappush(self._used_heap, (now + ttl, key))
        return True

    def _expire_used(self, now: float, budget: int) -> None:
        heap = self._used_heap
        while budget and heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            if self._used.get(key) == expires:
                del self._used[key]
            budget -= 1

    # -- sliding-window counters ---------------------------------------------------
    async def hit(self, key: str, *, limit: float, window: float, cost: float = 1.0) -> WindowResult:
        now = self._clock()
        self._expire_lru(self._windows, now)
        index = math.floor(now / window)
        w = self._windows.get(key)
        if w is None:
            w = _Window(index, 0.0, 0.0, 0.0)
            self._insert_lru(self._windows, key, w)
        else:
            self._windows.move_to_end(key)
        if index != w.index:
            w.previous = w.current if index == w.index + 1 else 0.0
            w.current = 0.0
            w.index = index
        elapsed = now / window - index  # fraction of the current window gone
        weighted = w.previous * (1.0 - elapsed) + w.current
        if weighted + cost > limit:
            return WindowResult(False, weighted, limit, _retry_after(w, elapsed, window, limit, cost))
        w.current += cost
        w.expires = (index + 2) * window
        return WindowResult(True, weighted + cost, limit, 0.0)

    # -- budgets ---------------------------------------------------------------------
    async def reserve(
        self, budgets: Sequence[Budget], amount: float, reservation: str, ttl: float
    ) -> ReserveResult:
        now = self._clock()
        self._expire_holds(now)
        self._expire_lru(self._buckets, now)
        names = []
        for b in budgets:
            index = math.floor(now / b.window)
            name = f"{b.key}@{b.window:g}:{index}"
            bucket = self._buckets.get(name)
            used = bucket[0] if bucket is not None and bucket[1] > now else 0.0
            if used + amount > b.limit:
                return ReserveResult(False, b, (index + 1) * b.window - now)
            names.append((name, (index + 1) * b.window))
        for name, window_end in names:
            bucket = self._buckets.get(name)
            if bucket is None or bucket[1] <= now:
                self._insert_lru(self._buckets, name, [amount, window_end])
            else:
                bucket[0] += amount
                self._buckets.move_to_end(name)
        hold = _Hold(tuple(n for n, _ in names), amount, now + ttl)
        self._holds[reservation] = hold
        heapq.heappush(self._holds_heap, (hold.expires, reservation))
        return ReserveResult(True)

    async def commit(self, reservation: str, actual: float) -> None:
        self._expire_holds(self._clock())  # a hold past its ttl is already released
        hold = self._holds.pop(reservation, None)
        if hold is None:
            return  # already committed or expired (and released) earlier
        for name in hold.buckets:
            bucket = self._buckets.get(name)
            if bucket is not None:
                bucket[0] += actual - hold.amount

    def _expire_holds(self, now: float) -> None:
        heap = self._holds_heap
        while heap and heap[0][0] <= now:
            expires, rid = heapq.heappop(heap)
            hold = self._holds.get(rid)
            if hold is not None and hold.expires == expires:
                # A request that never committed (crash, lost task): release its hold.
                del self._holds[rid]
                for name in hold.buckets:
                    bucket = self._buckets.get(name)
                    if bucket is not None:
                        bucket[0] -= hold.amount

    # -- bounded LRU helpers -----------------------------------------------------------
    def _insert_lru(self, table: OrderedDict, key: str, value: object) -> None:
        if len(table) >= self._max_keys:
            table.popitem(last=False)
        table[key] = value

    @staticmethod
    def _expire_lru(table: OrderedDict, now: float) -> None:
        for _ in range(_SWEEP):
            if not table:
                return
            key, value = next(iter(table.items()))
            expires = value.expires if isinstance(value, _Window) else value[1]
            if expires > now:
                return
            del table[key]

    # -- lifecycle -------------------------------------------------------------------
    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {
            "used": len(self._used),
            "windows": len(self._windows),
            "buckets": len(self._buckets),
            "holds": len(self._holds),
        }


def _retry_after(w: _Window, elapsed: float, window: float, limit: float, cost: float) -> float:
    room = limit - w.current - cost
    if room < 0 or w.previous <= 0:
        return (1.0 - elapsed) * window + (window if room < 0 else 0.0)
    # previous*(1-f) + current + cost <= limit  <=>  f >= 1 - room/previous
    return max(0.0, (1.0 - room / w.previous - elapsed) * window)
