"""Shared state behind one protocol; the backend is chosen by URI."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigurationError
from .base import Store, StoreFull, StoreMethods, StoreUnavailable
from .memory import MemoryStore
from .ops import (
    Append,
    Budget,
    Cadence,
    CadenceResult,
    Commit,
    Consume,
    Distinct,
    Get,
    Hit,
    Inflight,
    Op,
    Put,
    Range,
    Rate,
    RateResult,
    Reserve,
    ReserveResult,
    WindowResult,
)

__all__ = [
    "Append",
    "Budget",
    "Cadence",
    "CadenceResult",
    "Commit",
    "Consume",
    "Distinct",
    "Get",
    "Hit",
    "Inflight",
    "MemoryStore",
    "Op",
    "Put",
    "Range",
    "Rate",
    "RateResult",
    "Reserve",
    "ReserveResult",
    "Store",
    "StoreFull",
    "StoreMethods",
    "StoreUnavailable",
    "WindowResult",
    "open_store",
]


_REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")


def open_store(uri: str) -> Store:
    """``memory://`` (optionally ``?max_used=N&max_keys=N``), ``redis://``, ``rediss://``,
    ``redis+cluster://``, ``redis+sentinel://`` (docs/stores.md). Unknown schemes are errors."""
    parts = urlsplit(uri)
    if parts.scheme == "memory":
        raw = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(raw) - {"max_used", "max_keys"}
        if unknown:
            raise ConfigurationError(f"unknown memory store option(s): {', '.join(sorted(unknown))}")
        options: dict[str, int] = {}
        for name, value in raw.items():
            if not value.isdigit() or int(value) < 1:
                raise ConfigurationError(f"memory store option {name} must be a positive integer, got {value!r}")
            options[name] = int(value)
        return MemoryStore(max_used=options.get("max_used", 500_000), max_keys=options.get("max_keys", 100_000))
    if parts.scheme in _REDIS_SCHEMES:
        from .redis import open_redis_store  # redis-py is the `redis` extra

        return open_redis_store(uri)
    raise ConfigurationError(
        f"unknown store URI scheme {parts.scheme!r}; supported: memory://, redis://, rediss://, "
        "redis+cluster://, redis+sentinel://"
    )
