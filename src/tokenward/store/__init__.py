"""Shared state behind one protocol; the backend is chosen by URI."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from .base import Budget, ReserveResult, Store, StoreFull, StoreUnavailable, WindowResult
from .memory import MemoryStore

__all__ = [
    "Budget",
    "MemoryStore",
    "ReserveResult",
    "Store",
    "StoreFull",
    "StoreUnavailable",
    "WindowResult",
    "open_store",
]


def open_store(uri: str) -> Store:
    """``memory://`` (optionally ``?max_used=N&max_keys=N``). Unknown schemes are errors."""
    parts = urlsplit(uri)
    if parts.scheme == "memory":
        options = {k: int(v[-1]) for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"max_used", "max_keys"}
        if unknown:
            raise ValueError(f"unknown memory store option(s): {', '.join(sorted(unknown))}")
        return MemoryStore(**options)
    raise ValueError(
        f"unknown store URI scheme {parts.scheme!r} in {uri!r}; supported: memory://"
    )
