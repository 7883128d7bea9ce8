"""One conformance suite for every Store backend: memory, Redis, Redis Cluster.

Every test runs once per backend (see ``conftest.py``). Time-dependent behaviour uses the
injected test clock, which the Redis store sends to its scripts instead of Redis ``TIME``;
a few tests use real time with short TTLs. A differential test replays one random
sequence of operations on the backend and on a fresh memory store and compares every
result: the memory store is the reference semantics.
"""

from __future__ import annotations

import asyncio
import math
import random
import typing
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from tokenward.store import (
    Append,
    Budget,
    Cadence,
    CadenceResult,
    Commit,
    Consume,
    Distinct,
    Get,
    Hit,
    Inflight,
    MemoryStore,
    Op,
    Put,
    Range,
    Rate,
    RateResult,
    Reserve,
    ReserveResult,
    Store,
    WindowResult,
)

if TYPE_CHECKING:
    from tests.store.conftest import Backend, FakeClock

# -- consume once ------------------------------------------------------------------------


async def test_consume_once_is_true_only_the_first_time(store: Store) -> None:
    assert await store.consume_once("c1", ttl=60) is True
    assert await store.consume_once("c1", ttl=60) is False
    assert await store.consume_once("c1", ttl=60) is False


async def test_consume_once_keys_are_independent(store: Store) -> None:
    assert await store.consume_once("a", ttl=60) is True
    assert await store.consume_once("b", ttl=60) is True


@pytest.mark.parametrize("key", ["", "{", "}", "a}b{c", "{tw:budgets}", "%7B", "ünï/çødé key"])
async def test_any_key_is_one_key(store: Store, key: str) -> None:
    # Braces would be hash tags on Cluster: every key must still map to one slot and
    # stay distinct from its escaped spelling.
    assert await store.consume_once(key, ttl=60) is True
    assert await store.consume_once(key, ttl=60) is False
    assert (await store.execute([Put(key, b"v", 60), Get(key), Append(key, b"i", 3, 60), Range(key)])) == [
        True, b"v", 1, [b"i"],
    ]  # fmt: skip


async def test_escaped_spellings_do_not_collide(store: Store) -> None:
    assert await store.consume_once("{", ttl=60)
    assert await store.consume_once("%7B", ttl=60)
    assert await store.consume_once("%", ttl=60)
    assert await store.consume_once("", ttl=60)


async def test_concurrent_consume_of_one_key_has_exactly_one_winner(store: Store, peer: Store) -> None:
    # Two gateway instances (two stores, separate connections) race for one challenge.
    results = await asyncio.gather(*((store if i % 2 else peer).consume_once("same", ttl=60) for i in range(200)))
    assert results.count(True) == 1
    assert results.count(False) == 199


async def test_consumed_key_is_usable_again_only_after_ttl(store: Store, clock: FakeClock) -> None:
    assert await store.consume_once("k", ttl=30)
    clock.advance(29.999)
    assert await store.consume_once("k", ttl=30) is False
    clock.advance(0.001)  # now == expiry: the entry is gone
    assert await store.consume_once("k", ttl=30) is True
    assert await store.consume_once("k", ttl=30) is False


async def test_consume_expires_in_real_time(realtime_store: Store) -> None:
    assert await realtime_store.consume_once("k", ttl=0.2)
    assert await realtime_store.consume_once("k", ttl=0.2) is False
    await asyncio.sleep(0.3)
    assert await realtime_store.consume_once("k", ttl=0.2) is True


# -- sliding-window hit -------------------------------------------------------------------


