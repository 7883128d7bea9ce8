"""In-memory Store: one process, bounded memory, lazy expiry.

``execute`` runs a whole batch without an ``await``, so on one event loop every batch is
atomic by construction. (A lock would add nothing: a memory store serves one process;
several processes need the Redis store.)
"""

from __future__ import annotations

import heapq
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .base import StoreFull, StoreMethods
from .ops import (
    Append,
    Cadence,
    CadenceResult,
    Commit,
    Consume,
    Distinct,
    Get,
    Hit,
    Inflight,
    Op,
    Put,
    Range,
    Rate,
    RateResult,
    Reserve,
    ReserveResult,
    WindowResult,
)

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


@dataclass(slots=True)
class _Entry:
    """A value with an expiry: budget buckets, sets, counters, blobs, cadences."""

    value: Any
    expires: float


class _LRU:
    """A bounded table: least recently used out first, expired entries swept lazily."""

    __slots__ = ("_cap", "_table")

    def __init__(self, cap: int):
        self._cap = cap
        self._table: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def get(self, key: str, now: float) -> Any:
        item = self._table.get(key)
        if item is None:
            return None
        if item.expires <= now:
            del self._table[key]
            return None
        self._table.move_to_end(key)
        return item

    def put(self, key: str, item: Any, now: float | None = None) -> None:
        if key in self._table:
            self._table.move_to_end(key)
        else:
            if now is not None:
                self.sweep(now)  # lazy expiry: a few old entries go whenever one comes in
            if len(self._table) >= self._cap:
                self._table.popitem(last=False)
        self._table[key] = item

    def pop(self, key: str) -> None:
        self._table.pop(key, None)

    def sweep(self, now: float) -> None:
        table = self._table
        for _ in range(_SWEEP):
            if not table:
                return
            key = next(iter(table))
            if table[key].expires > now:
                return
            del table[key]


