"""Decision logs, chosen by URI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from ..errors import ConfigurationError
from .base import DecisionLog, DecisionRecord
from .journal import journal_dir
from .sqlite import SQLiteLog, read_recent, sqlite_path, sqlite_runner

__all__ = ["DecisionLog", "DecisionRecord", "SQLiteLog", "open_log", "read_recent", "recent", "runner"]


_SQLITE_OPTIONS = {"batch": int, "flush_interval": float, "max_queue": int, "journal": str, "journal_max": int}


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
