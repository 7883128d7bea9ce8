"""The Store protocol: the only shared state, every read-check-write one atomic call.

Each operation (see :mod:`.ops`) is shaped so a Redis backend can run it as one Lua
script and behave exactly like the in-memory backend under concurrency; a list of them
runs in one round trip (:meth:`Store.execute`). Keys are plain strings chosen by the
caller; backends add their own prefix. Time comes from the store (Redis ``TIME`` or the
memory store's injected clock), never from the caller, so instances whose clocks differ
still agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import StoreError
from .ops import (
    Budget,
    Commit,
    Consume,
    Hit,
    Op,
    Reserve,
    ReserveResult,
    WindowResult,
)

__all__ = ["Store", "StoreFull", "StoreMethods", "StoreUnavailable"]


class StoreUnavailable(StoreError):
    """The backing store cannot answer; the caller applies its fail-open/closed policy."""


class StoreFull(StoreUnavailable):
    """A bounded structure is full of live entries and refusing is safer than evicting
    (evicting a consumed challenge would let it be replayed)."""


@runtime_checkable
class Store(Protocol):
    #: Capability: the store lives in this process. It answers without waiting
    #: (``execute_now`` works, so a caller with nothing else to await need not schedule
    #: a task) and remembers only while the process lives (so single use, too, holds
    #: only that long: proof/scope.py).
    immediate: bool

    async def execute(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` in order, one result per op; one round trip for remote stores.
        Raises :class:`StoreUnavailable` when the store cannot answer."""
        ...

    async def consume_once(self, key: str, ttl: float) -> bool: ...

    async def hit(self, key: str, *, limit: float, window: float, cost: float = 1.0) -> WindowResult: ...

    async def reserve(
        self, budgets: Sequence[Budget], amount: float, reservation: str, ttl: float
    ) -> ReserveResult: ...

    async def commit(self, reservation: str, actual: float) -> None: ...

    def execute_now(self, ops: Sequence[Op]) -> list[Any]:
        """``execute`` without the coroutine; only when ``immediate`` is true."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class StoreMethods:
    """One-operation conveniences over ``execute``, shared by every backend."""

    immediate = False

    def execute_now(self, ops: Sequence[Op]) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__} answers over the network: use execute()")

    async def execute(self, ops: Sequence[Op]) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def consume_once(self, key: str, ttl: float) -> bool:
        return bool((await self.execute([Consume(key, ttl)]))[0])

    async def hit(self, key: str, *, limit: float, window: float, cost: float = 1.0) -> WindowResult:
        result: WindowResult = (await self.execute([Hit(key, limit, window, cost)]))[0]
        return result

    async def reserve(self, budgets: Sequence[Budget], amount: float, reservation: str, ttl: float) -> ReserveResult:
        result: ReserveResult = (await self.execute([Reserve(tuple(budgets), amount, reservation, ttl)]))[0]
        return result

    async def commit(self, reservation: str, actual: float) -> None:
        await self.execute([Commit(reservation, actual)])
