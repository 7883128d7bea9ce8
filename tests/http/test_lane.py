"""The refusal lane (http/lane.py): refusals are made in order, a slice per loop turn, so
that other ready work keeps moving under a flood of them (bench/flood.py measures it)."""

from __future__ import annotations

import asyncio
import time

import pytest

import tokenward.http.lane as lane_module
from tokenward.http.lane import Lane


def busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def test_results_come_back_in_order_and_errors_to_their_caller() -> None:
    lane = Lane()
    made: list[int] = []

    def make(i: int) -> int:
        made.append(i)
        if i == 3:
            raise ValueError("three")
        return i * 10

    tasks = [asyncio.ensure_future(lane.run(lambda i=i: make(i))) for i in range(6)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert made == list(range(6))
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError) and results[4:] == [40, 50]
    assert len(lane) == 0


async def test_other_ready_work_runs_between_slices() -> None:
    """Twenty refusals of 1 ms each (five slices each): a task that needs five loop turns
    finishes after about five of them, not after all twenty."""
    lane = Lane()
    refusals, steps = 20, 5
    done_at: list[float] = []

    async def proved_request() -> float:
        for _ in range(steps):
            await asyncio.sleep(0)  # one step per turn, as a request's awaits are
        return time.perf_counter()

    tasks = [asyncio.ensure_future(lane.run(lambda: (busy(0.001), done_at.append(time.perf_counter()))))
             for _ in range(refusals)]  # fmt: skip
    other = asyncio.ensure_future(proved_request())
    finished = await other
    await asyncio.gather(*tasks)
    made_before = sum(1 for t in done_at if t < finished)
    assert made_before <= steps + 1, made_before  # about one refusal per turn of the other task
    # Without the lane (made where they stand) the other task would wait for all twenty.


async def test_a_cancelled_requests_refusal_is_still_made_so_logged() -> None:
    lane = Lane()
    made: list[int] = []
    first = asyncio.ensure_future(lane.run(lambda: made.append(1)))
    second = asyncio.ensure_future(lane.run(lambda: made.append(2)))
    await asyncio.sleep(0)  # both are waiting
    second.cancel()
    await first
    for _ in range(3):
        await asyncio.sleep(0)
    assert made == [1, 2] and second.cancelled()


async def test_beyond_max_waiting_the_refusal_is_made_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lane_module, "MAX_WAITING", 2)
    lane = Lane()
    made: list[str] = []
    queued = [asyncio.ensure_future(lane.run(lambda i=i: made.append(f"queued {i}"))) for i in range(2)]
    await asyncio.sleep(0)
    assert len(lane) in (1, 2)
    assert await lane.run(lambda: made.append("at once") or "now") == "now"
    await asyncio.gather(*queued)
    assert "at once" in made and len(lane) == 0


def test_each_event_loop_gets_its_own_lane() -> None:
    lane = Lane()
    assert asyncio.run(lane.run(lambda: 1)) == 1
    assert asyncio.run(lane.run(lambda: 2)) == 2  # a second loop: no task of the first is awaited
