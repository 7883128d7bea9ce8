"""Flood isolation: does a client with proofs keep being served while requests without
one flood the gateway at the load generator's full rate?

Starts the demo upstream and tokenward (as gateway.py does: enforce mode, SQLite
decision log, the load-generator policy so the one address the benchmark sends from is
not rate limited), then measures one **proved client**: ``--rate`` requests per second
(50 by default), open loop (each request leaves at its scheduled time, whether or not
the earlier ones are answered, and its latency counts from that time, so queueing is
not hidden), every request with its own proof solved for its own body. Two phases:

1. **quiet** — the proved client alone, ``--duration`` seconds;
2. **flood** — the same, while wrk sends requests *without* a proof (``-t2 -c64``, as fast
   as the gateway answers them) for the whole phase.

Printed: the proved client's success (2xx / sent), p50, p99 and max latency in each
phase, the p99 the flood added, and the flood's own rate. The issue's targets: 100 %
success and at most 50 ms of added p99 while the flood runs at full rate.

    .venv/bin/python bench/flood.py [--duration 15] [--rate 50] [--flood-connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def proved_client(url: str, calls: list[tuple[str, bytes]], rate: float) -> dict[str, object]:
    """Send ``calls`` at ``rate`` per second, open loop; latencies from each scheduled time."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(due: float, proof: str, body: bytes) -> None:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            headers = {"content-type": "application/json", "tokenward-proof": proof}
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    key = str(resp.status)
            except Exception as exc:  # a timeout or a reset is a failure, counted by kind
                key = type(exc).__name__
            latencies.append((time.perf_counter() - due) * 1000)
            statuses[key] = statuses.get(key, 0) + 1

        start = time.perf_counter() + 0.2
        await asyncio.gather(*(one(start + i / rate, p, b) for i, (p, b) in enumerate(calls)))
    ok = sum(n for k, n in statuses.items() if k.startswith("2"))
    return {
        "sent": len(calls),
        "ok": ok,
        "success": ok / len(calls) if calls else 0.0,
        "statuses": statuses,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds per phase (default 15)")
    p.add_argument("--rate", type=float, default=50.0, help="the proved client's requests per second")
    p.add_argument("--flood-connections", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tokenward-flood-"))
    policy = h.write_policy(tmp / "policy.yaml", tmp / "decisions.db", extra=h.LOAD_GENERATOR_POLICY)
    mint = h.ProofMint()
    up = h.start_upstream(tmp)
    gw = h.start_gateway(tmp, policy, up.url, mint.key_b64)
    url = gw.url + h.ROUTE
    per_phase = int(args.duration * args.rate)
    h.write_slices(tmp / "plain", 2, ((None, h.chat_body(i, stream=False, tag="flood")) for i in range(4000)))
    try:
        mint.use_gateway(gw.url)
        mint.prefetch(2 * per_phase + 10)
        bodies = [h.chat_body(i, stream=False, tag="proved") for i in range(2 * per_phase + 10)]
        calls = [(mint.proof(b), b) for b in bodies]  # each proof is used once
        asyncio.run(proved_client(url, calls[2 * per_phase :], args.rate))  # warm-up: connections, first decisions
        quiet = asyncio.run(proved_client(url, calls[:per_phase], args.rate))

        async def flooded() -> tuple[dict[str, object], h.WrkResult]:
            wrk = asyncio.create_task(asyncio.to_thread(
                h.run_wrk, "flood", url, tmp / "plain", connections=args.flood_connections,
                duration=args.duration + 3, wrap=True,
            ))  # fmt: skip
            await asyncio.sleep(1.0)  # the flood is at full rate before the client starts
            client = await proved_client(url, calls[per_phase : 2 * per_phase], args.rate)
            return client, await wrk

        flood, wrk = asyncio.run(flooded())
    finally:
        gw.stop()
        up.stop()

    print(f"flood isolation — a proved client at {args.rate:g} req/s, {args.duration:g} s per phase;")
    print(f"flood: wrk -t2 -c{args.flood_connections}, requests without a proof: "
          f"{wrk.rps:,.0f} req/s, {wrk.requests - wrk.non2xx} not refused (must be 0)\n")  # fmt: skip
    print(f"{'phase':8} {'success':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses")
    for name, r in (("quiet", quiet), ("flood", flood)):
        print(f"{name:8} {r['success']:9.2%} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['max_ms']:8.2f}  {r['statuses']}")
    added = float(flood["p99_ms"]) - float(quiet["p99_ms"])  # type: ignore[arg-type]
    ok = flood["success"] == 1.0 and added <= 50.0
    print(f"\nadded p99 under the flood: {added:+.2f} ms (target ≤ 50 ms); success {flood['success']:.2%} "
          f"(target 100 %): {'MEETS' if ok else 'MISSES'} the targets")  # fmt: skip
    out = args.out or h.RESULTS_DIR / f"flood-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quiet": quiet, "flood": flood, "wrk": wrk.as_dict(), "args": vars(args)},
                              default=str, indent=2))  # fmt: skip
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