class MemoryStore(StoreMethods):
    """Bounded in-memory backend.

    ``max_used`` caps single-use keys (consumed challenges): when full of live entries
    the store refuses (:class:`StoreFull`) rather than forget one, since forgetting a
    consumed challenge would allow a replay. ``max_keys`` caps every other table
    (counters, budget buckets, sets, blobs), evicting the least recently used: a
    forgotten counter is a milder failure.
    """

    def __init__(
        self,
        *,
        max_used: int = 500_000,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.time,
    ):
        self._clock = clock
        self._max_used = max_used
        self._used: dict[str, float] = {}
        self._used_heap: list[tuple[float, str]] = []
        self._windows = _LRU(max_keys)
        self._buckets = _LRU(max_keys)
        self._sets = _LRU(max_keys)
        self._counters = _LRU(max_keys)
        self._blobs = _LRU(max_keys)
        self._cadences = _LRU(max_keys)
        self._lists = _LRU(max_keys)
        self._rates = _LRU(max_keys)
        self._holds: dict[str, _Hold] = {}
        self._holds_heap: list[tuple[float, str]] = []
        self._run: dict[type, Callable[[Any, float], Any]] = {
            Consume: self._consume,
            Hit: self._hit,
            Reserve: self._reserve,
            Commit: self._commit,
            Distinct: self._distinct,
            Inflight: self._inflight,
            Get: self._get,
            Put: self._put,
            Cadence: self._cadence,
            Append: self._append,
            Range: self._range,
            Rate: self._rate,
        }

    immediate = True  # nothing here waits (see Store.immediate)

    async def execute(self, ops: Sequence[Op]) -> list[Any]:
        return self.execute_now(ops)

    def execute_now(self, ops: Sequence[Op]) -> list[Any]:
        """``execute`` without the coroutine: nothing here waits, so a caller that has no
        other reason to await (settling a finished request) need not schedule a task."""
        now = self._clock()
        return [self._run[type(op)](op, now) for op in ops]

    # -- single use ---------------------------------------------------------------
    def _consume(self, op: Consume, now: float) -> bool:
        self._expire_used(now, _SWEEP)
        expires = self._used.get(op.key)
        if expires is not None and expires > now:
            return False
        if len(self._used) >= self._max_used:
            self._expire_used(now, len(self._used_heap))
            if len(self._used) >= self._max_used:
                raise StoreFull(f"single-use store is full ({self._max_used} live entries)")
        self._used[op.key] = now + op.ttl
        heapq.heappush(self._used_heap, (now + op.ttl, op.key))
        return True

    def _expire_used(self, now: float, budget: int) -> None:
        heap = self._used_heap
        while budget and heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            if self._used.get(key) == expires:
                del self._used[key]
            budget -= 1

    # -- sliding-window counters ---------------------------------------------------
    def _hit(self, op: Hit, now: float) -> WindowResult:
        window, cost, limit = op.window, op.cost, op.limit
        index = math.floor(now / window)
        w = self._windows.get(op.key, now)
        if w is None:
            w = _Window(index, 0.0, 0.0, 0.0)
            self._windows.put(op.key, w, now)
        if index != w.index:
            w.previous = w.current if index == w.index + 1 else 0.0
            w.current = 0.0
            w.index = index
        elapsed = now / window - index  # fraction of the current window gone
        weighted = w.previous * (1.0 - elapsed) + w.current
        w.expires = (index + 2) * window
        if weighted + cost > limit:
            return WindowResult(False, weighted, limit, _retry_after(w, elapsed, window, limit, cost))
        w.current += cost
        return WindowResult(True, weighted + cost, limit, 0.0)

    # -- budgets ---------------------------------------------------------------------
    def _reserve(self, op: Reserve, now: float) -> ReserveResult:
        self._expire_holds(now)
        names = []
        for b in op.budgets:
            index = math.floor(now / b.window)
            name = f"{b.key}@{b.window:g}:{index}"
            bucket = self._buckets.get(name, now)
            used = bucket.value if bucket is not None else 0.0
            if used + op.amount > b.limit:
                return ReserveResult(False, b, (index + 1) * b.window - now)
            names.append((name, (index + 1) * b.window))
        for name, window_end in names:
            bucket = self._buckets.get(name, now)
            if bucket is None:
                self._buckets.put(name, _Entry(op.amount, window_end), now)
            else:
                bucket.value += op.amount
        hold = _Hold(tuple(n for n, _ in names), op.amount, now + op.ttl)
        self._holds[op.reservation] = hold
        heapq.heappush(self._holds_heap, (hold.expires, op.reservation))
        return ReserveResult(True)

    def _commit(self, op: Commit, now: float) -> None:
        self._expire_holds(now)  # a hold past its ttl is already released
        hold = self._holds.pop(op.reservation, None)
        if hold is None:
            return  # already committed or expired (and released) earlier
        for name in hold.buckets:
            bucket = self._buckets.get(name, now)
            if bucket is not None:
                bucket.value += op.actual - hold.amount

    def _expire_holds(self, now: float) -> None:
        heap = self._holds_heap
        while heap and heap[0][0] <= now:
            expires, rid = heapq.heappop(heap)
            hold = self._holds.get(rid)
            if hold is not None and hold.expires == expires:
                # A request that never committed (crash, lost task): release its hold.
                del self._holds[rid]
                for name in hold.buckets:
                    bucket = self._buckets.get(name, now)
                    if bucket is not None:
                        bucket.value -= hold.amount

    # -- sets, counters, blobs, cadences ---------------------------------------------
    def _distinct(self, op: Distinct, now: float) -> int:
        entry = self._sets.get(op.key, now)
        if entry is None:
            entry = _Entry({}, 0.0)
            self._sets.put(op.key, entry, now)
        members: dict[str, float] = entry.value
        members.pop(op.member, None)
        members[op.member] = now  # insertion order = last-seen order
        while len(members) > op.cap:
            del members[next(iter(members))]
        cutoff = now - op.window
        while members and next(iter(members.values())) <= cutoff:
            del members[next(iter(members))]
        entry.expires = now + op.window
        return len(members)

    def _inflight(self, op: Inflight, now: float) -> int:
        entry = self._counters.get(op.key, now)
        value = max(0, (entry.value if entry is not None else 0) + op.delta)
        if value == 0:
            self._counters.pop(op.key)  # an idle client holds no memory
        else:
            self._counters.put(op.key, _Entry(value, now + op.ttl), now)
        return value

    def _get(self, op: Get, now: float) -> bytes | None:
        entry = self._blobs.get(op.key, now)
        return None if entry is None else entry.value

    def _put(self, op: Put, now: float) -> bool:
        if op.only_new and self._blobs.get(op.key, now) is not None:
            return False
        self._blobs.put(op.key, _Entry(op.value, now + op.ttl), now)
        return True

    def _cadence(self, op: Cadence, now: float) -> CadenceResult:
        entry = self._cadences.get(op.key, now)
        if entry is None:
            self._cadences.put(op.key, _Entry([now, 1, 0.0, 0.0], now + op.ttl), now)
            return CadenceResult(1, 0.0, 0.0)
        last, count, mean, var = entry.value
        interval = max(0.0, now - last)
        if count == 1:
            mean, var = interval, 0.0
        else:
            alpha = 2.0 / (min(count, op.span) + 1)
            delta = interval - mean
            mean += alpha * delta
            var = (1 - alpha) * (var + alpha * delta * delta)
        count = min(count + 1, 1_000_000)
        entry.value = [now, count, mean, var]
        entry.expires = now + op.ttl
        return CadenceResult(count, mean, math.sqrt(var) / mean if mean > 0 else 0.0)

    def _append(self, op: Append, now: float) -> int:
        entry = self._lists.get(op.key, now)
        if entry is None:
            entry = _Entry([], 0.0)
            self._lists.put(op.key, entry, now)
        items: list[bytes] = entry.value
        items.append(op.item)
        if len(items) > op.max_items:
            del items[: len(items) - op.max_items]
        entry.expires = now + op.ttl
        return len(items)

    def _range(self, op: Range, now: float) -> list[bytes]:
        entry = self._lists.get(op.key, now)
        return [] if entry is None else list(entry.value)

    def _rate(self, op: Rate, now: float) -> RateResult:
        index = math.floor(now / op.bucket)
        entry = self._rates.get(op.key, now)
        if entry is None:
            entry = _Entry([index, 0.0, 0.0, 0.0, 0], 0.0)  # index, current, previous, baseline, n
            self._rates.put(op.key, entry, now)
        state = entry.value
        if index != state[0]:
            alpha = 1.0 - 0.5 ** (op.bucket / op.half_life)
            baseline, n = state[3], state[4]
            # Fold the finished bucket, then one zero per bucket that saw nothing.
            for total in [state[1]] + [0.0] * min(index - state[0] - 1, 10_000):
                baseline = total if n == 0 else baseline + alpha * (total - baseline)
                n = min(n + 1, 1_000_000)
            state[:] = [index, 0.0, state[1] if index == state[0] + 1 else 0.0, baseline, n]
        state[1] += op.amount
        entry.expires = now + max(op.half_life * 8, op.bucket * 2)
        return RateResult(state[1], state[2], state[3], state[4])

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
            "sets": len(self._sets),
            "counters": len(self._counters),
            "blobs": len(self._blobs),
            "cadences": len(self._cadences),
            "lists": len(self._lists),
            "rates": len(self._rates),
        }


def _retry_after(w: _Window, elapsed: float, window: float, limit: float, cost: float) -> float:
    room = limit - w.current - cost
    if room < 0 or w.previous <= 0:
        return (1.0 - elapsed) * window + (window if room < 0 else 0.0)
    # previous*(1-f) + current + cost <= limit  <=>  f >= 1 - room/previous
    return max(0.0, (1.0 - room / w.previous - elapsed) * window)
