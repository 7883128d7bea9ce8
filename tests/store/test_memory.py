"""MemoryStore's own properties: single-use entries refuse rather than forget
(``max_used``), every other table is bounded (``max_keys``, least recently used evicted),
its stats, lifecycle and ``memory://`` URIs.

What every backend must do (consume, hit, reserve/commit, ...) is checked once for
memory, Redis and Cluster in ``test_conformance.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tokenward.store import (
    Budget,
    MemoryStore,
    StoreFull,
    StoreUnavailable,
    open_store,
)

if TYPE_CHECKING:
    from tests.store.conftest import FakeClock


@pytest.fixture
def memory(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


# -- single use: max_used ------------------------------------------------------------


async def test_full_single_use_store_refuses_instead_of_evicting(clock: FakeClock) -> None:
    store = MemoryStore(max_used=3, clock=clock)
    for key in ("a", "b", "c"):
        assert await store.consume_once(key, ttl=60)
    with pytest.raises(StoreFull):
        await store.consume_once("d", ttl=60)
    # Nothing live was forgotten: every consumed key is still refused.
    for key in ("a", "b", "c"):
        assert await store.consume_once(key, ttl=60) is False
    assert store.stats()["used"] == 3


def test_store_full_is_a_store_unavailable() -> None:
    # The guard maps StoreUnavailable to a 503; a full store must take that path.
    assert issubclass(StoreFull, StoreUnavailable)


async def test_full_single_use_store_reclaims_expired_entries(clock: FakeClock) -> None:
    store = MemoryStore(max_used=3, clock=clock)
    assert await store.consume_once("old1", ttl=10)
    assert await store.consume_once("old2", ttl=10)
    assert await store.consume_once("live", ttl=100)
    clock.advance(10)
    assert await store.consume_once("new1", ttl=100)
    assert await store.consume_once("new2", ttl=100)
    assert store.stats()["used"] == 3
    assert await store.consume_once("live", ttl=100) is False
    with pytest.raises(StoreFull):
        await store.consume_once("new3", ttl=100)


# -- budgets: reserve / commit ---------------------------------------------------------


async def test_commit_of_unknown_reservation_leaves_no_hold(memory: MemoryStore) -> None:
    # The budget part is in the conformance suite; here: no phantom hold is left behind.
    budget = Budget("user", limit=10, window=3600)
    await memory.commit("never-reserved", 1000)
    assert (await memory.reserve([budget], 10, "r1", ttl=30)).ok
    assert memory.stats()["holds"] == 1


# -- bounded memory ---------------------------------------------------------------------


async def test_counters_stay_within_max_keys(clock: FakeClock) -> None:
    store = MemoryStore(max_keys=1000, clock=clock)
    for i in range(50_000):
        await store.hit(f"ip:{i}", limit=10, window=60)
    assert store.stats()["windows"] <= 1000


async def test_budget_buckets_stay_within_max_keys(clock: FakeClock) -> None:
    store = MemoryStore(max_keys=1000, clock=clock)
    for i in range(20_000):
        assert (await store.reserve([Budget(f"user:{i}", 10, 60)], 1, f"r{i}", ttl=30)).ok
        await store.commit(f"r{i}", 1)
    stats = store.stats()
    assert stats["buckets"] <= 1000
    assert stats["holds"] == 0


async def test_lru_keeps_the_recently_used_counter(clock: FakeClock) -> None:
    store = MemoryStore(max_keys=3, clock=clock)
    assert (await store.hit("hot", limit=1, window=60)).allowed
    for i in range(10):
        await store.hit(f"cold:{i}", limit=1, window=60)
        assert not (await store.hit("hot", limit=1, window=60)).allowed  # touched: kept
    assert store.stats()["windows"] <= 3


# -- lifecycle and URIs -------------------------------------------------------------------


async def test_ping_and_close(memory: MemoryStore) -> None:
    assert await memory.ping() is True
    await memory.close()


async def test_open_store_memory_with_options() -> None:
    store = open_store("memory://?max_used=2&max_keys=5")
    assert isinstance(store, MemoryStore)
    assert await store.consume_once("a", 60)
    assert await store.consume_once("b", 60)
    with pytest.raises(StoreFull):
        await store.consume_once("c", 60)


def test_open_store_plain_memory() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


async def test_open_store_max_used_option_is_applied() -> None:
    store = open_store("memory://?max_used=10")
    for i in range(10):
        assert await store.consume_once(f"k{i}", 60)
    with pytest.raises(StoreFull):
        await store.consume_once("k10", 60)


@pytest.mark.parametrize("uri", ["memcached://x", "", "/tmp/store"])
def test_open_store_unknown_scheme_is_a_clear_error(uri: str) -> None:
    with pytest.raises(ValueError, match="unknown store URI scheme"):
        open_store(uri)


def test_open_store_unknown_option_names_it() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        open_store("memory://?max_entries=10")


@pytest.mark.parametrize("query", ["max_used=lots", "max_used=0", "max_keys=-5"])
def test_open_store_rejects_unusable_option_values(query: str) -> None:
    # A cap of 0 (or below) would refuse every proof; a non-number is a typo.
    with pytest.raises(ValueError, match="max_"):
        open_store(f"memory://?{query}")
