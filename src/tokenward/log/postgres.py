"""PostgreSQL decision log: one writer thread, batched COPY, drained on close.

It behaves like :class:`~tokenward.log.sqlite.SQLiteLog` (both are
:class:`~tokenward.log.writer.BatchedLog`): :meth:`PostgresLog.record` is a journal append
and a queue put on the request path; a thread owns the connection and writes batches with
``COPY``, one transaction each; :meth:`PostgresLog.close` writes everything queued. When
PostgreSQL is unreachable the writer keeps the batch and retries with backoff, so a
restart or failover loses nothing; meanwhile the queue and the journal fill and
:meth:`record` waits (backpressure) rather than drop a decision. At close, what it still
cannot write after ``close_timeout`` stays in the journal for the next start. Delivery is
at least once: a batch whose commit reply was lost is written again.

The table has the same columns as the SQLite log (JSON columns are ``jsonb``); its column
types follow :class:`~tokenward.log.base.DecisionRecord`, and columns added to the record
later are added to an existing table on start (nullable), as the SQLite log does.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from ..errors import ConfigurationError

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import dict_row
except ImportError as exc:  # pragma: no cover - depends on the environment
    from .._extras import MissingExtra

    if exc.name is None or exc.name.split(".")[0] != "psycopg":
        raise
    raise MissingExtra(["psycopg"], "postgres", "the PostgreSQL decision log (log: postgresql://...)") from exc

from .base import DecisionRecord
from .base import clean as clean_value
from .journal import PG_JOURNAL, journal_dir
from .sqlite import COLUMNS
from .writer import BatchedLog

__all__ = ["PostgresLog", "init_schema", "mask_dsn", "open_postgres_log", "read_recent", "split_uri"]

log = logging.getLogger("tokenward.log")

_TABLE = "decisions"
_LOCK_ID = 0x746F6B656E77  # "tokenw": serializes schema changes between gateways starting together


def _pg_type(annotation: str) -> tuple[str, bool]:
    """A :class:`DecisionRecord` field annotation -> (PostgreSQL type, nullable)."""
    parts = [p.strip() for p in annotation.split("|")]
    nullable = "None" in parts
    base = next(p for p in parts if p != "None")
    if base.startswith(("list", "dict")):
        return "jsonb", nullable
    types = {"float": "double precision", "int": "bigint", "str": "text", "bool": "boolean"}
    if base not in types:
        raise TypeError(f"DecisionRecord field type {annotation!r} has no PostgreSQL column type")
    return types[base], nullable


_FIELDS = {f.name: f for f in dataclasses.fields(DecisionRecord)}
_TYPES = {name: _pg_type(str(_FIELDS[name].type)) for name in COLUMNS}
_JSON = frozenset(name for name, (kind, _) in _TYPES.items() if kind == "jsonb")

_CREATE = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {columns})"
).format(
    table=sql.Identifier(_TABLE),
    columns=sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(sql.Identifier(name), sql.SQL(kind), sql.SQL("" if nullable else " NOT NULL"))
        for name, (kind, nullable) in _TYPES.items()
    ),
)
_INDEXES = [
    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
        sql.Identifier(f"{_TABLE}_{col}"), sql.Identifier(_TABLE), sql.Identifier(col)
    )
    for col in ("ts", "request_id")
]
_COPY = sql.SQL("COPY {} ({}) FROM STDIN").format(
    sql.Identifier(_TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)
_INSERT = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
    sql.Identifier(_TABLE),
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
)
_SELECT = sql.SQL("SELECT {} FROM {} ORDER BY id DESC LIMIT %s").format(
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.Identifier(_TABLE)
)


def _row(rec: DecisionRecord, clean: bool = False) -> tuple[Any, ...]:
    values = []
    for name in COLUMNS:
        value = getattr(rec, name)
        if clean:
            value = clean_value(value)  # only for a record that failed as it was
        if name in _JSON and value is not None:
            value = orjson.dumps(value, default=str).decode()
        values.append(value)
    return tuple(values)


def _connect(dsn: str) -> psycopg.Connection[Any]:
    params = conninfo_to_dict(dsn)
    extra: dict[str, Any] = {}
    if "connect_timeout" not in params:
        extra["connect_timeout"] = 5
    if "application_name" not in params:
        extra["application_name"] = "tokenward-log"
    return psycopg.connect(dsn, autocommit=True, **extra)


def _ensure_schema(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(_CREATE)
        present = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s",
                (_TABLE,),
            )
        }
        for name in COLUMNS:
            if name not in present:  # a log created by an older version
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        sql.Identifier(_TABLE), sql.Identifier(name), sql.SQL(_TYPES[name][0])
                    )
                )
        for statement in _INDEXES:
            conn.execute(statement)


def init_schema(uri: str) -> None:
    """Create (or bring up to date) the decision table and its indexes: ``tokenward db init``.
    ``uri`` is the log's URI (its tokenward options are ignored) or a plain DSN."""
    with _connect(_dsn(uri)) as conn:
        _ensure_schema(conn)


