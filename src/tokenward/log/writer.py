"""What the SQLite and PostgreSQL logs share: the queue, the journal, the writer thread.

The request path pays for a journal append (``os.write``, see :mod:`.journal`) and a
deque append; a thread owns the database connection and writes batches of up to
``batch`` records every ``flush_interval`` seconds (or as soon as a batch is full), one
transaction each. The subclasses say how to connect, write a batch and find the request
ids already written.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from .base import DecisionRecord
from .journal import Journal

__all__ = ["BatchedLog"]

log = logging.getLogger("tokenward.log")

# Set while the HTTP layer journals a decision just before its response starts: record()
# then journals it as provisional instead of queueing it (a ContextVar, not an attribute:
# records from other threads or tasks meanwhile are final).
_AHEAD: ContextVar[bool] = ContextVar("tokenward_log_ahead", default=False)
_SCAN_INTERVAL = 5.0  # how often a running writer looks for journals of dead processes


class BatchedLog:
    """``max_queue`` bounds memory, ``journal_max`` the journal: when the writer falls that
    far behind, :meth:`record` waits for it (the log slows the gateway down rather than
    lose a decision). ``journal`` is the journal's directory (None: no journal, a process
    killed outright loses the batch in flight). ``close_timeout`` bounds how long
    :meth:`close` keeps retrying a database that cannot be reached; what is still
    unwritten then stays in the journal (``unwritten``) or, without one, is ``lost``.
    """

    _open_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(
        self, *, batch: int = 512, flush_interval: float = 0.05, max_queue: int = 100_000,
        journal: str | Path | None = None, journal_max: int = 64 << 20, close_timeout: float = 30.0,
    ):  # fmt: skip
        self._batch = batch
        self._interval = flush_interval
        self._max_queue = max_queue
        self._close_timeout = close_timeout
        self._journal = Journal(journal, journal_max) if journal is not None else None
        # A deque, not a queue.Queue: appending is one atomic operation that wakes no
        # thread, so the request path does not hand the GIL to the writer per decision.
        self._pending: deque[DecisionRecord] = self._journal.pending if self._journal is not None else deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._give_up_at: float | None = None  # set by close(): stop retrying after this
        self._gave_up = False
        self.written = 0
        self.lost = 0  # decisions the database refused, or left unwritten with no journal
        # Called from the writer thread after each flush with (decisions it took, lost so
        # far): the gateway's metrics (docs/observability.md).
        self.observer: Callable[[int, int], None] | None = None
        self._observed = False
        self.unwritten = 0  # decisions left in the journal at close for a later start
        self.replayed = 0  # decisions of dead processes written from their journals

    # -- to subclass ---------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _write(self, conn: Any, batch: list[DecisionRecord]) -> Any:
        """Write one batch; return the connection to use next."""
        raise NotImplementedError

    def _existing(self, conn: Any, request_ids: list[str]) -> tuple[Any, set[str]]:
        """Which of these request ids the database has (the connection to use next, them)."""
        raise NotImplementedError

    def _disconnect(self, conn: Any) -> None:
        if conn is not None:
            conn.close()

    def _name(self) -> str:
        raise NotImplementedError

    # -- the request path -------------------------------------------------------------------
    @property
    def journaled(self) -> bool:
        return self._journal is not None

    @contextmanager
    def ahead(self) -> Iterator[None]:
        """:meth:`record` calls inside journal the decision as it stands just before its
        response starts; the record made after the request ended supersedes it."""
        token = _AHEAD.set(True)
        try:
            yield
        finally:
            _AHEAD.reset(token)

    def record(self, rec: DecisionRecord) -> None:
        journal = self._journal
        if _AHEAD.get():
            if journal is not None:
                journal.add(rec, final=False)
            return
        pending = self._pending
        if journal is not None:
            journal.add(rec)
        else:
            pending.append(rec)
        if len(pending) >= self._batch:
            self._wake.set()
        if len(pending) > self._max_queue or (journal is not None and journal.full()):
            self._backpressure()

    def _backpressure(self) -> None:
        log.warning("decision log writer is behind; applying backpressure")
        journal = self._journal
        while (
            self._thread is not None and self._thread.is_alive()
            and (len(self._pending) > self._max_queue // 2 or (journal is not None and journal.full()))
        ):  # fmt: skip
            self._wake.set()
            time.sleep(0.005)

    # -- start and stop -----------------------------------------------------------------------
    async def start(self) -> None:
        """Open the database and the journal, and write what dead processes journaled."""
        if self._thread is not None:
            return
        self._stopping = False
        self._error = None
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="tokenward-log", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._error is not None:
            self._thread = None
            raise RuntimeError(f"cannot open decision log {self._name()}: {self._error}")

    async def close(self) -> None:
        """Write everything queued, then release the database and the journal."""
        if self._thread is None:
            return
        self._give_up_at = time.monotonic() + self._close_timeout
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = self._connect()
            if self._journal is not None:
                self._journal.open()
        except self._open_errors as exc:
            self._error = exc
            self._ready.set()
            return
        conn = self._replay(conn)
        self._ready.set()
        next_scan = time.monotonic() + _SCAN_INTERVAL
        while True:
            # Wake every flush_interval (or when a batch is full, or to stop), then write
            # what is pending in batches: one transaction per batch, not per decision.
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stopping
            conn = self._flush(conn)
            if stopping:
                if self._journal is not None:  # answered, but never logged as finished
                    self._pending.extend(self._journal.unfinished())
                while self._pending:
                    conn = self._flush(conn)
                break
            if time.monotonic() >= next_scan:
                conn = self._replay(conn)
                next_scan = time.monotonic() + _SCAN_INTERVAL
        self._disconnect(conn)
        if self._journal is not None:
            self._journal.close(keep=self._gave_up)

    def _flush(self, conn: Any) -> Any:
        journal = self._journal
        if journal is not None:
            batch = journal.take()
        else:
            pending = self._pending
            batch = [pending.popleft() for _ in range(len(pending))]
        for start in range(0, len(batch), self._batch):
            try:
                conn = self._write(conn, batch[start : start + self._batch])
            except Exception:  # the writer must outlive any one bad batch
                log.exception("decision log writer error")
        if journal is not None and not self._gave_up:
            journal.committed()
        observer = self.observer
        if observer is not None and (batch or self._observed):  # then once more at 0
            self._observed = bool(batch)
            try:
                observer(len(batch), self.lost)
            except Exception:  # metrics must never stop the writer
                log.exception("decision log observer error")
        return conn

    def _replay(self, conn: Any) -> Any:
        """Write what the journals of dead processes hold and the database lacks (a
        process killed after a commit, before emptying its segment, journaled some
        decisions that are already written: they are skipped)."""
        journal = self._journal
        if journal is None:
            return conn
        for dead in journal.dead():
            if self._gave_up:
                dead.release()
                break
            written = 0
            try:
                records = dead.records()
                for start in range(0, len(records), self._batch):
                    chunk = records[start : start + self._batch]
                    conn, have = self._existing(conn, [r.request_id for r in chunk])
                    todo = [r for r in chunk if r.request_id not in have]
                    if todo:
                        conn = self._write(conn, todo)
                        written += len(todo)
                    if self._gave_up:
                        break
            except Exception as exc:  # the database is down, say: try again at the next scan
                log.warning("decision log: cannot replay the journal of %s yet: %s", dead.owner, exc)
                dead.release()
                continue
            if self._gave_up:
                dead.release()
                break
            dead.remove()
            self.replayed += written
            if written:
                log.warning(
                    "decision log: %d decisions journaled by %s, which stopped before writing them, written from %s",
                    written, dead.owner, journal.directory,
                )  # fmt: skip
        return conn
