"""Policy changes without a restart: the policy file is polled and re-read when it changes.

Polling (one ``stat`` a second) rather than inotify or SIGHUP: it works the same in every
server worker process and on every filesystem, including a ConfigMap that is replaced by
a symlink swap. A file that no longer validates is reported and ignored: the gateway
keeps enforcing the last good policy rather than falling back to anything weaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from .policy import PolicyError

__all__ = ["PolicyWatcher"]

T = TypeVar("T")

log = logging.getLogger("tokenward.policy")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class PolicyWatcher(Generic[T]):
    """``load`` (blocking: it runs in a worker thread) reads and prepares the policy;
    ``apply`` (on the event loop) puts it in force."""

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], T],
        apply: Callable[[T], None],
        interval: float = 1.0,
    ):
        self.path = path
        self._load = load
        self._apply = apply
        self._interval = interval
        self._stamp = _stamp(path)
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    async def check(self) -> bool:
        """Re-read the file if it changed; True when a new policy was applied."""
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            loaded = await asyncio.to_thread(self._load, self.path)
        except PolicyError as exc:
            log.error("policy change ignored, still enforcing the previous policy: %s", exc)
            return False
        self._apply(loaded)
        self.reloads += 1
        log.warning("policy reloaded from %s", self.path)
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:  # never let a bad edit kill the watcher
                log.exception("policy watcher error")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tokenward-policy-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