class PostgresLog(BatchedLog):
    """Decisions from the event loop, COPYed in batches by a writer thread.

    ``batch``, ``flush_interval``, ``max_queue``, ``journal`` and ``journal_max`` mean
    what they mean for the SQLite log. ``close_timeout`` bounds how long :meth:`close`
    keeps retrying when PostgreSQL is unreachable at shutdown; records still unwritten
    then stay in the journal (``unwritten``) or, without a journal, are counted in
    ``lost``; either way the gateway's log says so.
    """

    _open_errors = (psycopg.Error, OSError)

    def __init__(
        self, dsn: str, *, batch: int = 512, flush_interval: float = 0.05, max_queue: int = 100_000,
        close_timeout: float = 30.0, journal: str | Path | None = None, journal_max: int = 64 << 20,
    ):  # fmt: skip
        super().__init__(
            batch=batch, flush_interval=flush_interval, max_queue=max_queue, journal=journal,
            journal_max=journal_max, close_timeout=close_timeout,
        )  # fmt: skip
        self.dsn = dsn

    def __repr__(self) -> str:
        return f"PostgresLog({mask_dsn(self.dsn)})"

    def _name(self) -> str:
        return mask_dsn(self.dsn)

    # -- the writer thread ------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        conn = _connect(self.dsn)
        try:
            _ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _existing(self, conn: _Conn, request_ids: list[str]) -> tuple[_Conn, set[str]]:
        try:
            conn = self._usable(conn)
            rows = conn.execute(
                sql.SQL("SELECT request_id FROM {} WHERE request_id = ANY(%s)").format(sql.Identifier(_TABLE)),
                (request_ids,),
            ).fetchall()
        except _SERVER_ERRORS:
            _close(conn)
            raise
        return conn, {row[0] for row in rows}

    def _write(self, conn: _Conn, batch: list[DecisionRecord]) -> _Conn:
        """Write one batch with COPY; on a bad record, one by one. Returns the connection
        to keep using (None after giving up at shutdown)."""
        attempt = 0
        while True:
            try:
                conn = self._usable(conn)
                rows = [_row(r) for r in batch]
                with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY) as copy:
                    for row in rows:
                        copy.write_row(row)
                self.written += len(batch)
                return conn
            except _DATA_ERRORS:
                break  # a record PostgreSQL refuses: find it, so the others still land
            except _SERVER_ERRORS as exc:
                # Unreachable, restarted, failed over, terminated, table dropped, grants
                # changed: keep the batch and retry on a new connection (which runs the
                # schema again).
                conn = _close(conn)
                if not self._wait_to_retry(attempt, exc, len(batch)):
                    return None
                attempt += 1
        done, attempt = 0, 0
        while done < len(batch):
            try:
                conn = self._usable(conn)
                self._insert_one(conn, batch[done])
                done += 1
            except _SERVER_ERRORS as exc:
                conn = _close(conn)
                if not self._wait_to_retry(attempt, exc, len(batch) - done):
                    return None
                attempt += 1
        return conn

    def _usable(self, conn: _Conn) -> psycopg.Connection[Any]:
        if conn is not None and not conn.closed:
            return conn
        conn = _connect(self.dsn)
        try:
            _ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _insert_one(self, conn: psycopg.Connection[Any], rec: DecisionRecord) -> None:
        try:
            conn.execute(_INSERT, _row(rec))
        except _DATA_ERRORS:
            try:
                conn.execute(_INSERT, _row(rec, clean=True))
            except _DATA_ERRORS as exc:
                self.lost += 1
                log.error("decision log: cannot write decision %s: %s", rec.request_id, exc)
                return
            log.warning("decision log: decision %s stored with unstorable characters replaced", rec.request_id)
        self.written += 1

    def _wait_to_retry(self, attempt: int, exc: BaseException, pending: int) -> bool:
        if self._give_up_at is not None and time.monotonic() > self._give_up_at:
            self._gave_up = True
            if self._journal is not None:
                self.unwritten += pending
                log.error(
                    "decision log: PostgreSQL unreachable at shutdown, %d decisions left in the journal %s"
                    " (the next start writes them): %s", pending, self._journal.directory, exc,
                )  # fmt: skip
            else:
                self.lost += pending
                log.error("decision log: PostgreSQL unreachable at shutdown, %d decisions lost: %s", pending, exc)
            return False
        pause = min(5.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)
        log.warning("decision log write failed (%s); retrying in %.2fs", exc, pause)
        time.sleep(pause)
        return True


