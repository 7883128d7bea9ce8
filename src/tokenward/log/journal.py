"""The decision journal: each decision on local disk before its response starts.

Why a journal: the log writes decisions in batches off the event loop (one transaction
per batch), so a process killed outright (``kill -9``, the OOM killer) lost the batch it
had not committed yet. Measured on the 2-core test machine (``/tmp``-style local disk),
per decision on the request path:

* (a) encode the record and ``os.write`` it to a file of the process's own: ~2 µs;
* (b) one SQLite INSERT + COMMIT per decision in WAL mode: ~40 µs with
  ``synchronous=OFF`` (~60 µs with NORMAL), and it waits on every other writer's lock
  (workers and instances share the database) -- on the event loop;
* (c) "write before the response starts, commit in batches" is (a): the only write
  cheap enough to make before each response is an append to a local file.

So (a): every process appends its decisions here with ``os.write`` (unbuffered, no
fsync). Once ``write()`` returns, the bytes are in the kernel's page cache: they survive
the death of the process whatever kills it, but not a power loss or a kernel crash
(docs/operations.md, "Durability of the decision log"). After a batch commits, the
segment that held it is emptied; a process that starts (and every writer, every few
seconds) replays the journals of dead processes into the database, skipping request ids
already there, so each decision lands once.

Files, in one directory that several processes may share:

* ``OWNER.lock``: created under another name, flock()ed, then renamed, so a lock file
  that exists is locked until its owner dies (the kernel drops the lock with the process).
* ``OWNER.0`` and ``OWNER.1``: the segments. One is appended to; the other holds the
  batch being committed, and is emptied once it is.

Lines are ``P`` or ``F`` followed by the record as JSON. ``P`` (provisional) is written
just before the response starts: the decision as known then. ``F`` (final) is written
when the request ended, and supersedes the ``P`` of the same request id.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path

import orjson

from ..errors import ConfigurationError
from .base import DecisionRecord, clean

__all__ = ["RECOVERED", "DeadJournal", "Journal"]

log = logging.getLogger("tokenward.log")

_FIELDS = frozenset(f.name for f in fields(DecisionRecord))
# What a record replayed from its provisional line says: the request had started its
# response, but the process died before logging how it ended.
RECOVERED = "recovered from the journal: the gateway stopped before the request finished"
# The active segment is emptied (rotated) only once it holds this much: below it, records
# already committed stay in it, harmless (the replay skips request ids already logged),
# and the requests still streaming need not be copied to a fresh segment every batch.
_ROTATE_BYTES = 1 << 20


def _encode(rec: DecisionRecord, final: bool) -> bytes:
    kind = b"F" if final else b"P"
    try:
        return kind + orjson.dumps(rec, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # unpaired surrogates: keep the record, replace them
        return kind + orjson.dumps(clean(asdict(rec)), default=str, option=orjson.OPT_APPEND_NEWLINE)


def _decode(line: bytes) -> tuple[bool, DecisionRecord] | None:
    if len(line) < 2 or line[:1] not in (b"P", b"F"):
        return None
    try:
        data = orjson.loads(line[1:])
        rec = DecisionRecord(**{k: v for k, v in data.items() if k in _FIELDS})
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        return None  # a line cut short (power loss) or from an unknown version
    return line[:1] == b"F", rec


def _records(lines: Iterator[bytes]) -> list[DecisionRecord]:
    """One record per request id: the final one if there is one, else the provisional."""
    final: dict[str, DecisionRecord] = {}
    started: dict[str, DecisionRecord] = {}
    bad = 0
    for line in lines:
        item = _decode(line)
        if item is None:
            bad += 1
        elif item[0]:
            final[item[1].request_id] = item[1]
        else:
            started[item[1].request_id] = item[1]
    if bad:
        log.warning("decision journal: %d unreadable lines skipped", bad)
    for rid, rec in started.items():
        if rid not in final:
            rec.error = rec.error or RECOVERED
            final[rid] = rec
    return sorted(final.values(), key=lambda r: r.ts)


class DeadJournal:
    """The files of a process that died with its journal: read them, then remove them.
    Holds the dead owner's lock, so no other process replays it at the same time."""

    def __init__(self, directory: Path, owner: str, lock_fd: int):
        self.directory = directory
        self.owner = owner
        self._lock_fd = lock_fd

    def segments(self) -> list[Path]:
        return [p for p in (self.directory / f"{self.owner}.0", self.directory / f"{self.owner}.1") if p.exists()]

    def records(self) -> list[DecisionRecord]:
        def lines() -> Iterator[bytes]:
            for path in self.segments():
                with path.open("rb") as f:
                    yield from f

        return _records(lines())

    def remove(self) -> None:
        """Segments first, lock file last: a replay cut short leaves the lock file, so the
        next process finds the rest (and skips what is already in the database)."""
        for path in self.segments():
            path.unlink(missing_ok=True)
        (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class Journal:
    """This process's journal, and the queue of final records the writer has not taken.

    :meth:`add` runs on the request path (any thread); :meth:`take` and :meth:`committed`
    in the writer thread. One lock makes "appended to the segment" and "queued" one step,
    and swaps segments while the writer takes the queue, so the segment it empties after
    the commit holds nothing that was not in the batch.
    """

    def __init__(self, directory: str | Path, max_bytes: int = 64 << 20):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.pending: deque[DecisionRecord] = deque()
        self.size = 0  # bytes in the segment being appended
        self._queued = 0  # bytes of final records not taken by the writer yet
        self._inflight = 0  # bytes of the batch it took and has not committed yet
        self.write_errors = 0
        self._lock = threading.Lock()
        self._started: dict[str, bytes] = {}  # provisional lines of requests not finished yet
        self._fds: list[int] = []
        self._active = 0
        self._retired: int | None = None  # the segment to empty once the batch taken commits
        self._lock_fd = -1
        self._last_error = 0.0
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.directory / f".{self.owner}.lock.new"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(staging, self.directory / f"{self.owner}.lock")
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
            self._fds = [os.open(self.directory / f"{self.owner}.{i}", flags, 0o600) for i in (0, 1)]
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def add(self, rec: DecisionRecord, final: bool = True) -> None:
        line = _encode(rec, final)
        with self._lock:
            try:
                os.write(self._fds[self._active], line)
                self.size += len(line)
            except (OSError, IndexError) as exc:  # disk full, closed: still logged, not kill-proof
                self._write_failed(exc)
            if final:
                self._started.pop(rec.request_id, None)
                self.pending.append(rec)
                self._queued += len(line)
            else:
                self._started[rec.request_id] = line

    def take(self) -> list[DecisionRecord]:
        """Everything queued. When the segment is large, later records go to the other
        (empty) one, and the requests still running are journaled there again."""
        with self._lock:
            pending = self.pending
            batch = [pending.popleft() for _ in range(len(pending))]
            self._inflight, self._queued = self._queued, 0
            if self.size >= min(_ROTATE_BYTES, self.max_bytes // 4) and self._retired is None:
                self._retired = self._active
                self._active = 1 - self._active
                self.size = 0
                for line in self._started.values():
                    try:
                        os.write(self._fds[self._active], line)
                        self.size += len(line)
                    except OSError as exc:
                        self._write_failed(exc)
            return batch

    def committed(self) -> None:
        """The batch from the last :meth:`take` is in the database."""
        with self._lock:
            self._inflight = 0
            if self._retired is not None:
                os.ftruncate(self._fds[self._retired], 0)
                self._retired = None

    def unfinished(self) -> list[DecisionRecord]:
        """Requests whose response started but which were never logged as finished."""
        with self._lock:
            lines, self._started = list(self._started.values()), {}
        return _records(iter(lines))

    def full(self) -> bool:
        """More than ``max_bytes`` of decisions wait for the database. (The segments also
        hold the requests in progress, and up to 1 MiB of decisions already written.)"""
        return self._queued + self._inflight > self.max_bytes

    def close(self, keep: bool = False) -> None:
        """Close the files; remove them unless ``keep`` (decisions not written yet: a
        later start replays them)."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if not keep:
            for i in (0, 1):
                (self.directory / f"{self.owner}.{i}").unlink(missing_ok=True)
            (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def dead(self) -> Iterator[DeadJournal]:
        """The journals in the directory whose owner is gone (its lock is free), locked."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            owner, dot, ext = name.rpartition(".")
            if ext != "lock" or not dot or owner == self.owner or name.startswith("."):
                continue
            try:
                fd = os.open(self.directory / name, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:  # replayed and removed by another process just now
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # alive
                os.close(fd)
                continue
            if not (self.directory / name).exists():  # removed between listdir and flock
                os.close(fd)
                continue
            yield DeadJournal(self.directory, owner, fd)

    def _write_failed(self, exc: BaseException) -> None:
        self.write_errors += 1
        now = time.monotonic()
        if now - self._last_error > 10:
            self._last_error = now
            log.error(
                "decision journal %s cannot be written (%s): decisions are still logged, but a"
                " crash of this process would lose the ones not yet in the database", self.directory, exc,
            )  # fmt: skip


# Where a PostgreSQL log journals decisions unless its URI says (journal=DIR): local disk,
# relative to the working directory like the default SQLite log.
PG_JOURNAL = "./tokenward-journal.d"


def journal_dir(value: str | None, default: str | Path) -> Path | None:
    """The ``journal=`` option: a directory, ``off``, or unset (``default``)."""
    if value is None:
        return Path(default)
    if value.strip().lower() in ("off", "false", "no", "0", "none"):
        return None
    if not value.strip():
        raise ConfigurationError("decision log option journal must be a directory or off")
    return Path(value)
