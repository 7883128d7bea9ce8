"""Gateway memory under many distinct clients: RSS against the 256 MB target.

Starts the demo upstream and ``tokenward serve`` (enforce, difficulty 2, SQLite decision
log, ``trusted_proxies: ["127.0.0.1/32"]`` so X-Forwarded-For is believed), then drives
100,000 distinct clients — one X-Forwarded-For address each, from 198.18.0.0/15 (the
benchmarking range, RFC 2544) — each sending one request:

  80 %  a valid pre-solved proof for its own body (1 in 8 of these streamed, SSE)
  10 %  no proof            -> 401 proof_required
  10 %  a replay of a proof another client already used -> 401 proof_replayed

and prints the RSS of the gateway's process tree (granian's parent + its worker, from
/proc/<pid>/status VmRSS) at start, after every 20,000 clients, at the end and after a
few idle seconds. Every response's status (and refusal code) is checked. The worker is
forked from the parent, so the RSS sum counts shared pages twice; PSS (proportional set
size, /proc/<pid>/smaps_rollup) is printed beside it as the non-double-counted figure.

    .venv/bin/python bench/memory.py            # ~2 min
    .venv/bin/python bench/memory.py --clients 20000
    .venv/bin/python bench/memory.py --purpose --clients 20000   # the semantic model loaded, every turn scored
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

TARGET_MB = 256
REPLAY_DISTANCE = 1003  # a replay reuses the proof of the client this many places earlier
BASE_ADDR = ipaddress.IPv4Address("198.18.0.0")


@dataclass(slots=True)
class Client:
    xff: str
    kind: str  # valid | valid-sse | noproof | replay
    body: bytes
    proof: str | None


# --purpose: the route judges every turn's fit with the semantic model (the gateway loads
# it at start; `semantic: on` fails the start if it cannot), so the RSS includes the model.
# The bench's prompts are general, so the fit is computed and logged but weighs nothing.
PURPOSE_ROUTE = f"""weights: {{content/off-purpose: 0}}
routes:
  - path: {h.ROUTE}
    api: openai
    purpose:
      description: Customer support for a bank's cards, payments, statements and disputes.
      in_purpose: ["My card was declined", "How do I dispute a charge?", "Where is my new card?",
                   "Can I raise my limit?", "I lost my card"]
      out_of_purpose: ["Write a poem about the sea", "Solve this integral", "Plan my trip to Rome",
                       "Write a Python web scraper", "Summarise this novel"]
      semantic: "on"
      off_purpose: score
"""


def plan(n: int, mint: h.ProofMint) -> list[Client]:
    if n > 131_072:
        raise SystemExit("at most 131,072 distinct clients fit in 198.18.0.0/15")
    clients: list[Client] = []
    for i in range(n):
        xff = str(BASE_ADDR + i)
        slot = i % 10
        if slot == 0 or (slot == 1 and i < REPLAY_DISTANCE):
            body = h.chat_body(i, stream=False, tag="mem")
            clients.append(Client(xff, "noproof", body, None))
        elif slot == 1:
            # (i - 1003) % 10 == 8: always a valid client, long finished by now
            orig = clients[i - REPLAY_DISTANCE]
            assert orig.kind.startswith("valid")
            clients.append(Client(xff, "replay", orig.body, orig.proof))
        else:
            stream = i % 40 == 2
            body = h.chat_body(i, stream=stream, tag="mem")
            clients.append(Client(xff, "valid-sse" if stream else "valid", body, mint.proof(body)))
    return clients


class RSSWatcher(threading.Thread):
    """Samples the gateway tree's RSS every 0.25 s to catch the peak between checkpoints."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, h.tree_rss(self.pid).total_mb)
            self._stop_event.wait(0.25)

    def stop(self) -> None:
        self._stop_event.set()


EXPECT = {
    "valid": (200, None),
    "valid-sse": (200, None),
    "noproof": (401, b'"proof_required"'),
    "replay": (401, b'"proof_replayed"'),
}


async def drive(url: str, clients: list[Client], start: int, stop: int, conc: int,
                tally: Counter[str], mismatches: list[str], session: Any) -> None:  # fmt: skip
    next_i = start

    async def worker() -> None:
        nonlocal next_i
        while next_i < stop:
            i = next_i
            next_i += 1
            c = clients[i]
            headers = {
                "content-type": "application/json",
                "x-forwarded-for": c.xff,
                "x-demo-chunk-delay": "0",
            }
            if c.proof is not None:
                headers["tokenward-proof"] = c.proof
            try:
                async with session.post(url, data=c.body, headers=headers) as resp:
                    payload = await resp.read()
                    status = resp.status
            except Exception as exc:  # a failed request is a finding, not a crash
                tally[f"{c.kind} error"] += 1
                if len(mismatches) < 20:
                    mismatches.append(f"client {i} ({c.kind}): {type(exc).__name__}: {exc}")
                continue
            want_status, want_code = EXPECT[c.kind]
            ok = status == want_status and (want_code is None or want_code in payload)
            if ok and c.kind == "valid-sse":
                ok = payload.rstrip().endswith(b"data: [DONE]")
            tally[f"{c.kind} {'ok' if ok else 'WRONG'}"] += 1
            if not ok and len(mismatches) < 20:
                mismatches.append(f"client {i} ({c.kind}): {status} {payload[:160]!r}")

    await asyncio.gather(*(worker() for _ in range(conc)))


