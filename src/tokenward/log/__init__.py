"""Decision logs, chosen by URI."""

from __future__ import annotations

from .base import DecisionLog, DecisionRecord
from .sqlite import SQLiteLog, read_recent, sqlite_path

__all__ = ["DecisionLog", "DecisionRecord", "SQLiteLog", "open_log", "read_recent"]


def open_log(uri: str) -> DecisionLog:
    if uri.startswith("sqlite:"):
        return SQLiteLog(sqlite_path(uri))
    raise ValueError(f"unknown decision log URI {uri!r}; supported: sqlite:///PATH")
