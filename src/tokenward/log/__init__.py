"""Decision logs, chosen by URI."""

from __future__ import annotations

from urllib.parse import parse_qs

from .base import DecisionLog, DecisionRecord
from .sqlite import SQLiteLog, read_recent, sqlite_path

__all__ = ["DecisionLog", "DecisionRecord", "SQLiteLog", "open_log", "read_recent"]


_SQLITE_OPTIONS = {"batch": int, "flush_interval": float, "max_queue": int}


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
    raise ValueError(f"unknown decision log URI {uri!r}; supported: sqlite:///PATH")
