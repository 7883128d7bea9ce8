"""MemoryStore: every read-check-write is one atomic call; memory stays bounded."""

from __future__ import annotations

import asyncio

import pytest

from tokenward.store import (
    Budget,
    MemoryStore,
    StoreFull,
    StoreUnavailable,
    open_store,
)


class FakeClock:
    """Time that only moves when a test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


# -- consume_once --------------------------------------------------------------------


async def test_consume_once_is_true_only_the_first_time(store: MemoryStore) -> None:
    assert await store.consume_once("c1", ttl=60) is True
    assert await store.consume_once("c1", ttl=60) is False
    assert await store.consume_once("c1", ttl=60) is False


async def test_consume_once_keys_are_independent(store: MemoryStore) -> None:
    assert await store.consume_once("a", ttl=60) is True
    assert await store.consume_once("b", ttl=60) is True


async def test_concurrent_consume_of_one_key_has_exactly_one_winner(store: MemoryStore) -> None:
    results = await asyncio.gather(*(store.consume_once("same", ttl=60) for _ in range(200)))
    assert results.count(True) == 1
    assert results.count(False) == 199


async def test_consumed_key_is_usable_again_only_after_ttl(store: MemoryStore, clock: FakeClock) -> None:
    assert await store.consume_once("k", ttl=30)
    clock.advance(29.999)
    assert await store.consume_once("k", ttl=30) is False
    clock.advance(0.001)  # now == expiry: the entry is gone
    assert await store.consume_once("k", ttl=30) is True
    assert await store.consume_once("k", ttl=30) is False


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


# -- sliding-window hit ----------------------------------------------------------------


async def test_hit_allows_up_to_the_limit_then_refuses(store: MemoryStore, clock: FakeClock) -> None:
    clock.now = 1_000_000.0  # exactly at a window start (1_000_000 / 10 is whole)
    results = [await store.hit("ip", limit=5, window=10) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert results[4].count == 5
    assert all(r.retry_after == 0 for r in results[:5])
    refused = results[5]
    assert refused.retry_after > 0
    assert refused.count == 5  # a refused hit is not counted
    assert refused.limit == 5


async def test_hit_cost_is_weighed(store: MemoryStore) -> None:
    assert (await store.hit("k", limit=10, window=60, cost=7)).allowed
    assert not (await store.hit("k", limit=10, window=60, cost=4)).allowed
    assert (await store.hit("k", limit=10, window=60, cost=3)).allowed


async def test_hit_cost_above_limit_is_never_allowed(store: MemoryStore) -> None:
    r = await store.hit("k", limit=5, window=60, cost=6)
    assert not r.allowed
    assert r.retry_after > 0


async def test_hit_weights_the_previous_window(store: MemoryStore, clock: FakeClock) -> None:
    clock.now = 1_000_000.0  # start of a 100 s window
    for _ in range(10):
        assert (await store.hit("k", limit=10, window=100)).allowed
    # A quarter into the next window, the previous 10 still weigh 10 * 0.75 = 7.5.
    clock.advance(125)
    r = await store.hit("k", limit=10, window=100)
    assert r.allowed
    assert r.count == pytest.approx(8.5)
    assert (await store.hit("k", limit=10, window=100)).allowed  # 9.5
    refused = await store.hit("k", limit=10, window=100)
    assert not refused.allowed
    assert refused.count == pytest.approx(9.5)
    # The hit fits once previous*(1-f) + 2 + 1 <= 10, i.e. f >= 0.3: 5 s from now.
    assert refused.retry_after == pytest.approx(5.0)
    clock.advance(refused.retry_after + 0.001)  # float rounding at the exact boundary
    assert (await store.hit("k", limit=10, window=100)).allowed


async def test_hit_forgets_windows_older_than_the_previous_one(store: MemoryStore, clock: FakeClock) -> None:
    clock.now = 1_000_000.0
    for _ in range(10):
        await store.hit("k", limit=10, window=100)
    clock.advance(250)  # two windows later: the old hits no longer count at all
    r = await store.hit("k", limit=10, window=100)
    assert r.allowed
    assert r.count == pytest.approx(1.0)


async def test_refused_hit_is_allowed_after_retry_after(store: MemoryStore, clock: FakeClock) -> None:
    clock.now = 1_000_000.0 + 30  # 30 s into a 60 s window
    for _ in range(3):
        assert (await store.hit("k", limit=3, window=60)).allowed
    refused = await store.hit("k", limit=3, window=60)
    assert not refused.allowed and refused.retry_after > 0
    clock.advance(refused.retry_after + 0.001)
    assert (await store.hit("k", limit=3, window=60)).allowed


async def test_hit_keys_are_independent(store: MemoryStore) -> None:
    assert (await store.hit("a", limit=1, window=60)).allowed
    assert not (await store.hit("a", limit=1, window=60)).allowed
    assert (await store.hit("b", limit=1, window=60)).allowed


async def test_concurrent_hits_never_exceed_the_limit(store: MemoryStore) -> None:
    results = await asyncio.gather(*(store.hit("k", limit=50, window=60) for _ in range(200)))
    assert sum(r.allowed for r in results) == 50


# -- budgets: reserve / commit ---------------------------------------------------------


async def test_reserve_within_budget_is_ok(store: MemoryStore) -> None:
    budget = Budget("user:1", limit=100, window=3600)
    r = await store.reserve([budget], 60, "r1", ttl=30)
    assert r.ok and r.exhausted is None and r.retry_after == 0
    refused = await store.reserve([budget], 41, "r2", ttl=30)
    assert not refused.ok
    assert refused.exhausted == budget
    assert refused.retry_after > 0
    assert (await store.reserve([budget], 40, "r3", ttl=30)).ok


async def test_refused_reserve_changes_nothing(store: MemoryStore) -> None:
    roomy = Budget("ip:1", limit=1000, window=60)
    tight = Budget("user:1", limit=10, window=60)
    assert (await store.reserve([roomy, tight], 8, "r1", ttl=30)).ok
    refused = await store.reserve([roomy, tight], 5, "r2", ttl=30)
    assert not refused.ok
    assert refused.exhausted == tight
    # The roomy budget was not charged for the refused reservation: 992 still fit.
    assert (await store.reserve([roomy], 992, "r3", ttl=30)).ok
    assert not (await store.reserve([roomy], 1, "r4", ttl=30)).ok
    # And the refused reservation holds nothing that a commit could change.
    await store.commit("r2", 0)
    assert not (await store.reserve([tight], 3, "r5", ttl=30)).ok


async def test_reserve_reports_the_first_exhausted_budget(store: MemoryStore) -> None:
    a = Budget("a", limit=1, window=60)
    b = Budget("b", limit=1, window=60)
    assert not (await store.reserve([a, b], 2, "r", ttl=30)).ok
    assert (await store.reserve([a, b], 2, "r", ttl=30)).exhausted == a


async def test_concurrent_reserves_fit_exactly(store: MemoryStore) -> None:
    budget = Budget("site", limit=50, window=60)
    results = await asyncio.gather(*(store.reserve([budget], 1, f"r{i}", ttl=30) for i in range(200)))
    assert sum(r.ok for r in results) == 50
    assert all(r.exhausted == budget for r in results if not r.ok)


async def test_commit_replaces_the_hold_with_the_actual_amount(store: MemoryStore) -> None:
    budget = Budget("user", limit=100, window=3600)
    assert (await store.reserve([budget], 80, "r1", ttl=30)).ok
    assert not (await store.reserve([budget], 30, "probe", ttl=30)).ok
    await store.commit("r1", 20)
    assert (await store.reserve([budget], 80, "r2", ttl=30)).ok  # 20 + 80 = 100
    assert not (await store.reserve([budget], 1, "r3", ttl=30)).ok


async def test_commit_can_charge_more_than_was_held(store: MemoryStore) -> None:
    budget = Budget("user", limit=100, window=3600)
    assert (await store.reserve([budget], 10, "r1", ttl=30)).ok
    await store.commit("r1", 95)
    assert not (await store.reserve([budget], 10, "r2", ttl=30)).ok
    assert (await store.reserve([budget], 5, "r3", ttl=30)).ok


async def test_commit_zero_releases_the_hold(store: MemoryStore) -> None:
    budget = Budget("user", limit=10, window=3600)
    assert (await store.reserve([budget], 10, "r1", ttl=30)).ok
    await store.commit("r1", 0)
    assert (await store.reserve([budget], 10, "r2", ttl=30)).ok


async def test_commit_twice_counts_once(store: MemoryStore) -> None:
    budget = Budget("user", limit=10, window=3600)
    assert (await store.reserve([budget], 5, "r1", ttl=30)).ok
    await store.commit("r1", 5)
    await store.commit("r1", 5)  # second commit: unknown reservation, no-op
    assert (await store.reserve([budget], 5, "r2", ttl=30)).ok


async def test_commit_of_unknown_reservation_is_a_no_op(store: MemoryStore) -> None:
    budget = Budget("user", limit=10, window=3600)
    await store.commit("never-reserved", 1000)
    assert (await store.reserve([budget], 10, "r1", ttl=30)).ok
    assert store.stats()["holds"] == 1


async def test_uncommitted_hold_is_released_after_its_ttl(store: MemoryStore, clock: FakeClock) -> None:
    clock.now = 1_000_000.0  # start of an hour window: the window does not roll below
    budget = Budget("user", limit=10, window=3600)
    assert (await store.reserve([budget], 10, "crashed", ttl=30)).ok
    clock.advance(29)
    assert not (await store.reserve([budget], 1, "r2", ttl=30)).ok
    clock.advance(1)
    assert (await store.reserve([budget], 10, "r3", ttl=30)).ok


async def test_commit_after_the_hold_expired_is_a_no_op(store: MemoryStore, clock: FakeClock) -> None:
    """A hold lasts until commit or ttl, whichever comes first (Store.reserve): once the
    ttl has passed the reservation no longer exists, whether or not another reserve call
    happened to sweep it in between. The two orders must leave the budget the same."""
    clock.now = 1_000_000.0
    budget = Budget("user", limit=10, window=3600)

    # Order 1: another reserve runs after expiry, then the late commit.
    assert (await store.reserve([budget], 10, "late-a", ttl=30)).ok
    clock.advance(31)
    assert (await store.reserve([Budget("other", 1, 3600)], 1, "sweep", ttl=30)).ok
    await store.commit("late-a", 7)
    swept_room = (await store.reserve([budget], 10, "probe-a", ttl=30)).ok
    await store.commit("probe-a", 0)

    # Order 2 (fresh store): the late commit comes first.
    other = MemoryStore(clock=clock)
    assert (await other.reserve([budget], 10, "late-b", ttl=30)).ok
    clock.advance(31)
    await other.commit("late-b", 7)
    unswept_room = (await other.reserve([budget], 10, "probe-b", ttl=30)).ok

    assert swept_room is True
    assert unswept_room is swept_room


async def test_budget_window_rolls_over(store: MemoryStore, clock: FakeClock) -> None:
    clock.now = 1_000_000.0 + 50  # 50 s into a 100 s window
    budget = Budget("user", limit=10, window=100)
    assert (await store.reserve([budget], 10, "r1", ttl=1000)).ok
    await store.commit("r1", 10)
    refused = await store.reserve([budget], 1, "r2", ttl=1000)
    assert not refused.ok
    assert refused.retry_after == pytest.approx(50)
    clock.advance(50)
    assert (await store.reserve([budget], 10, "r3", ttl=1000)).ok


async def test_budgets_with_other_windows_are_separate(store: MemoryStore) -> None:
    minute = Budget("user", limit=5, window=60)
    day = Budget("user", limit=100, window=86400)
    assert (await store.reserve([minute, day], 5, "r1", ttl=30)).ok
    assert (await store.reserve([day], 95, "r2", ttl=30)).ok


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


async def test_ping_and_close(store: MemoryStore) -> None:
    assert await store.ping() is True
    await store.close()


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
