"""What the simulator starts by itself: the demo LLM, a gateway with the policy under
test (plus simulation-only settings), and a loopback receiver for its alerts.

Both servers run as subprocesses exactly as a user starts them
(``python -m tokenward.demo.upstream``, ``tokenward serve``), each in its own process
group so that stopping one also stops its workers and nothing else. Everything listens
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from aiohttp import web

from ..money.spike import SpikeSettings
from ..policy import STANDARD_ROUTES, Policy, parse_policy, read_policy_data

__all__ = [
    "AlertReceiver",
    "ManagedProcess",
    "SimulationPolicy",
    "free_port",
    "is_loopback_url",
    "simulation_policy",
    "start_gateway",
    "start_upstream",
    "stop_group",
]

HOST = "127.0.0.1"
PAGE_ROUTE = "/demo"
CHAT_ROUTE = "/v1/chat/completions"


def stop_group(proc: subprocess.Popen[Any], timeout: float) -> int | None:
    """Stop a process started in its own process group: SIGTERM to the group (a gateway
    drains its decision log, granian runs its lifespan shutdown), SIGKILL after
    ``timeout``, then SIGKILL the group again for a worker that outlived its parent."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def is_loopback_url(url: str) -> bool:
    """Only ``localhost`` (and ``*.localhost``) or a literal loopback address."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------
# The policy under test, with the simulation's own settings
# --------------------------------------------------------------------------------------
@dataclass(slots=True)
class SimulationPolicy:
    path: Path  # the file the gateway runs with
    policy: Policy
    notes: list[str] = field(default_factory=list)  # every setting the simulator changed, for the report
    jwt_key: str | None = None


def _builtin_demo_policy() -> dict[str, Any]:
    return yaml.safe_load((resources.files("tokenward.policies") / "demo.yaml").read_text()) or {}


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value


def simulation_policy(
    source: Path | None,
    *,
    upstream: str,
    work_dir: Path,
    alerts_url: str,
    duration_scale: float,
) -> SimulationPolicy:
    """The policy under test plus what only a simulation needs (each change noted)."""
    data = copy.deepcopy(read_policy_data(source)) if source is not None else _builtin_demo_policy()
    base = source.resolve().parent if source is not None else Path.cwd()
    notes: list[str] = []

    proxies = list(data.get("trusted_proxies") or [])
    if "127.0.0.1/32" not in proxies:
        proxies.append("127.0.0.1/32")
    data["trusted_proxies"] = proxies
    notes.append(
        "trusted_proxies += 127.0.0.1/32: the simulator is the gateway's proxy and carries each simulated "
        "client's address in X-Forwarded-For (simulation only: never trust a proxy you do not run)"
    )
    data["upstream"] = {"url": upstream}
    notes.append(f"upstream: the built-in demo LLM at {upstream}")
    data["store"] = "memory://"
    data["log"] = f"sqlite:///{work_dir / 'decisions.db'}"
    notes.append("store: memory:// and log: a fresh SQLite file in the run's folder")
    proof = dict(data.get("proof") or {})
    if proof.pop("keys_file", None) is not None:
        notes.append("proof.keys_file: not used (a random signing key for the run)")
    if proof:
        data["proof"] = proof
    alerts = dict(data.get("alerts") or {})
    alerts.pop("headers", None)
    alerts.update({"webhook": alerts_url, "base_delay": 0.05, "max_attempts": 3})
    data["alerts"] = alerts
    notes.append("alerts.webhook: the simulator's loopback receiver (records when under-attack mode engages)")

    routes = data.get("routes")
    if routes is None:
        routes = [dict(r) for r in STANDARD_ROUTES]
    if isinstance(routes, list) and not any(isinstance(r, dict) and r.get("path") == PAGE_ROUTE for r in routes):
        data["routes"] = [*routes, {"path": PAGE_ROUTE, "protect": False}]
        notes.append(f"routes += {PAGE_ROUTE} (unprotected): the demo chat page the browser actors open")

    network = data.get("network")
    if isinstance(network, dict) and isinstance(network.get("lists"), dict):
        lists = {}
        for name, entry in network["lists"].items():
            if isinstance(entry, dict):
                lists[name] = {**entry, "file": _resolve(entry.get("file"), base)}
            else:
                lists[name] = _resolve(entry, base)
        data["network"] = {**network, "lists": lists}

    jwt_key = None
    identity = data.get("identity")
    if isinstance(identity, dict) and isinstance(identity.get("jwt"), dict):
        jwt = dict(identity["jwt"])
        for k in ("key", "key_env", "key_file", "jwks_file"):
            jwt.pop(k, None)
        jwt_key = secrets.token_urlsafe(48)
        jwt.update({"algorithms": ["HS256"], "key": jwt_key})
        data["identity"] = {**identity, "jwt": jwt}
        notes.append("identity.jwt: an HS256 key of the run, so the simulator can mint its users' and attackers' JWTs")

    if duration_scale != 1.0:
        spike = dict(data.get("spike") or {})
        defaults = SpikeSettings()
        warmup = int(spike.get("warmup", defaults.warmup))
        half_life = float(spike.get("half_life", defaults.half_life))
        cool_down = float(spike.get("cool_down", defaults.cool_down))
        spike["warmup"] = max(1, round(warmup * duration_scale))
        spike["half_life"] = max(1.0, half_life * duration_scale)
        spike["cool_down"] = cool_down * duration_scale
        data["spike"] = spike
        notes.append(
            f"spike time constants scaled by {duration_scale:g} with the timeline: warmup {warmup} -> "
            f"{spike['warmup']} buckets, half_life {half_life:g} -> {spike['half_life']:g} s, cool_down "
            f"{cool_down:g} -> {spike['cool_down']:g} s (rates and windows of limits and budgets unchanged)"
        )

    policy = parse_policy(data, str(source) if source else "the built-in demo policy (simulation copy)")
    path = work_dir / "policy.simulation.yaml"
    header = (
        "# Written by `tokenward simulate`: the policy under test plus simulation-only settings.\n"
        f"# Source: {source or 'the built-in demo policy'}. Do not deploy this file.\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return SimulationPolicy(path=path, policy=policy, notes=notes, jwt_key=jwt_key)


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------
class ManagedProcess:
    """A server subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], port: int, log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=log_dir,
            start_new_session=True,
        )

    def tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            self._log.flush()
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    async def wait_ready(self, path: str, within: float = 30.0) -> None:
        import aiohttp

        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status < 500:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer at {self.url}{path} within {within:.0f}s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to the group (the gateway drains its decision log), then SIGKILL."""
        code = stop_group(self.proc, timeout)
        with contextlib.suppress(OSError):
            self._log.close()
        return code


async def start_upstream(log_dir: Path) -> ManagedProcess:
    port = free_port()
    proc = ManagedProcess(
        "demo-upstream",
        [sys.executable, "-m", "tokenward.demo.upstream", "--host", HOST, "--port", str(port)],
        port,
        log_dir,
    )
    await proc.wait_ready("/v1/models")
    return proc


async def start_gateway(log_dir: Path, policy_path: Path) -> ManagedProcess:
    port = free_port()
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    proc = ManagedProcess(
        "gateway",
        [sys.executable, "-m", "tokenward.cli", "serve", "--policy", str(policy_path),
         "--host", HOST, "--port", str(port)],
        port,
        log_dir,
        env={"TOKENWARD_KEYS": key},
    )  # fmt: skip
    await proc.wait_ready("/.tokenward/health", within=60)
    return proc


# --------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------
class AlertReceiver:
    """A webhook receiver on a loopback port: the gateway's state changes
    (``spike/under_attack``, ``spike/normal``, ``breaker/open`` ...) with the time they
    arrived."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/alerts", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, HOST, port).start()
        self.url = f"http://{HOST}:{port}/alerts"
        return self.url

    async def _hook(self, request: web.Request) -> web.Response:
        try:
            event = await request.json()
        except ValueError:
            return web.Response(status=400)
        if isinstance(event, dict):
            self.events.append({**event, "received_at": time.time()})
        return web.Response(text="ok")

    def under_attack(self) -> bool:
        """Whether the last spike event says a route is under attack now."""
        state: dict[str, bool] = {}
        for e in self.events:
            if e.get("event") == "spike/under_attack":
                state[str(e.get("subject"))] = True
            elif e.get("event") == "spike/normal":
                state[str(e.get("subject"))] = False
        return any(state.values())

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
