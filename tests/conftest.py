"""Shared fixtures: real processes on real sockets.

The demo upstream and the gateway run as subprocesses exactly as a user starts them
(``python -m tokenward.demo.upstream``, ``tokenward serve``), so tests see the real
server (granian), the real upstream client (aiohttp) and the real SQLite log.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TOKENWARD = [sys.executable, "-m", "tokenward.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"process exited ({proc.returncode}) before {url} answered:\n{out}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Upstream:
    url: str
    proc: subprocess.Popen[bytes]

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_demo/stats").json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_demo/reset")


@dataclass
class GatewayProc:
    url: str
    proc: subprocess.Popen[bytes]
    db: Path
    key: bytes  # the challenge-signing key, so tests can mint challenges (e.g. expired ones)

    def stop(self) -> int:
        return stop(self.proc)


@pytest.fixture(scope="session")
def demo_upstream() -> Iterator[Upstream]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenward.demo.upstream", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/models", proc)
    yield Upstream(url, proc)
    stop(proc)


def start_gateway(
    tmp_path: Path,
    upstream: str,
    policy: dict | None = None,
    name: str = "gw",
    key: bytes | None = None,
    port: int | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> GatewayProc:
    """``tokenward serve`` with a temp policy (``policy`` overrides the defaults below).
    Instances given the same ``key`` accept each other's challenges; ``port`` (default: a
    free one) lets a test restart a gateway where a page expects it."""
    key = key or secrets.token_bytes(32)
    db = tmp_path / f"{name}.db"
    data = {
        "log": f"sqlite:///{db}",
        "routes": [
            {"path": "/v1/chat/completions", "api": "openai"},
            {"path": "/v1/completions", "api": "openai"},
            {"path": "/v1/responses", "api": "openai"},
            {"path": "/v1/embeddings", "api": "openai"},
            {"path": "/v1/messages", "api": "anthropic"},
            {"path": "/api/chat", "api": "custom"},
            {"path": "/demo", "protect": False},
            {"path": "/_demo/*", "protect": False},
        ],
        "proof": {"difficulty": 8},
    }
    data.update(policy or {})
    policy_file = tmp_path / f"{name}.yaml"
    policy_file.write_text(yaml.safe_dump(data))
    port = port or free_port()
    env = {**os.environ, "TOKENWARD_KEYS": base64.urlsafe_b64encode(key).rstrip(b"=").decode(), **(env or {})}
    proc = subprocess.Popen(
        [*TOKENWARD, "serve", "--upstream", upstream, "--policy", str(policy_file),
         "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/.tokenward/health", proc)
    return GatewayProc(url, proc, db, key)


@pytest.fixture(scope="module")
def gateway(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), demo_upstream.url)
    yield gw
    gw.stop()
