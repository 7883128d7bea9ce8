"""Shared plumbing for the benchmarks: servers as subprocesses, wrk runs, proofs, RSS.

Everything listens on 127.0.0.1 only. Each server is started in its own session
(process group), so stopping it also stops granian's worker child; nothing else is
ever signalled.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenward.simulate.services import stop_group

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = sys.executable
TOKENWARD = str(Path(sys.executable).with_name("tokenward"))
WRK = "/usr/bin/wrk"
LUA_SCRIPT = BENCH_DIR / "wrk_requests.lua"
HOST = "127.0.0.1"
ROUTE = "/v1/chat/completions"


# -- processes ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess in its own process group, with readiness and cleanup."""

    _live: list[Server] = []  # noqa: RUF012 - registry for the atexit/signal cleanup

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_dir: Path,
    ):
        self.name = name
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd or ROOT,
            start_new_session=True,
        )
        Server._live.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, probe: str, *, method: str = "GET", body: bytes | None = None, timeout: float = 30.0) -> None:
        """Poll ``probe`` until it answers with any HTTP status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
            req = urllib.request.Request(self.url + probe, data=body, method=method)
            try:
                with urllib.request.urlopen(req, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered: ready
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {self.url}{probe} after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            self._log.flush()
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group (graceful: granian runs lifespan shutdown), then KILL."""
        stop_group(self.proc, timeout)
        with contextlib.suppress(OSError):
            self._log.close()
        if self in Server._live:
            Server._live.remove(self)
        return self.proc.returncode


def stop_all() -> None:
    for s in list(reversed(Server._live)):
        with contextlib.suppress(Exception):
            s.stop(timeout=5)


def _on_signal(signum: int, _frame: Any) -> None:
    stop_all()
    raise SystemExit(128 + signum)


