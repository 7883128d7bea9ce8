"""SQLite decision log: WAL, one writer thread, batched inserts, drained on close.

A thread (not the event loop) owns the connection: sqlite3 calls block, and the request
path must only pay for a journal append and a queue put (:mod:`.writer`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigurationError
from .base import DecisionRecord, clean
from .writer import BatchedLog

__all__ = ["COLUMNS", "SQLiteLog", "read_recent"]

log = logging.getLogger("tokenward.log")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    route TEXT,
    client_ip TEXT NOT NULL,
    action TEXT NOT NULL,
    name TEXT NOT NULL,
    code TEXT,
    shadow_action TEXT,
    reasons TEXT NOT NULL,
    signals TEXT NOT NULL,
    proof TEXT,
    status INTEGER NOT NULL,
    decision_ms REAL NOT NULL,
    total_ms REAL NOT NULL,
    upstream_status INTEGER,
    error TEXT,
    risk TEXT,
    model TEXT,
    tokens_in INTEGER,
    tokens_out INTEGER,
    usage_exact INTEGER,
    cost_usd REAL,
    reserved_usd REAL,
    held_usd REAL,
    account TEXT
);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts);
CREATE INDEX IF NOT EXISTS decisions_request_id ON decisions (request_id);
"""

COLUMNS = (
    "ts", "request_id", "method", "path", "route", "client_ip", "action", "name", "code",
    "shadow_action", "reasons", "signals", "proof", "status", "decision_ms", "total_ms",
    "upstream_status", "error", "risk", "model", "tokens_in", "tokens_out", "usage_exact", "cost_usd",
    "reserved_usd", "held_usd", "account",
)  # fmt: skip
_JSON_COLUMNS = {"reasons", "signals", "proof", "risk"}
# Each column's type, as the schema above declares it (an older log gains missing columns
# with their own type, so that numbers read back as numbers).
_TYPES = {
    line.split()[0]: line.split()[1].rstrip(",")
    for line in _SCHEMA.split("(", 1)[1].split(");", 1)[0].strip().splitlines()
    if line.split()[0] in COLUMNS
}
_INSERT = f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _cleaned(rec: DecisionRecord) -> DecisionRecord:
    """The record with what SQLite cannot store (unpaired surrogates) replaced: kept, not lost."""
    return DecisionRecord(**clean(asdict(rec)))


def _row(rec: DecisionRecord) -> tuple[Any, ...]:
    try:
        return _encode(rec)
    except orjson.JSONEncodeError:
        return _encode(_cleaned(rec))


def _encode(rec: DecisionRecord) -> tuple[Any, ...]:
    return (
        rec.ts, rec.request_id, rec.method, rec.path, rec.route, rec.client_ip, rec.action,
        rec.name, rec.code, rec.shadow_action, orjson.dumps(rec.reasons).decode(),
        orjson.dumps(rec.signals, default=str).decode(),
        None if rec.proof is None else orjson.dumps(rec.proof, default=str).decode(),
        rec.status, rec.decision_ms, rec.total_ms, rec.upstream_status, rec.error,
        None if rec.risk is None else orjson.dumps(rec.risk, default=str).decode(),
        rec.model, rec.tokens_in, rec.tokens_out, rec.usage_exact, rec.cost_usd, rec.reserved_usd,
        rec.held_usd, rec.account,
    )  # fmt: skip


def sqlite_path(uri: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's form)."""
    if not uri.startswith("sqlite:///"):
        raise ConfigurationError(f"not a sqlite URI: {uri!r} (expected sqlite:///PATH)")
    return Path(uri[len("sqlite:///") :])


class SQLiteLog(BatchedLog):
    """Decisions from the event loop, inserted in batches by a writer thread
    (:class:`~tokenward.log.writer.BatchedLog`), journaled first when ``journal`` is set."""

    _open_errors = (sqlite3.Error, OSError)

    def __init__(
        self, path: str | Path, *, batch: int = 512, flush_interval: float = 0.05,
        max_queue: int = 100_000, journal: str | Path | None = None, journal_max: int = 64 << 20,
    ):  # fmt: skip
        super().__init__(
            batch=batch, flush_interval=flush_interval, max_queue=max_queue,
            journal=journal, journal_max=journal_max,
        )  # fmt: skip
        self.path = Path(path)

    def _name(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        # Logs written by an older version lack newer columns: add them (all nullable).
        present = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
        for column in COLUMNS:
            if column not in present:
                conn.execute(f"ALTER TABLE decisions ADD COLUMN {column} {_TYPES.get(column, 'TEXT')}")
        return conn

    def _write(self, conn: sqlite3.Connection, batch: list[DecisionRecord]) -> sqlite3.Connection:
        for attempt in range(5):
            try:
                try:
                    with conn:
                        conn.executemany(_INSERT, [_row(r) for r in batch])
                except UnicodeEncodeError:  # a text field SQLite cannot encode: write them cleaned
                    with conn:
                        conn.executemany(_INSERT, [_row(_cleaned(r)) for r in batch])
                self.written += len(batch)
                return conn
            except sqlite3.OperationalError as exc:  # e.g. locked by a reader: retry
                log.warning("decision log write failed (%s), retry %d", exc, attempt + 1)
                time.sleep(0.05 * (attempt + 1))
            except (sqlite3.Error, TypeError, ValueError):
                break  # a bad record: fall back to one by one so the others still land
        for rec in batch:
            try:
                with conn:
                    conn.execute(_INSERT, _row(rec))
                self.written += 1
            except (sqlite3.Error, TypeError, ValueError) as exc:
                self.lost += 1
                log.error("decision log: cannot write decision %s: %s", rec.request_id, exc)
        return conn

    def _existing(self, conn: sqlite3.Connection, request_ids: list[str]) -> tuple[sqlite3.Connection, set[str]]:
        found: set[str] = set()
        for start in range(0, len(request_ids), 500):  # under SQLite's bound on parameters
            part = request_ids[start : start + 500]
            sql = f"SELECT request_id FROM decisions WHERE request_id IN ({', '.join('?' * len(part))})"
            found.update(row[0] for row in conn.execute(sql, part))
        return conn, found


def sqlite_runner(path: str | Path) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
    """A read-only query function over a SQLite decision log (for log/queries.py)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no decision log at {p}")

    def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return conn.execute(sql, list(params)).fetchall()
        finally:
            conn.close()

    return run


def read_recent(path: str | Path, limit: int = 20) -> Iterator[dict[str, Any]]:
    """Most recent decisions first, JSON columns decoded (for ``tokenward log tail``)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no decision log at {p}")
    conn = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM decisions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    finally:
        conn.close()
    for row in rows:
        item = dict(row)
        for col in _JSON_COLUMNS:
            if item[col] is not None:
                item[col] = orjson.loads(item[col])
        if item["usage_exact"] is not None:  # SQLite keeps booleans as 0/1
            item["usage_exact"] = bool(item["usage_exact"])
        yield item
