"""Store fixtures: one conformance suite, every backend.

``store`` is parametrized over ``memory``, ``redis`` (a standalone redis-server this
session starts) and ``cluster`` (a 3-master Redis Cluster this session creates). Redis
stores get a fresh key prefix per test, so tests never see each other's keys, and a
test-only clock (see :class:`tokenward.store.redis.RedisStore`), so windows and expiries
are tested without sleeping. ``peer`` is a second store on the same data, as a second
gateway instance would see it. ``realtime_store`` uses real time (Redis ``TIME``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests.services import RedisClusterServers, RedisServer, need_redis

from tokenward.store import MemoryStore, Store

BACKENDS = ["memory", "redis", "cluster"]
_prefixes = itertools.count()


class FakeClock:
    """Time that only moves when a test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    need_redis()
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    server = request.getfixturevalue("redis_server" if backend == "redis" else "redis_cluster")
    return str(server.url)


class Backend:
    """Makes stores of one backend that share data (same prefix), like several gateways."""

    def __init__(self, name: str, url: str | None, clock: Any) -> None:
        self.name = name
        self.url = url
        self.clock = clock
        self.prefix = f"t{os.getpid()}x{next(_prefixes)}:"
        self._memory: MemoryStore | None = None
        self.opened: list[Store] = []

    def open(self, *, realtime: bool = False) -> Store:
        store: Store
        if self.url is None:
            if self._memory is None or realtime:
                self._memory = MemoryStore() if realtime else MemoryStore(clock=self.clock)
            store = self._memory
        else:
            from tokenward.store.redis import open_redis_store

            # A generous timeout: this suite checks semantics, on a machine that may be busy
            # (timeouts are test_redis_failures.py's subject).
            store = open_redis_store(
                f"{self.url}?prefix={self.prefix}&timeout=5", clock=None if realtime else self.clock
            )
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Backend]:
    url = None if request.param == "memory" else backend_url(request, request.param)
    b = Backend(request.param, url, clock)
    yield b
    await b.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


@pytest.fixture
def peer(backend: Backend, store: Store) -> Store:
    """Another store on the same data: for memory the same object (it is one process)."""
    return store if backend.url is None else backend.open()


@pytest.fixture
def realtime_store(backend: Backend) -> Store:
    return backend.open(realtime=True)