atexit.register(stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def start_upstream(log_dir: Path, *, chunks: int = 20) -> Server:
    port = free_port()
    s = Server(
        "upstream",
        [
            PYTHON,
            "-m",
            "tokenward.demo.upstream",
            "--host",
            HOST,
            "--port",
            str(port),
            "--chunks",
            str(chunks),
        ],
        port,
        log_dir=log_dir,
    )
    s.wait_ready("/v1/models")
    return s


def start_gateway(log_dir: Path, policy: Path, upstream: str, key: str) -> Server:
    port = free_port()
    s = Server(
        "tokenward",
        [TOKENWARD, "serve", "--upstream", upstream, "--policy", str(policy), "--port", str(port)],
        port,
        env={"TOKENWARD_KEYS": key},
        log_dir=log_dir,
    )
    s.wait_ready("/.tokenward/health")
    return s


def start_passthrough(log_dir: Path, upstream: str) -> Server:
    port = free_port()
    s = Server(
        "passthrough",
        [PYTHON, str(BENCH_DIR / "passthrough.py"), "--upstream", upstream, "--port", str(port)],
        port,
        log_dir=log_dir,
    )
    s.wait_ready("/v1/models")
    return s


def start_refuser(log_dir: Path) -> Server:
    port = free_port()
    s = Server(
        "refuse401",
        [PYTHON, str(BENCH_DIR / "refuse401.py"), "--port", str(port)],
        port,
        log_dir=log_dir,
    )
    s.wait_ready("/")
    return s


# A load generator is one very hot client: far over any per-client limit, perfectly
# regular, many requests in flight. For throughput runs the pipeline still computes every
# limit and signal, but limits are out of reach and behaviour signals weigh nothing, so
# the figures measure the cost of the checks rather than the refusal of the load
# generator. (memory.py uses the defaults: there every client sends one request.)
LOAD_GENERATOR_POLICY = """\
limits:
  - {name: per-device, key: device, limit: 1.0e12, window: 60}
  - {name: per-subnet, key: subnet, limit: 1.0e12, window: 60}
weights: {"behaviour/*": 0}
"""


def write_policy(
    path: Path,
    log_db: Path,
    *,
    difficulty: int = 2,
    ttl: int = 600,
    trusted_proxies: Sequence[str] = (),
    extra: str = "",
) -> Path:
    lines = [
        "# written by bench/: enforce mode, low difficulty, decision log on (as in production)",
        "version: 1",
        "mode: enforce",
        f"proof: {{difficulty: {difficulty}, ttl: {ttl}}}",
        f"log: sqlite:///{log_db}",
    ]
    if trusted_proxies:
        lines.append("trusted_proxies: [" + ", ".join(f'"{c}"' for c in trusted_proxies) + "]")
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


# -- process-tree memory ------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class TreeRSS:
    total_mb: float
    per_process: list[dict[str, Any]] = field(default_factory=list)


def tree_rss(pid: int) -> TreeRSS:
    procs = []
    for p in process_tree(pid):
        procs.append(
            {
                "pid": p,
                "rss_mb": status_kb(p, "VmRSS") / 1024,
                "hwm_mb": status_kb(p, "VmHWM") / 1024,
                "pss_mb": pss_kb(p) / 1024,
                "role": "parent" if p == pid else "worker",
            }
        )
    return TreeRSS(sum(x["rss_mb"] for x in procs), procs)


def worker_pids(pid: int) -> list[int]:
    return [p for p in process_tree(pid) if p != pid]


# -- proofs -------------------------------------------------------------------------
class ProofMint:
    """Solves challenges for exact body bytes: the same proofs a client sends.

    A gateway on the memory store accepts only challenges it issued in its own lifetime
    (docs/protocol.md, "Challenges and restarts"), so once a gateway is running the
    challenges come from its challenge endpoint (:meth:`use_gateway`, fetched ahead of a
    timed run with :meth:`prefetch`). In-process benchmarks mint with the guard's own
    key ring (:meth:`use_ring`). ``key_b64`` is the key the gateway is started with."""

    def __init__(self, difficulty: int = 2, ttl: float = 600.0):
        from tokenward.proof import KeyRing
        from tokenward.proof.keys import Key, encode_key

        secret = secrets.token_bytes(32)
        self.key_b64 = encode_key(secret)
        self.ring: Any = KeyRing([Key.from_secret(secret)])
        self.difficulty = difficulty
        self.ttl = ttl
        self.gateway: str | None = None
        self._ready: dict[str, list[tuple[str, int]]] = {}  # route -> fetched (token, difficulty)

    def use_ring(self, ring: Any) -> None:
        self.ring, self.gateway = ring, None

    def use_gateway(self, url: str) -> None:
        self.gateway = url.rstrip("/")
        self._ready.clear()

    def prefetch(self, n: int, route: str = ROUTE, threads: int = 8) -> None:
        """Fetch ``n`` fresh challenges from the gateway (before a timed run)."""
        import concurrent.futures

        import httpx

        assert self.gateway is not None, "use_gateway() first"
        url = self.gateway + "/.tokenward/challenge"

        def grab(count: int) -> list[tuple[str, int]]:
            with httpx.Client(timeout=30) as client:
                out = []
                for _ in range(count):
                    r = client.post(url, json={"route": route})
                    r.raise_for_status()
                    ch = r.json()
                    out.append((ch["challenge"], int(ch["difficulty"])))
                return out

        shares = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for batch in pool.map(grab, [s for s in shares if s]):
                self._ready.setdefault(route, []).extend(batch)

    def proof(self, body: bytes, route: str = ROUTE) -> str:
        from tokenward.proof import issue_challenge, solve

        if self.gateway is not None:
            ready = self._ready.get(route)
            if not ready:
                self.prefetch(1, route, threads=1)
                ready = self._ready[route]
            token, bits = ready.pop()
            return f"v1.{token}.{solve(token, body, bits)}"
        ch = issue_challenge(self.ring, route, self.difficulty, self.ttl, time.time())
        return f"v1.{ch.token}.{solve(ch.token, body, self.difficulty)}"


def chat_body(n: int, *, stream: bool, tag: str = "bench") -> bytes:
    """A distinct, realistic-sized chat request (~330 bytes) for request number ``n``."""
    doc = {
        "model": "demo-1",
        "messages": [
            {"role": "system", "content": "You are the docs assistant for an example product."},
            {
                "role": "user",
                "content": f"[{tag} {n}] How do I rotate the signing keys "
                "without invalidating challenges already issued?",
            },
        ],
        "max_tokens": 200,
        "stream": stream,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


# -- wrk ------------------------------------------------------------------------------
def write_slices(directory: Path, threads: int, rows: Iterable[tuple[str | None, bytes]]) -> int:
    """Deal ``(proof, body)`` rows round-robin into one file per wrk thread
    (``slice-1.tsv`` ...): each thread walks its own disjoint slice."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [open(directory / f"slice-{i + 1}.tsv", "wb") for i in range(threads)]
    n = 0
    try:
        for n, (proof, body) in enumerate(rows, 1):
            if b"\t" in body or b"\n" in body:
                raise ValueError("bodies must not contain tabs or newlines")
            files[(n - 1) % threads].write((proof or "-").encode() + b"\t" + body + b"\n")
    finally:
        for f in files:
            f.close()
    return n


@dataclass
class WrkResult:
    label: str
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: dict[str, int]
    used: int
    exhausted: int
    wrk_cpu_s: float = 0.0
    raw: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("raw")
        return d


def run_wrk(
    label: str,
    url: str,
    data_dir: Path,
    *,
    connections: int,
    duration: float,
    threads: int = 2,
    wrap: bool,
    timeout_s: int = 10,
) -> WrkResult:
    if not os.access(WRK, os.X_OK):
        raise SystemExit(f"{WRK} not found: the benchmarks drive their load with wrk (Debian: apt-get install wrk)")
    env = {
        **os.environ,
        "BENCH_DATA": str(data_dir),
        "BENCH_WRAP": "1" if wrap else "0",
    }
    argv = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout_s}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{out.stdout}\n{out.stderr}")
    d = json.loads(line[len("BENCH_JSON ") :])
    lat = d["latency_us"]
    errors = d["errors"]
    dur = d["duration_us"] / 1e6
    return WrkResult(
        label=label,
        requests=d["requests"],
        duration_s=dur,
        rps=d["requests"] / dur if dur else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        non2xx=errors["status"],
        socket_errors={k: errors[k] for k in ("connect", "read", "write", "timeout")},
        used=d["used"],
        exhausted=d["exhausted"],
        wrk_cpu_s=wrk_cpu,
        raw=out.stdout,
    )


# -- CPU accounting -------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process and its live descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


def own_cpu_seconds(server_pids: Iterable[int]) -> float:
    """CPU seconds of this process, its finished children (wrk) and the servers' trees."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + sum(tree_cpu_seconds(p) for p in server_pids)


def source_state() -> dict[str, Any]:
    """Which code was measured: HEAD and how many files differ from it (others edit src/)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    changed = [ln[3:] for ln in git("status", "--porcelain", "--", "src").splitlines()]
    return {"head": git("rev-parse", "HEAD").strip(), "src_files_changed": len(changed)}