_Conn: TypeAlias = psycopg.Connection[Any] | None  # None: to be reopened
# A record PostgreSQL cannot take as it is (NUL characters, unpaired surrogates, a value
# of the wrong type). Any other error is the server's or the connection's: retried.
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, TypeError, ValueError)
_SERVER_ERRORS = (psycopg.Error, OSError)


def _close(conn: _Conn) -> _Conn:
    """Close a broken connection -> None, the connection to use next (a new one)."""
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:  # pragma: no cover - closing a broken connection
            pass
    return None


def read_recent(uri: str, limit: int = 20) -> Iterator[dict[str, Any]]:
    """Most recent decisions first, JSON columns decoded: the same dicts as
    :func:`tokenward.log.sqlite.read_recent` (for ``tokenward log tail``). ``uri`` is the
    log's URI or a plain DSN. Raises FileNotFoundError when there is no decision table,
    ConnectionError when the server cannot be reached."""
    dsn = _dsn(uri)
    try:
        conn = _connect(dsn)
    except psycopg.OperationalError as exc:
        raise ConnectionError(f"cannot reach the decision log {mask_dsn(dsn)}: {exc}") from None
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            try:
                rows = cur.execute(_SELECT, (limit,)).fetchall()
            except psycopg.errors.UndefinedTable:
                raise FileNotFoundError(f"no decision log table in {mask_dsn(dsn)}") from None
    finally:
        conn.close()
    yield from rows


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "batch": int, "flush_interval": float, "max_queue": int, "close_timeout": float, "journal": str,
    "journal_max": int,
}  # fmt: skip


def open_postgres_log(uri: str) -> PostgresLog:
    """``postgresql://[user[:password]@]host[:port]/db[?batch=512&flush_interval=0.05&max_queue=100000&close_timeout=30]``.

    ``journal=DIR`` is where decisions are journaled before they are written (default
    ``./tokenward-journal.d``; ``journal=off``: none), ``journal_max=BYTES`` its cap.
    ``postgres://`` works too. Every other query parameter (``sslmode``,
    ``application_name``, ``options``...) is passed to libpq as it is.
    """
    dsn, options = split_uri(uri)
    options["journal"] = journal_dir(options.get("journal"), PG_JOURNAL)
    return PostgresLog(dsn, **options)


def split_uri(uri: str) -> tuple[str, dict[str, Any]]:
    """A log URI -> (the libpq DSN, tokenward's own options taken out of its query)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a PostgreSQL URI: {mask_dsn(uri)!r} (expected postgresql://...)")
    options: dict[str, Any] = {}
    rest = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OPTIONS:
            try:
                options[name] = _OPTIONS[name](value)
            except ValueError:
                raise ConfigurationError(f"decision log option {name} has an unusable value {value!r}") from None
            if name != "journal" and not 0 < options[name] < float("inf"):
                raise ConfigurationError(f"decision log option {name} must be a positive finite number, got {value!r}")
        else:
            rest.append((name, value))
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"invalid PostgreSQL URI {mask_dsn(uri)!r}: {exc}") from None
    return dsn, options


def _dsn(uri: str) -> str:
    return split_uri(uri)[0] if uri.startswith(("postgresql:", "postgres:")) else uri


_PASSWORD_IN_URI = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD_IN_URI.sub(r"\1***@", dsn))


def postgres_runner(uri: str) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
    """A query function over a PostgreSQL decision log (for log/queries.py, whose SQL
    writes its placeholders as ``?``)."""
    dsn = _dsn(uri)

    def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            conn = _connect(dsn)
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot reach the decision log {mask_dsn(dsn)}: {exc}") from None
        try:
            with conn.cursor() as cur:
                try:
                    return cur.execute(sql.replace("?", "%s"), list(params)).fetchall()  # type: ignore[arg-type]
                except psycopg.errors.UndefinedTable:
                    raise FileNotFoundError(f"no decision log table in {mask_dsn(dsn)}") from None
        finally:
            conn.close()

    return run
