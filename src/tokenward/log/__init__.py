"""Decision logs, chosen by URI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..errors import ConfigurationError
from .base import DecisionLog, DecisionRecord
from .journal import journal_dir
from .sqlite import COLUMNS, SQLiteLog, read_recent, sqlite_path, sqlite_runner

__all__ = ["DecisionLog", "DecisionRecord", "SQLiteLog", "find", "open_log", "read_recent", "recent", "runner"]


_SQLITE_OPTIONS = {"batch": int, "flush_interval": float, "max_queue": int, "journal": str, "journal_max": int}


def recent(uri: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest decisions of the log at ``uri`` (SQLite or PostgreSQL), newest first."""
    if uri.startswith(("postgresql:", "postgres:")):
        from .postgres import read_recent as pg_recent

        return list(pg_recent(uri, limit))
    return list(read_recent(sqlite_path(uri.partition("?")[0]), limit))


def find(uri: str, request_id: str) -> dict[str, Any] | None:
    """The decision whose request id is (or starts with) ``request_id``, the latest if
    several match; as :func:`recent` returns it. None when there is none."""
    prefix = request_id.strip()
    if not prefix or not all(c in "0123456789abcdef" for c in prefix):
        return None  # request ids are hex: anything else matches nothing (and LIKE sees no wildcard)
    sql = f"SELECT {', '.join(COLUMNS)} FROM decisions WHERE request_id LIKE ? ORDER BY ts DESC LIMIT 1"
    rows = runner(uri)(sql, [prefix + "%"])
    if not rows:
        return None
    item = dict(zip(COLUMNS, rows[0], strict=True))
    for col in ("reasons", "signals", "proof", "risk"):
        if isinstance(item[col], str):
            item[col] = orjson.loads(item[col])
    if item["usage_exact"] is not None:
        item["usage_exact"] = bool(item["usage_exact"])
    return item


def runner(uri: str) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
    """A read-only query function over the log at ``uri`` (for log/queries.py)."""
    if uri.startswith(("postgresql:", "postgres:")):
        from .postgres import postgres_runner

        return postgres_runner(uri)
    return sqlite_runner(sqlite_path(uri.partition("?")[0]))


def open_log(uri: str) -> DecisionLog:
    """``sqlite:///PATH[?batch=512&flush_interval=0.05&max_queue=100000&journal=DIR&journal_max=BYTES]``.

    The journal (docs/operations.md, "Durability of the decision log") is ``PATH.journal.d``
    beside the database unless ``journal=DIR`` (or ``journal=off``) says otherwise.
    """
    if uri.startswith("sqlite:"):
        path, _, query = uri.partition("?")
        db = sqlite_path(path)
        options: dict[str, Any] = {}
        for name, values in parse_qs(query, keep_blank_values=True).items():
            if name not in _SQLITE_OPTIONS:
                raise ConfigurationError(f"unknown sqlite log option {name!r} in {uri!r}")
            try:
                options[name] = _SQLITE_OPTIONS[name](values[-1])
            except ValueError:
                raise ConfigurationError(f"decision log option {name} has an unusable value {values[-1]!r}") from None
            if name != "journal" and not 0 < options[name] < float("inf"):
                raise ConfigurationError(
                    f"decision log option {name} must be a positive finite number, got {values[-1]!r}"
                )
        options["journal"] = journal_dir(options.get("journal"), f"{db}.journal.d")
        return SQLiteLog(db, **options)
    if uri.startswith(("postgresql:", "postgres:")):
        from .postgres import open_postgres_log  # psycopg is the `postgres` extra

        return open_postgres_log(uri)
    raise ConfigurationError(
        f"unknown decision log URI scheme in {uri.split(':', 1)[0]!r}; supported: sqlite:///PATH, postgresql://..."
    )