async def test_hit_allows_up_to_the_limit_then_refuses(store: Store, clock: FakeClock) -> None:
    clock.now = 1_000_000.0  # exactly at a window start
    results = [await store.hit("ip", limit=5, window=10) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert results[4].count == 5
    assert all(r.retry_after == 0 for r in results[:5])
    refused = results[5]
    assert refused.retry_after > 0
    assert refused.count == 5  # a refused hit is not counted
    assert refused.limit == 5


async def test_hit_cost_is_weighed(store: Store) -> None:
    assert (await store.hit("k", limit=10, window=60, cost=7)).allowed
    assert not (await store.hit("k", limit=10, window=60, cost=4)).allowed
    assert (await store.hit("k", limit=10, window=60, cost=3)).allowed


async def test_hit_cost_above_limit_is_never_allowed(store: Store) -> None:
    r = await store.hit("k", limit=5, window=60, cost=6)
    assert not r.allowed
    assert r.retry_after > 0


async def test_hit_without_limit_just_counts(store: Store) -> None:
    for i in range(1, 4):
        r = await store.hit("k", limit=math.inf, window=60, cost=2.5)
        assert r.allowed and r.count == pytest.approx(2.5 * i) and r.limit == math.inf


async def test_hit_weights_the_previous_window(store: Store, clock: FakeClock) -> None:
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
    clock.advance(refused.retry_after + 0.001)
    assert (await store.hit("k", limit=10, window=100)).allowed


async def test_hit_forgets_windows_older_than_the_previous_one(store: Store, clock: FakeClock) -> None:
    clock.now = 1_000_000.0
    for _ in range(10):
        await store.hit("k", limit=10, window=100)
    clock.advance(250)
    r = await store.hit("k", limit=10, window=100)
    assert r.allowed
    assert r.count == pytest.approx(1.0)


async def test_refused_hit_is_allowed_after_retry_after(store: Store, clock: FakeClock) -> None:
    clock.now = 1_000_000.0 + 30
    for _ in range(3):
        assert (await store.hit("k", limit=3, window=60)).allowed
    refused = await store.hit("k", limit=3, window=60)
    assert not refused.allowed and refused.retry_after > 0
    clock.advance(refused.retry_after + 0.001)
    assert (await store.hit("k", limit=3, window=60)).allowed


async def test_hit_keys_are_independent(store: Store) -> None:
    assert (await store.hit("a", limit=1, window=60)).allowed
    assert not (await store.hit("a", limit=1, window=60)).allowed
    assert (await store.hit("b", limit=1, window=60)).allowed


async def test_concurrent_hits_never_exceed_the_limit(store: Store, peer: Store) -> None:
    results = await asyncio.gather(*((store if i % 2 else peer).hit("k", limit=50, window=60) for i in range(200)))
    assert sum(r.allowed for r in results) == 50


# -- budgets: reserve / commit -------------------------------------------------------------


async def test_reserve_within_budget_is_ok(store: Store) -> None:
    budget = Budget("user:1", limit=100, window=3600)
    r = await store.reserve([budget], 60, "r1", ttl=30)
    assert r.ok and r.exhausted is None and r.retry_after == 0
    refused = await store.reserve([budget], 41, "r2", ttl=30)
    assert not refused.ok
    assert refused.exhausted == budget
    assert refused.retry_after > 0
    assert (await store.reserve([budget], 40, "r3", ttl=30)).ok


async def test_refused_reserve_changes_nothing(store: Store) -> None:
    roomy = Budget("ip:1", limit=1000, window=60)
    tight = Budget("user:1", limit=10, window=60)
    assert (await store.reserve([roomy, tight], 8, "r1", ttl=30)).ok
    refused = await store.reserve([roomy, tight], 5, "r2", ttl=30)
    assert not refused.ok
    assert refused.exhausted == tight
    assert (await store.reserve([roomy], 992, "r3", ttl=30)).ok
    assert not (await store.reserve([roomy], 1, "r4", ttl=30)).ok
    await store.commit("r2", 0)
    assert not (await store.reserve([tight], 3, "r5", ttl=30)).ok


async def test_reserve_reports_the_first_exhausted_budget(store: Store) -> None:
    a = Budget("a", limit=1, window=60)
    b = Budget("b", limit=1, window=60)
    first = await store.reserve([a, b], 2, "r", ttl=30)
    assert not first.ok and first.exhausted == a
    assert (await store.reserve([Budget("c", 5, 60), b], 2, "r", ttl=30)).exhausted == b


async def test_concurrent_reserves_fit_exactly(store: Store, peer: Store) -> None:
    budget = Budget("site", limit=50, window=3600)

    async def spend(i: int) -> ReserveResult:
        s = store if i % 2 else peer
        r = await s.reserve([budget], 1, f"r{i}", ttl=30)
        if r.ok:
            await s.commit(f"r{i}", 1)
        return r

    results = await asyncio.gather(*(spend(i) for i in range(200)))
    assert sum(r.ok for r in results) == 50
    assert all(r.exhausted == budget for r in results if not r.ok)
    # Everything admitted was committed at full price: the budget is exactly full.
    assert not (await store.reserve([budget], 0.001, "probe", ttl=30)).ok
    assert (await store.reserve([budget], 0, "zero", ttl=30)).ok


async def test_concurrent_reserves_over_several_budgets_are_all_or_nothing(store: Store, peer: Store) -> None:
    site = Budget("site", limit=1000, window=3600)
    users = [Budget(f"user:{u}", limit=10, window=3600) for u in range(4)]
    results = await asyncio.gather(
        *((store if i % 2 else peer).reserve([site, users[i % 4]], 1, f"r{i}", ttl=30) for i in range(200))
    )
    assert sum(r.ok for r in results) == 40  # 10 per user; the site budget is only charged for those
    assert (await store.reserve([site], 960, "rest", ttl=30)).ok
    assert not (await store.reserve([site], 1, "over", ttl=30)).ok


async def test_commit_replaces_the_hold_with_the_actual_amount(store: Store) -> None:
    budget = Budget("user", limit=100, window=3600)
    assert (await store.reserve([budget], 80, "r1", ttl=30)).ok
    assert not (await store.reserve([budget], 30, "probe", ttl=30)).ok
    await store.commit("r1", 20)
    assert (await store.reserve([budget], 80, "r2", ttl=30)).ok
    assert not (await store.reserve([budget], 1, "r3", ttl=30)).ok


async def test_commit_can_charge_more_than_was_held(store: Store) -> None:
    budget = Budget("user", limit=100, window=3600)
    assert (await store.reserve([budget], 10, "r1", ttl=30)).ok
    await store.commit("r1", 95)
    assert not (await store.reserve([budget], 10, "r2", ttl=30)).ok
    assert (await store.reserve([budget], 5, "r3", ttl=30)).ok


async def test_commit_zero_releases_the_hold(store: Store) -> None:
    budget = Budget("user", limit=10, window=3600)
    assert (await store.reserve([budget], 10, "r1", ttl=30)).ok
    await store.commit("r1", 0)
    assert (await store.reserve([budget], 10, "r2", ttl=30)).ok


async def test_commit_twice_counts_once(store: Store) -> None:
    budget = Budget("user", limit=10, window=3600)
    assert (await store.reserve([budget], 5, "r1", ttl=30)).ok
    await store.commit("r1", 5)
    await store.commit("r1", 5)
    assert (await store.reserve([budget], 5, "r2", ttl=30)).ok
    assert not (await store.reserve([budget], 0.5, "r3", ttl=30)).ok


async def test_commit_of_unknown_reservation_is_a_no_op(store: Store) -> None:
    budget = Budget("user", limit=10, window=3600)
    await store.commit("never-reserved", 1000)
    assert (await store.reserve([budget], 10, "r1", ttl=30)).ok


async def test_uncommitted_hold_is_released_after_its_ttl(store: Store, clock: FakeClock) -> None:
    clock.now = 1_000_000.0
    budget = Budget("user", limit=10, window=3600)
    assert (await store.reserve([budget], 10, "crashed", ttl=30)).ok
    clock.advance(29)
    assert not (await store.reserve([budget], 1, "r2", ttl=30)).ok
    clock.advance(1)
    assert (await store.reserve([budget], 10, "r3", ttl=30)).ok


async def test_only_the_expired_holds_are_released(store: Store, clock: FakeClock) -> None:
    clock.now = 1_000_000.0
    budget = Budget("user", limit=10, window=3600)
    assert (await store.reserve([budget], 3, "short", ttl=10)).ok
    assert (await store.reserve([budget], 4, "long", ttl=100)).ok
    assert (await store.reserve([budget], 2, "spent", ttl=10)).ok
    await store.commit("spent", 2)
    clock.advance(10)  # "short" is gone; "long" and the 2 spent remain
    assert (await store.reserve([budget], 4, "r", ttl=10)).ok
    assert not (await store.reserve([budget], 0.5, "r2", ttl=10)).ok


async def test_commit_after_the_hold_expired_is_a_no_op(backend: Backend, clock: FakeClock) -> None:
    clock.now = 1_000_000.0
    budget = Budget("user", limit=10, window=3600)
    store = backend.open()
    # Order 1: another reserve runs after expiry, then the late commit.
    assert (await store.reserve([budget], 10, "late-a", ttl=30)).ok
    clock.advance(31)
    assert (await store.reserve([Budget("other", 1, 3600)], 1, "sweep", ttl=30)).ok
    await store.commit("late-a", 7)
    swept_room = (await store.reserve([budget], 10, "probe-a", ttl=30)).ok
    await store.commit("probe-a", 0)
    # Order 2 (another budget, so a fresh bucket): the late commit comes first.
    budget_b = Budget("user-b", limit=10, window=3600)
    assert (await store.reserve([budget_b], 10, "late-b", ttl=30)).ok
    clock.advance(31)
    await store.commit("late-b", 7)
    unswept_room = (await store.reserve([budget_b], 10, "probe-b", ttl=30)).ok
    assert swept_room is True
    assert unswept_room is True


async def test_budget_window_rolls_over(store: Store, clock: FakeClock) -> None:
    clock.now = 1_000_000.0 + 50
    budget = Budget("user", limit=10, window=100)
    assert (await store.reserve([budget], 10, "r1", ttl=1000)).ok
    await store.commit("r1", 10)
    refused = await store.reserve([budget], 1, "r2", ttl=1000)
    assert not refused.ok
    assert refused.retry_after == pytest.approx(50)
    clock.advance(50)
    assert (await store.reserve([budget], 10, "r3", ttl=1000)).ok


async def test_budgets_with_other_windows_are_separate(store: Store) -> None:
    minute = Budget("user", limit=5, window=60)
    day = Budget("user", limit=100, window=86400)
    assert (await store.reserve([minute, day], 5, "r1", ttl=30)).ok
    assert (await store.reserve([day], 95, "r2", ttl=30)).ok


async def test_reserve_with_no_budget_is_ok_and_commits(store: Store) -> None:
    assert (await store.reserve([], 5, "r", ttl=30)).ok
    await store.commit("r", 5)


# -- distinct --------------------------------------------------------------------------------


async def test_distinct_counts_members_once(store: Store, clock: FakeClock) -> None:
    counts = []
    for member in ["1.1.1.1", "2.2.2.2", "1.1.1.1", "3.3.3.3", "2.2.2.2"]:
        clock.advance(0.01)
        counts.append((await store.execute([Distinct("dev", member, 60)]))[0])
    assert counts == [1, 2, 2, 3, 3]


async def test_distinct_forgets_members_not_seen_within_the_window(store: Store, clock: FakeClock) -> None:
    assert (await store.execute([Distinct("d", "a", 10)]))[0] == 1
    clock.advance(1)
    assert (await store.execute([Distinct("d", "b", 10)]))[0] == 2
    clock.advance(8)
    assert (await store.execute([Distinct("d", "a", 10)]))[0] == 2  # "a" seen again at 9
    clock.advance(6)  # now 15: "b" (1) is out of the window, "a" (9) is not
    assert (await store.execute([Distinct("d", "c", 10)]))[0] == 2
    clock.advance(100)
    assert (await store.execute([Distinct("d", "c", 10)]))[0] == 1


async def test_distinct_is_bounded_by_its_cap(store: Store, clock: FakeClock) -> None:
    for i in range(100):
        clock.advance(0.001)
        n = (await store.execute([Distinct("d", f"m{i}", 3600, cap=10)]))[0]
    assert n == 10


# -- inflight --------------------------------------------------------------------------------


async def test_inflight_counts_up_and_down_never_below_zero(store: Store) -> None:
    results = await store.execute(
        [Inflight("u", 1, 60), Inflight("u", 1, 60), Inflight("u", -1, 60), Inflight("u", -5, 60), Inflight("u", 1, 60)]
    )
    assert results == [1, 2, 1, 0, 1]


async def test_inflight_resets_ttl_after_its_last_change(store: Store, clock: FakeClock) -> None:
    assert (await store.execute([Inflight("u", 3, 30)]))[0] == 3
    clock.advance(20)
    assert (await store.execute([Inflight("u", 1, 30)]))[0] == 4  # refreshed
    clock.advance(29)
    assert (await store.execute([Inflight("u", 0, 30)]))[0] == 4
    clock.advance(30)
    assert (await store.execute([Inflight("u", 1, 30)]))[0] == 1  # a lost decrement healed


async def test_concurrent_inflight_increments_all_count(store: Store, peer: Store) -> None:
    results = await asyncio.gather(*((store if i % 2 else peer).execute([Inflight("c", 1, 60)]) for i in range(100)))
    assert sorted(r[0] for r in results) == list(range(1, 101))


# -- blobs -------------------------------------------------------------------------------------


async def test_put_then_get_binary_values(store: Store) -> None:
    value = bytes(range(256)) + b"\x00tail"
    assert await store.execute([Put("k", value, 60), Get("k"), Get("missing")]) == [True, value, None]
    assert await store.execute([Put("e", b"", 60), Get("e")]) == [True, b""]


async def test_put_only_new_respects_a_live_value(store: Store, clock: FakeClock) -> None:
    assert await store.execute([Put("k", b"one", 30, only_new=True)]) == [True]
    assert await store.execute([Put("k", b"two", 30, only_new=True), Get("k")]) == [False, b"one"]
    assert await store.execute([Put("k", b"three", 30), Get("k")]) == [True, b"three"]
    clock.advance(30)
    assert await store.execute([Get("k")]) == [None]
    assert await store.execute([Put("k", b"four", 30, only_new=True), Get("k")]) == [True, b"four"]


async def test_concurrent_put_only_new_has_one_winner(store: Store, peer: Store) -> None:
    results = await asyncio.gather(
        *((store if i % 2 else peer).execute([Put("lock", str(i).encode(), 60, only_new=True)]) for i in range(100))
    )
    winners = [i for i, r in enumerate(results) if r[0]]
    assert len(winners) == 1
    assert await store.execute([Get("lock")]) == [str(winners[0]).encode()]


# -- cadence -------------------------------------------------------------------------------------


async def test_cadence_of_clockwork_arrivals(store: Store, clock: FakeClock) -> None:
    first = (await store.execute([Cadence("bot")]))[0]
    assert first == CadenceResult(1, 0.0, 0.0)
    for _ in range(10):
        clock.advance(2.0)
        r = (await store.execute([Cadence("bot")]))[0]
    assert r.count == 11
    assert r.mean_interval == pytest.approx(2.0)
    assert r.cv == pytest.approx(0.0, abs=1e-9)


async def test_cadence_of_irregular_arrivals_has_spread(store: Store, clock: FakeClock) -> None:
    await store.execute([Cadence("human")])
    for gap in [1.0, 9.0, 0.5, 12.0, 3.0, 0.2, 7.0]:
        clock.advance(gap)
        r = (await store.execute([Cadence("human", span=5)]))[0]
    assert r.count == 8
    assert r.cv > 0.5


async def test_cadence_is_forgotten_after_ttl(store: Store, clock: FakeClock) -> None:
    await store.execute([Cadence("k", ttl=60)])
    clock.advance(5)
    assert (await store.execute([Cadence("k", ttl=60)]))[0].count == 2
    clock.advance(60)
    assert (await store.execute([Cadence("k", ttl=60)]))[0] == CadenceResult(1, 0.0, 0.0)


# -- lists ------------------------------------------------------------------------------------------


async def test_append_keeps_the_last_items_in_order(store: Store) -> None:
    lengths = await store.execute([Append("l", f"{i}".encode(), 3, 60) for i in range(5)])
    assert lengths == [1, 2, 3, 3, 3]
    assert await store.execute([Range("l"), Range("none")]) == [[b"2", b"3", b"4"], []]


async def test_list_expires_ttl_after_its_last_append(store: Store, clock: FakeClock) -> None:
    await store.execute([Append("l", b"a", 10, 30)])
    clock.advance(20)
    await store.execute([Append("l", b"b", 10, 30)])
    clock.advance(20)
    assert await store.execute([Range("l")]) == [[b"a", b"b"]]
    clock.advance(10)
    assert await store.execute([Range("l")]) == [[]]
    assert await store.execute([Append("l", b"c", 10, 30), Range("l")]) == [1, [b"c"]]


# -- rate baselines -----------------------------------------------------------------------------------


async def test_rate_totals_buckets_and_folds_a_baseline(store: Store, clock: FakeClock) -> None:
    clock.now = 1_000_000.0 + 1  # 1_000_000 is a multiple of 10
    r = (await store.execute([Rate("t", 5, bucket=10, half_life=10)]))[0]
    assert r == RateResult(5.0, 0.0, 0.0, 0)
    r = (await store.execute([Rate("t", 2, bucket=10, half_life=10)]))[0]
    assert r == RateResult(7.0, 0.0, 0.0, 0)
    clock.advance(10)  # next bucket: the first total becomes the baseline
    r = (await store.execute([Rate("t", 1, bucket=10, half_life=10)]))[0]
    assert r == RateResult(1.0, 7.0, 7.0, 1)
    clock.advance(30)  # two empty buckets in between count as zeros
    r = (await store.execute([Rate("t", 4, bucket=10, half_life=10)]))[0]
    # alpha = 1 - 0.5 ** (10/10) = 0.5: fold 1 -> 4.0, then 0 -> 2.0, then 0 -> 1.0
    assert r.current == 4.0 and r.previous == 0.0 and r.buckets == 4
    assert r.baseline == pytest.approx(1.0)


async def test_rate_is_forgotten_after_its_horizon(store: Store, clock: FakeClock) -> None:
    await store.execute([Rate("t", 5, bucket=10, half_life=10)])
    clock.advance(81)  # max(8 * half_life, 2 * bucket) = 80 s after the last add
    assert (await store.execute([Rate("t", 1, bucket=10, half_life=10)]))[0] == RateResult(1.0, 0.0, 0.0, 0)


# -- batches ------------------------------------------------------------------------------------------


async def test_a_batch_runs_in_order_with_one_result_per_op(store: Store) -> None:
    budget = Budget("b", limit=10, window=3600)
    results = await store.execute(
        [
            Consume("c", 60),
            Consume("c", 60),
            Put("p", b"x", 60),
            Get("p"),
            Hit("h", limit=1, window=60),
            Hit("h", limit=1, window=60),
            Reserve((budget,), 6, "r", 30),
            Commit("r", 1),
            Reserve((budget,), 9, "r2", 30),
            Distinct("d", "m", 60),
            Inflight("i", 2, 60),
            Cadence("cad"),
            Append("l", b"1", 5, 60),
            Append("l", b"2", 5, 60),
            Range("l"),
            Rate("rate", 3),
        ]
    )
    assert results[:4] == [True, False, True, b"x"]
    assert isinstance(results[4], WindowResult) and results[4].allowed
    assert not results[5].allowed
    assert results[6] == ReserveResult(True)
    assert results[7] is None
    assert results[8] == ReserveResult(True)  # 1 committed + 9 held = 10
    assert results[9:15] == [1, 2, CadenceResult(1, 0.0, 0.0), 1, 2, [b"1", b"2"]]
    assert results[15] == RateResult(3.0, 0.0, 0.0, 0)


async def test_empty_batch(store: Store) -> None:
    assert await store.execute([]) == []


# -- differential: the memory store is the reference ----------------------------------------------------

_BUDGETS = [Budget("site", 25, 60), Budget("user:a", 8, 30), Budget("user:b", 8, 30), Budget("day", 120, 3600)]


def _random_op(rng: random.Random, rids: list[str], n: int) -> Op:
    key = rng.choice(["a", "b"])
    kind = rng.randrange(12)
    if kind == 0:
        return Consume(f"c{rng.randrange(6)}", rng.choice([10, 30]))
    if kind == 1:
        return Hit(key, rng.choice([3, 5]), rng.choice([10, 20]), rng.choice([1, 1, 2.5]))
    if kind == 2:
        rid = f"r{n}"
        rids.append(rid)
        budgets = tuple(rng.sample(_BUDGETS, rng.randint(1, 3)))
        return Reserve(budgets, rng.choice([1, 3, 5.5]), rid, rng.choice([5, 20, 50]))
    if kind == 3:
        rid = rng.choice(rids) if rids and rng.random() < 0.9 else "unknown"
        return Commit(rid, rng.choice([0, 1, 4, 7.25]))
    if kind == 4:
        return Distinct(key, f"m{rng.randrange(8)}", rng.choice([5, 30]), cap=4)
    if kind == 5:
        return Inflight(key, rng.choice([1, 1, -1, -2]), rng.choice([5, 30]))
    if kind == 6:
        return Get(key)
    if kind == 7:
        return Put(key, rng.randbytes(rng.randrange(5)), rng.choice([5, 30]), only_new=rng.random() < 0.5)
    if kind == 8:
        return Cadence(key, span=rng.choice([3, 20]), ttl=rng.choice([10, 60]))
    if kind == 9:
        return Append(key, rng.randbytes(3), rng.choice([2, 4]), rng.choice([5, 30]))
    if kind == 10:
        return Range(key)
    return Rate(key, rng.choice([1, 2.5]), bucket=rng.choice([5, 10]), half_life=rng.choice([10, 40]))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-9)
    if hasattr(a, "__dataclass_fields__") and type(a) is type(b):
        return all(_same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return bool(a == b)


async def test_random_sequences_match_the_memory_store(store: Store, clock: FakeClock) -> None:
    rng = random.Random(20240607)
    reference = MemoryStore(clock=clock)
    rids: list[str] = []
    mismatches = []
    for n in range(1200):
        # One op per call and time always moving: ties in "oldest first" are the one
        # place where the backends may order members differently (see docs/stores.md).
        clock.advance(rng.choice([0.001, 0.05, 0.2, 0.6]) if rng.random() < 0.99 else 45.0)
        op = _random_op(rng, rids, n)
        expected = (await reference.execute([op]))[0]
        got = (await store.execute([op]))[0]
        if not _same(expected, got):
            mismatches.append((n, op, expected, got))
    assert mismatches == []


async def test_random_batches_match_the_memory_store(store: Store, clock: FakeClock) -> None:
    rng = random.Random(7)
    reference = MemoryStore(clock=clock)
    rids: list[str] = []
    for n in range(60):
        clock.advance(rng.choice([0.5, 2.0, 7.0]))
        batch = [_random_op(rng, rids, n * 100 + i) for i in range(8)]
        batch = [op for op in batch if not isinstance(op, Distinct)]  # no same-instant ties
        expected = await reference.execute(batch)
        got = await store.execute(batch)
        assert all(_same(e, g) for e, g in zip(expected, got, strict=True)), (batch, expected, got)


# -- Redis only: round trips, TTLs, bounded sizes ---------------------------------------------------------


def test_every_operation_has_a_redis_script() -> None:
    pytest.importorskip("redis")
    from tokenward.store.redis import open_redis_store

    store = open_redis_store("redis://127.0.0.1:1/0")
    missing = [op.__name__ for op in typing.get_args(Op) if not store.supports(op)]
    assert missing == []


def _redis_only(backend: Backend) -> None:
    if backend.url is None:
        pytest.skip("a property of the Redis backends")


def _ten_ops() -> list[Op]:
    return [
        Consume("rt:c", 60), Hit("rt:h", 10, 60), Reserve((Budget("rt", 10, 60),), 1, "rt:r", 30),
        Commit("rt:r", 1), Distinct("rt:d", "m", 60), Inflight("rt:i", 1, 60), Put("rt:p", b"v", 60),
        Get("rt:p"), Cadence("rt:cad"), Append("rt:l", b"x", 5, 60),
    ]  # fmt: skip


async def test_a_batch_of_ten_ops_is_one_round_trip(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    _redis_only(backend)
    from redis.asyncio.connection import AbstractConnection

    store = backend.open()
    await store.execute(_ten_ops())  # connect, load the scripts
    sends: Counter[str] = Counter()
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sends[f"{getattr(self, 'host', '?')}:{getattr(self, 'port', '?')}"] += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    before = store.stats()["pipelines"]  # type: ignore[attr-defined]
    results = await store.execute(_ten_ops())
    assert len(results) == 10
    assert store.stats()["pipelines"] - before == 1  # type: ignore[attr-defined]
    if backend.name == "redis":
        assert sum(sends.values()) == 1
    else:
        # One pipeline split by slot: at most one write per node, sent in parallel.
        assert 1 <= sum(sends.values()) <= 3
        assert max(sends.values()) == 1


def _raw_clients(request: pytest.FixtureRequest, backend: Backend) -> list[Any]:
    import redis

    server = request.getfixturevalue("redis_server" if backend.name == "redis" else "redis_cluster")
    nodes = [server] if backend.name == "redis" else server.nodes
    return [redis.Redis(host="127.0.0.1", port=n.port) for n in nodes]


async def test_every_key_has_a_ttl(backend: Backend, request: pytest.FixtureRequest) -> None:
    _redis_only(backend)
    store = backend.open(realtime=True)
    await store.execute([*_ten_ops(), Range("rt:l"), Rate("rt:rate", 1)])
    await store.execute([Reserve((Budget("rt", 10, 60), Budget("rt2", 5, 3600)), 1, "held", 30)])
    keys = 0
    for client in _raw_clients(request, backend):
        for key in client.scan_iter(match=f"{backend.prefix}*"):
            keys += 1
            ttl = client.pttl(key)
            assert 0 < ttl <= 8 * 3600 * 1000, (key, ttl)  # the longest: a rate baseline
        client.close()
    assert keys >= 12


async def test_sizes_stay_bounded_in_redis(backend: Backend, request: pytest.FixtureRequest) -> None:
    _redis_only(backend)
    store = backend.open(realtime=True)
    for i in range(0, 300, 50):
        await store.execute([Distinct("big", f"m{j}", 3600, cap=20) for j in range(i, i + 50)])
        await store.execute([Append("big", b"x" * 10, 7, 3600) for _ in range(50)])
    sizes = {}
    for client in _raw_clients(request, backend):
        for key in client.scan_iter(match=f"{backend.prefix}*"):
            kind = client.type(key)
            if kind == b"zset":
                sizes["zset"] = client.zcard(key)
            elif kind == b"list":
                sizes["list"] = client.llen(key)
        client.close()
    assert sizes == {"zset": 20, "list": 7}


async def test_stores_without_a_clock_share_redis_time(backend: Backend) -> None:
    # Two instances with no clock of their own: windows follow Redis TIME, so both see
    # one window (their own clocks could differ; the answers would not).
    _redis_only(backend)
    one, two = backend.open(realtime=True), backend.open(realtime=True)
    results = [await (one if i % 2 else two).hit("shared", limit=5, window=3600) for i in range(8)]
    assert [r.allowed for r in results] == [True] * 5 + [False] * 3
