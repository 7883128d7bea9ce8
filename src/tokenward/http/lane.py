"""The refusal lane: refusals are made after everything else that is ready has run.

One event loop serves every request, and it runs what is ready in arrival order. Under
a flood of requests without a proof, each step of a proved request (its start, its
store batch, its upstream response...) waited behind every refusal queued before it:
with 256 flood connections, 140 ms added to a proved call's p99 (bench/flood.py). So
the refusals themselves (mint a challenge, fill the template, log the decision) are
made by one task, for at most ``SLICE`` seconds per turn of the loop (two or three
refusals): at each turn whatever else is ready runs too, and a proved request waits
behind one slice of refusals at each of its steps, not behind all of them. (One refusal
per turn cost a whole loop turn each, 50 µs of CPU on top of a 225 µs refusal.)

(Parking such requests before they are even read, and letting one in per turn, was
measured too: worse, +88 ms instead of +71 ms at 256 flood connections; reading and
sending are cheap, making the refusal is what must wait.)

A refusal whose request is cancelled while it waits is still made, so still logged,
like every refusal (its answer goes nowhere). At most ``MAX_WAITING`` refusals wait;
beyond that (many thousands of connections) a refusal is made where it stands, as
without the lane: memory stays bounded, and nobody waits behind an unbounded queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MAX_WAITING", "SLICE", "Lane"]

T = TypeVar("T")
MAX_WAITING = 4096
SLICE = 0.0002  # seconds of refusals per loop turn


class Lane:
    """Runs callables one per loop turn, in order, on the running event loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = deque()
        self._worker: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    async def run(self, make: Callable[[], T]) -> T:
        """``make()``, once everything that was ready before it has run."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # tests run several loops; a new one starts a new lane
            self._loop, self._waiting, self._worker = loop, deque(), None
        if len(self._waiting) >= MAX_WAITING:
            return make()
        made: asyncio.Future[T] = loop.create_future()
        self._waiting.append((make, made))
        if self._worker is None:
            self._worker = loop.create_task(self._drain(self._waiting))
        return await made

    async def _drain(self, waiting: deque[tuple[Callable[[], Any], asyncio.Future[Any]]]) -> None:
        clock = time.perf_counter
        try:
            while waiting:
                until = clock() + SLICE
                while waiting and clock() < until:
                    make, made = waiting.popleft()
                    try:
                        result = make()  # made (and logged) even if its request was cancelled meanwhile
                    except Exception as exc:  # raised in the request's own task
                        if not made.done():
                            made.set_exception(exc)
                    else:
                        if not made.done():
                            made.set_result(result)
                await asyncio.sleep(0)  # what else is ready runs now
        finally:
            if waiting is self._waiting:
                self._worker = None