def rss_line(label: str, pid: int, clients_done: int, elapsed: float) -> dict[str, Any]:
    t = h.tree_rss(pid)
    parts = ", ".join(f"{p['role']} {p['rss_mb']:.1f}" for p in t.per_process)
    pss = sum(p["pss_mb"] for p in t.per_process)
    ok = "ok" if t.total_mb <= TARGET_MB else "OVER"
    print(
        f"  {label:<14} clients {clients_done:>7,}  RSS {t.total_mb:7.1f} MB "
        f"({parts}; PSS {pss:.1f})  target ≤ {TARGET_MB} MB {ok}   t={elapsed:5.1f}s",
        flush=True,
    )
    return {
        "label": label,
        "clients": clients_done,
        "rss_mb": round(t.total_mb, 1),
        "pss_mb": round(pss, 1),
        "processes": [{k: round(v, 1) if isinstance(v, float) else v for k, v in p.items()} for p in t.per_process],
        "elapsed_s": round(elapsed, 1),
    }


async def run(args: argparse.Namespace) -> int:
    import aiohttp

    tmp = Path(tempfile.mkdtemp(prefix="tokenward-memory-"))
    mint = h.ProofMint(difficulty=2, ttl=600)
    db = tmp / "decisions.db"
    policy = h.write_policy(
        tmp / "policy.yaml", db, difficulty=2, ttl=600, trusted_proxies=["127.0.0.1/32"],
        extra=PURPOSE_ROUTE if args.purpose else "",
    )  # fmt: skip
    samples: list[dict[str, Any]] = []
    tally: Counter[str] = Counter()
    mismatches: list[str] = []
    dlog: dict[str, Any] = {}
    try:
        up = h.start_upstream(tmp, chunks=20)
        gw = h.start_gateway(tmp, policy, up.url, mint.key_b64)
        t0 = time.perf_counter()
        mint.use_gateway(gw.url)  # a memory-store gateway accepts only the challenges it issued
        mint.prefetch(args.clients)
        clients = plan(args.clients, mint)
        kinds = Counter(c.kind for c in clients)
        print(
            f"fetched challenges and planned {len(clients):,} clients in {time.perf_counter() - t0:.1f}s: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())),
            flush=True,
        )
        await asyncio.sleep(1.0)  # let the worker settle after startup
        url = gw.url + h.ROUTE
        watcher = RSSWatcher(gw.pid)
        watcher.start()
        print(f"tokenward pid {gw.pid} (workers {h.worker_pids(gw.pid)}), {args.concurrency} in flight")
        start = time.perf_counter()
        samples.append(rss_line("start", gw.pid, 0, 0.0))
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            done = 0
            while done < len(clients):
                stop = min(done + args.step, len(clients))
                await drive(url, clients, done, stop, args.concurrency, tally, mismatches, session)
                done = stop
                samples.append(rss_line(f"after {done // 1000}k", gw.pid, done, time.perf_counter() - start))
        elapsed = time.perf_counter() - start
        samples.append(rss_line("end", gw.pid, done, elapsed))
        await asyncio.sleep(args.settle)
        samples.append(rss_line(f"idle +{args.settle:g}s", gw.pid, done, time.perf_counter() - start))
        watcher.stop()
        peak = max(watcher.peak, *(s["rss_mb"] for s in samples))
        workers = h.worker_pids(gw.pid)
        hwm = sum(h.status_kb(p, "VmHWM") for p in h.process_tree(gw.pid)) / 1024
        print(f"\n{len(clients):,} clients in {elapsed:.0f}s ({len(clients) / elapsed:,.0f} req/s)")
        print(
            f"peak RSS (sampled every 0.25 s): {peak:.1f} MB; VmHWM sum over the tree: {hwm:.1f} MB; "
            f"target ≤ {TARGET_MB} MB: {'ok' if peak <= TARGET_MB else 'OVER'}"
        )
        gw.stop(timeout=60)
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            by_code = conn.execute(
                "SELECT coalesce(code, action), status, count(*) FROM decisions GROUP BY 1, 2"
            ).fetchall()
            distinct_ips = conn.execute("SELECT count(DISTINCT client_ip) FROM decisions").fetchone()[0]
            conn.close()
            dlog = {"by_code": {f"{c} {s}": n for c, s, n in by_code}, "distinct_client_ips": distinct_ips}
        except sqlite3.Error as exc:
            dlog = {"error": str(exc)}
        print(f"responses: {dict(sorted(tally.items()))}")
        print(f"decision log: {dlog}")
        wrong = sum(v for k, v in tally.items() if not k.endswith(" ok"))
        if wrong:
            print("!" * 78)
            print(f"!!! {wrong} responses were not what the plan expects, e.g.:")
            for m in mismatches[:10]:
                print(f"!!!   {m}")
            print("!" * 78)
        if dlog.get("distinct_client_ips") not in (None, len(clients)):
            print(
                f"!!! the log saw {dlog.get('distinct_client_ips')} distinct client addresses, "
                f"expected {len(clients)} (X-Forwarded-For not believed?)"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = args.out or h.RESULTS_DIR / f"memory-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "benchmark": "memory",
                    "source": h.source_state(),
                    "timestamp": stamp,
                    "clients": len(clients),
                    "mix": dict(kinds),
                    "concurrency": args.concurrency,
                    "target_mb": TARGET_MB,
                    "elapsed_s": round(elapsed, 1),
                    "rate_per_s": round(len(clients) / elapsed),
                    "peak_rss_mb": round(peak, 1),
                    "vmhwm_sum_mb": round(hwm, 1),
                    "samples": samples,
                    "responses": dict(tally),
                    "mismatches": mismatches,
                    "decision_log": dlog,
                    "workers": workers,
                },
                indent=2,
            )
        )
        print(f"results: {out}")
        return 0 if not wrong and peak <= TARGET_MB else 1
    finally:
        h.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100_000)
    p.add_argument("--step", type=int, default=20_000, help="clients between RSS checkpoints")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--settle", type=float, default=5.0, help="idle seconds before the last sample")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--purpose", action="store_true", help="a purpose on the route: the semantic model loaded and used")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
