"""Decision logs, chosen by URI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from .base import DecisionLog, DecisionRecord
from .sqlite import SQLiteLog, read_recent, sqlite_path, sqlite_runner

__all__ = ["DecisionLog", "DecisionRecord", "SQLiteLog", "open_log", "read_recent", "recent", "runner"]


_SQLITE_OPTIONS = {"batch": int, "flush_interval": float, "max_queue": int}


def recent(uri: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest decisions of the log at ``uri`` (SQLite or PostgreSQL), newest first."""
    if uri.startswith(("postgresql:", "postgres:")):
        from .postgres import read_recent as pg_recent

        return list(pg_recent(uri, limit))
    return list(read_recent(sqlite_path(uri.partition("?")[0]), limit))


def runner(uri: str) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
    """A read-only query function over the log at ``uri`` (for log/queries.py)."""
    if uri.startswith(("postgresql:", "postgres:")):
        from .postgres import postgres_runner

        return postgres_runner(uri)
    return sqlite_runner(sqlite_path(uri.partition("?")[0]))


def open_log(uri: str) -> DecisionLog:
    """``sqlite:///PATH[?batch=512&flush_interval=0.05&max_queue=100000]``."""
    if uri.startswith("sqlite:"):
        path, _, query = uri.partition("?")
        options = {}
        for name, values in parse_qs(query).items():
            if name not in _SQLITE_OPTIONS:
                raise ValueError(f"unknown sqlite log option {name!r} in {uri!r}")
            options[name] = _SQLITE_OPTIONS[name](values[-1])
        return SQLiteLog(sqlite_path(path), **options)
    if uri.startswith(("postgresql:", "postgres:")):
        from .postgres import open_postgres_log  # psycopg is the `postgres` extra

        return open_postgres_log(uri)
    raise ValueError(
        f"unknown decision log URI scheme in {uri.split(':', 1)[0]!r}; supported: sqlite:///PATH, postgresql://..."
    )
