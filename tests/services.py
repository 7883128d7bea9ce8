"""Real services for tests, started from the binaries on the machine.

* :class:`RedisServer`: one ``redis-server`` on a free loopback port, no persistence.
* :class:`RedisClusterServers`: a Redis Cluster of N masters (no replicas) on loopback
  ports, created with ``redis-cli --cluster create``.
* :class:`RedisSentinel`: one ``redis-server --sentinel`` watching a :class:`RedisServer`.

Every process runs in its own process group, is killed with that group, and is also
killed at interpreter exit if a test forgot it. Use them as context managers, or call
``start()``/``stop()`` from fixtures with finalizers::

    with RedisServer(tmp_path) as redis:
        store = open_store(redis.url)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "RedisClusterServers",
    "RedisSentinel",
    "RedisServer",
    "free_port",
    "need_redis",
    "redis_available",
]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
HOST = "127.0.0.1"

_running: set[subprocess.Popen[bytes]] = set()


def redis_available() -> bool:
    return Path(REDIS_SERVER).exists() and Path(REDIS_CLI).exists()


def need_redis() -> None:
    """Skip the calling test when the Redis binaries are missing (fail instead under CI)."""
    import pytest

    if not redis_available():
        if os.environ.get("CI"):
            pytest.fail("redis-server/redis-cli are not installed (CI needs them)")
        pytest.skip("redis-server/redis-cli are not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_running):
        _kill_group(proc)


def _command(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one inline command over a raw socket -> its first reply line (no client needed)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(" ".join(args).encode() + b"\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


class _Service:
    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class RedisServer(_Service):
    """One ``redis-server`` on ``127.0.0.1:port`` (a free port unless given), no persistence.

    :meth:`kill` (SIGKILL), :meth:`pause`/:meth:`resume` (SIGSTOP/SIGCONT) and
    :meth:`restart` (same port, empty, no scripts) simulate failures.
    """

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = self.workdir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), "--daemonize", "no", "--logfile", str(self.logfile),
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        _running.add(self.proc)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited: {self.log_tail()}")
            with contextlib.suppress(OSError):
                if _command(self.port, "PING", timeout=0.5).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def command(self, *args: str) -> bytes:
        """One inline command (arguments without spaces) -> the raw reply line."""
        return _command(self.port, *args)

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [REDIS_CLI, "-h", HOST, "-p", str(self.port), *args], capture_output=True, timeout=10, check=True
        )
        return out.stdout.decode()

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc.wait(10)
            _running.discard(self.proc)
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers, as in a hung server."""
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGCONT)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.resume()
        _kill_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            self.proc.wait(5)
        _running.discard(self.proc)
        self.proc = None


class RedisClusterServers(_Service):
    """A Redis Cluster of ``masters`` nodes on loopback ports, no replicas.

    Each node is a :class:`RedisServer` started with ``--cluster-enabled yes``, its own
    ``--cluster-config-file`` and an explicit bus port; the slots are assigned with
    ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes``. A restarted
    master refuses queries (CLUSTERDOWN) for about ``node_timeout_ms`` before it serves.
    """

    def __init__(self, workdir: Path, masters: int = 3, node_timeout_ms: int = 2000):
        self.workdir = Path(workdir)
        self.nodes: list[RedisServer] = []
        for _ in range(masters):
            port, bus = free_port(), free_port()
            extra = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.workdir / f"nodes-{port}.conf"),
                "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-port", str(bus),
            )  # fmt: skip
            self.nodes.append(RedisServer(self.workdir, port, extra))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *(n.address for n in self.nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, timeout=timeout, check=True,
            )  # fmt: skip
            self._wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    info = node.cli("CLUSTER", "INFO")
                    states.append("cluster_state:ok" in info and "cluster_slots_ok:16384" in info)
            if len(states) == len(self.nodes) and all(states):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis cluster did not reach cluster_state:ok within {timeout}s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class RedisSentinel(_Service):
    """One ``redis-server --sentinel`` monitoring ``master`` under ``service``."""

    def __init__(self, workdir: Path, master: RedisServer, service: str = "tokenward"):
        self.workdir = Path(workdir)
        self.master = master
        self.service = service
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = self.workdir / f"sentinel-{self.port}.conf"

    @property
    def url(self) -> str:
        return f"redis+sentinel://{HOST}:{self.port}/{self.service}"

    def start(self, timeout: float = 10.0) -> RedisSentinel:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Sentinel rewrites its config file, so it must be a writable file of its own.
        self.config.write_text(
            f"port {self.port}\nbind {HOST}\ndaemonize no\ndir {self.workdir}\n"
            f"logfile {self.workdir / f'sentinel-{self.port}.log'}\n"
            f"sentinel monitor {self.service} {HOST} {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
        )
        self.proc = subprocess.Popen(
            [REDIS_SERVER, str(self.config), "--sentinel"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        _running.add(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis sentinel on port {self.port} exited")
            with contextlib.suppress(OSError):
                reply = _command(self.port, "SENTINEL", "get-master-addr-by-name", self.service, timeout=0.5)
                if reply.startswith(b"*2"):
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis sentinel on port {self.port} did not answer within {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        _kill_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            self.proc.wait(5)
        _running.discard(self.proc)
        self.proc = None
