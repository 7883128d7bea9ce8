"""Running the gateway under an ASGI server.

Granian (Rust HTTP server) rather than uvicorn: with the same aiohttp upstream client it
served more requests per second and had a p99 at c64 of 43 ms against uvicorn's 206 ms
on this kind of machine (docs/operations.md). It runs the app in a worker process, so the CLI
passes its settings through the environment (``SERVE_ENV``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .http.app import SERVE_ENV
from .metrics import MULTIPROC_ENV
from .oplog import logging_config

__all__ = ["AdminListener", "serve"]


@dataclass(frozen=True)
class AdminListener:
    """Where the admin listener (metrics, dashboard) listens, and what it reads."""

    host: str
    port: int
    log_uri: str
    token_env: str


def serve(
    settings: dict[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "warning",
    log_format: str = "text",
    access_log: bool = False,
    header_timeout: float = 10.0,
    admin: AdminListener | None = None,
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
    with _metrics_dir(), _admin_process(admin, log_level, log_format):
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
            log_dictconfig=logging_config(log_format, log_level),
            log_access=access_log,
            backlog=2048,
            # HTTP/1.1 only: in its auto mode granian waits for the first bytes to choose
            # between HTTP/1 and HTTP/2 with no timer, so a connection that never sends a
            # byte stayed open for good. Clients reach the gateway over HTTP/1.1 (TLS and
            # HTTP/2 end at the load balancer in front of it, if any).
            http=HTTPModes.http1,
            http1_settings=HTTP1Settings(header_read_timeout=int(header_timeout * 1000)),
        ).serve()


@contextlib.contextmanager
def _metrics_dir() -> Iterator[str]:
    """The workers' metrics files (prometheus-client's multiprocess mode): a fresh
    directory per run, or the operator's ``PROMETHEUS_MULTIPROC_DIR`` emptied of the
    previous run's files."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        yield given
        return
    made = tempfile.mkdtemp(prefix="tokenward-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield made
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(made, ignore_errors=True)


@contextlib.contextmanager
def _admin_process(admin: AdminListener | None, log_level: str, log_format: str) -> Iterator[None]:
    """The admin listener in a process of its own (``python -m tokenward.admin``), for as
    long as the gateway serves; it exits by itself if this process dies."""
    if admin is None:
        yield
        return
    command = [
        sys.executable, "-m", "tokenward.admin", "--host", admin.host, "--port", str(admin.port),
        "--log", admin.log_uri, "--token-env", admin.token_env, "--parent", str(os.getpid()),
        "--log-level", log_level, "--log-format", log_format,
    ]  # fmt: skip
    proc = subprocess.Popen(command)
    try:
        _wait_ready(f"http://{_url_host(admin.host)}:{admin.port}/.tokenward/health", proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the admin listener exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1):
                return
        time.sleep(0.05)
    raise SystemExit(f"the admin listener did not answer at {url} within {timeout:.0f}s")
