"""Policy changes without a restart: the policy file, and the key files it names, are
polled and the policy is re-read when any of them changes.

Polling (one ``stat`` per file a second) rather than inotify or SIGHUP: it works the
same in every server worker process and on every filesystem, including a ConfigMap that
is replaced by a symlink swap. A file that no longer validates is reported and ignored:
the gateway keeps enforcing the last good policy rather than falling back to anything
weaker.

The key files (``clients.keys_file``, ``proof.keys_file``) are watched too, so that
``tokenward keys revoke --keys-file`` or a rotated signing key takes effect within a
couple of seconds without a policy edit: a change of any of them re-reads the policy,
which re-reads what it points at (evidence.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from .policy import Policy, PolicyError, load_policy

__all__ = ["PolicyWatcher", "key_files"]

T = TypeVar("T")

log = logging.getLogger("tokenward.policy")

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def key_files(loaded: Any) -> tuple[Path, ...]:
    """The key files a loaded policy names: ``loaded`` is a Policy or a tuple that
    starts with one (as ``(policy, evidence)``); anything else names none."""
    policy = loaded[0] if isinstance(loaded, tuple) and loaded else loaded
    if not isinstance(policy, Policy):
        return ()
    named = (policy.proof.keys_file, policy.clients.keys_file)
    return tuple(dict.fromkeys(Path(p) for p in named if p is not None))


class PolicyWatcher(Generic[T]):
    """``load`` (blocking: it runs in a worker thread) reads and prepares the policy;
    ``apply`` (on the event loop) puts it in force. ``files`` says which other files a
    loaded policy depends on (default: its key files); until the watcher has loaded one
    itself, they are read from the policy file as it is at start."""

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], T],
        apply: Callable[[T], None],
        interval: float = 1.0,
        files: Callable[[T], Iterable[Path]] = key_files,
    ):
        self.path = path
        self._load = load
        self._apply = apply
        self._interval = interval
        self._files = files
        self._stamp = _stamp(path)
        self._deps: dict[Path, _Stamp] = {p: _stamp(p) for p in self._initial_files(path)}
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    @staticmethod
    def _initial_files(path: Path) -> tuple[Path, ...]:
        try:
            return key_files(load_policy(path))
        except Exception:  # an unreadable policy names no files; its next good version will
            return ()

    def _changed(self) -> list[Path]:
        changed = []
        stamp = _stamp(self.path)
        if stamp is not None and stamp != self._stamp:  # a policy file mid-swap is not a change
            changed.append(self.path)
        changed += [p for p, old in self._deps.items() if _stamp(p) != old]
        return changed

    async def check(self) -> bool:
        """Re-read the policy if it or a file it names changed; True when a new policy
        was applied."""
        changed = self._changed()
        if not changed:
            return False
        # Stamps taken before reading, so a change made while loading is seen next time.
        self._stamp = _stamp(self.path) or self._stamp
        self._deps = {p: _stamp(p) for p in self._deps}
        what = ", ".join(str(p) for p in changed)
        try:
            loaded = await asyncio.to_thread(self._load, self.path)
        except PolicyError as exc:
            log.error("change of %s ignored, still enforcing the previous policy: %s", what, exc)
            return False
        new_deps = tuple(self._files(loaded))
        self._deps = {p: self._deps[p] if p in self._deps else _stamp(p) for p in new_deps}
        self._apply(loaded)
        self.reloads += 1
        log.warning("policy reloaded from %s (changed: %s)", self.path, what)
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
