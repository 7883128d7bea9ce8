"""Running the gateway under an ASGI server.

Granian (Rust HTTP server) rather than uvicorn: with the same aiohttp upstream client it
served more requests per second and had a p99 at c64 of 43 ms against uvicorn's 206 ms
on this kind of machine (docs/operations.md). It runs the app in a worker process, so the CLI
passes its settings through the environment (``SERVE_ENV``).
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from .http.app import SERVE_ENV

__all__ = ["serve"]


def serve(
    settings: dict[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "warning",
    access_log: bool = False,
    header_timeout: float = 10.0,
) -> None:
    """Serve the gateway. ``header_timeout`` (the policy's) bounds the time a client takes
    to send a request's headers, to send its first byte on a new connection, and to start
    its next request on an idle one: then the connection is closed, so idle or trickling
    clients cannot pile up (docs/operations.md, "Slow and idle clients")."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    os.environ[SERVE_ENV] = orjson.dumps(settings).decode()
    Granian(
        "tokenward.http.app:gateway_from_env",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=workers,
        loop=Loops.auto,
        websockets=False,
        log_level=LogLevels(log_level),
        log_access=access_log,
        backlog=2048,
        # HTTP/1.1 only: in its auto mode granian waits for the first bytes to choose
        # between HTTP/1 and HTTP/2 with no timer, so a connection that never sends a
        # byte stayed open for good. Clients reach the gateway over HTTP/1.1 (TLS and
        # HTTP/2 end at the load balancer in front of it, if any).
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(header_read_timeout=int(header_timeout * 1000)),
    ).serve()
