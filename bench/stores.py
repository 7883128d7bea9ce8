"""Store and accounting overhead, measured in one run: memory vs Redis, budgets on/off.

Targets (issues 5 and 6):

* with budgets on (memory store), tokenward keeps >= 0.85 of the bare pass-through's
  throughput — printed beside the figure without budgets, measured in the same run;
* throughput on Redis vs the memory store;
* Redis round trips per allowed request <= 2 — counted exactly, in-process: the guard
  runs against a real redis-server and the store counts the pipelines it sends.

    .venv/bin/python bench/stores.py [--duration 10] [--quick]

Servers: the demo upstream, the bare pass-through, a redis-server on a free port, and
four gateways (memory, memory + budgets, redis, redis + budgets) that share a key ring,
so pre-solved proofs work on any of them. JSON requests at concurrency 16.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
from gateway import Bench, log

BUDGETS = """\
prices: {"demo-1": {input: 2.5, output: 10}, default: {input: 15, output: 75}}
budgets:
  - {name: device-hour, key: device, usd: 1.0e9, window: 3600}
  - {name: subnet-hour, key: subnet, usd: 1.0e9, window: 3600}
  - {name: global-day, key: global, usd: 1.0e12, window: 86400}
"""


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = h.free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return proc, f"redis://127.0.0.1:{port}"
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


class StoresBench(Bench):
    def start(self) -> None:
        logs = self.tmp / "logs"
        logs.mkdir()
        self.redis, self.redis_url = start_redis(self.tmp)
        log(f"temp dir {self.tmp}; redis at {self.redis_url}")
        self.up = h.start_upstream(logs, chunks=20)
        self.pt = h.start_passthrough(logs, self.up.url)
        self.targets = {"direct": self.up, "pass": self.pt}
        variants = {
            "memory": "",
            "memory+budgets": BUDGETS,
            "redis": f'store: "{self.redis_url}?prefix=plain:"\n',
            "redis+budgets": f'store: "{self.redis_url}?prefix=budget:"\n' + BUDGETS,
        }
        for name, extra in variants.items():
            policy = h.write_policy(
                self.tmp / f"{name}.yaml", self.tmp / f"{name}.db", difficulty=2, ttl=600,
                extra=h.LOAD_GENERATOR_POLICY + extra,
            )  # fmt: skip
            self.targets[name] = h.start_gateway(logs, policy, self.up.url, self.mint.key_b64)
        self.gw = self.targets["memory"]

    def measure(self, rounds: int) -> dict[str, list[h.WrkResult]]:
        plain = self.plain_data("json")
        out: dict[str, list[h.WrkResult]] = {name: [] for name in self.targets if name != "direct"}
        for r in range(rounds):
            for name in out:
                if name == "pass":
                    out[name].append(self.run("pass", "pass", "json", 16, plain, wrap=True, round_no=r))
                    continue
                expected = max([x.rps for x in out["pass"]] or [2000.0])
                data = self.proof_data("json", int(self.duration * expected * 1.5) + 500)
                out[name].append(self.run(name, name, "json", 16, data, wrap=False, round_no=r))
                shutil.rmtree(data, ignore_errors=True)
        return out


async def round_trips(redis_url: str, n: int = 500) -> dict[str, float]:
    """Allowed requests through the guard on a real Redis: pipelines per request."""
    import orjson

    from tokenward.facts import RequestFacts, parse_call
    from tokenward.guard import Guard, RequestOutcome
    from tokenward.money.usage import Usage
    from tokenward.policy import parse_policy
    from tokenward.proof import KeyRing, issue_challenge, solve
    from tokenward.store.redis import open_redis_store

    out = {}
    for label, extra in (("without budgets", {}), ("with budgets", {"budgets": [
        {"name": "device-hour", "key": "device", "usd": 1e9, "window": 3600},
        {"name": "global-day", "key": "global", "usd": 1e12, "window": 86400}]})):  # fmt: skip
        store = open_redis_store(f"{redis_url}?prefix=rt{len(out)}:")
        policy = parse_policy({"proof": {"difficulty": 0}, "log": "sqlite:///unused.db", **extra})
        guard = Guard(policy, store=store, keys=KeyRing.generate())
        route = policy.route_for(h.ROUTE)
        assert route is not None
        before = store.stats()["pipelines"]
        allowed = 0
        for i in range(n):
            body = orjson.dumps({"model": "demo-1", "messages": [{"role": "user", "content": f"q{i}"}]})
            c = issue_challenge(guard.keys, route.path, 0, 600, time.time())
            headers = {"content-type": "application/json", "tokenward-proof": f"v1.{c.token}.{solve(c.token, body, 0)}"}
            facts = RequestFacts(
                request_id=f"r{i}", received_at=time.time(), method="POST", path=route.path,
                client_ip=f"10.1.{i % 200}.{i % 250}", headers=headers, raw_headers=[], body=body, route=route,
                call=parse_call(route.api, body),  # type: ignore[arg-type]
            )  # fmt: skip
            decision = await guard.check(facts)
            outcome = RequestOutcome()
            if decision.forwards:
                allowed += 1
                outcome.status, outcome.usage = 200, Usage(20, 40, True)
            await guard.finish(facts, decision, outcome, 0.0, 0.0)
            await guard.settled()
        pipelines = store.stats()["pipelines"] - before
        await store.close()
        out[label] = pipelines / max(allowed, 1)
        log(f"  {label}: {pipelines} pipelines for {allowed} allowed requests")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 s runs, one round")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 3.0, 1
    bench = StoresBench(argparse.Namespace(duration=args.duration))
    started = time.time()
    try:
        bench.start()
        log("warm-up")
        plain = bench.plain_data("json")
        bench.run("warmup", "pass", "json", 16, plain, wrap=True, duration=1, record=False)
        results = bench.measure(args.rounds)
        log("round trips, in-process against the same redis-server")
        trips = asyncio.run(round_trips(bench.redis_url))
    finally:
        h.stop_all()
        bench.redis.terminate()
        shutil.rmtree(bench.tmp, ignore_errors=True)

    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[name])

    def cpu(name: str) -> float:
        rows = [r for r in bench.runs if r["scenario"] == name]
        return statistics.median(r["cpu_us_per_req"].get("server", 0.0) for r in rows)

    print(f"\nstores and accounting, JSON c16, {args.duration:g} s x {args.rounds} rounds (median)")
    print(f"{'target':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'proxy CPU µs/req':>17}")
    for name in results:
        rps, p50, p99 = med(name, "rps"), med(name, "p50_ms"), med(name, "p99_ms")
        print(f"{name:<16} {rps:8.0f} {p50:8.2f} {p99:8.2f} {cpu(name):17.0f}")
    pass_rps = med("pass", "rps")
    print("\nratios (target)")
    print(f"  memory+budgets / pass-through   {med('memory+budgets', 'rps') / pass_rps:.3f}   (>= 0.85)")
    print(f"  memory         / pass-through   {med('memory', 'rps') / pass_rps:.3f}")
    print(f"  memory+budgets / memory         {med('memory+budgets', 'rps') / med('memory', 'rps'):.3f}")
    print(f"  redis          / memory         {med('redis', 'rps') / med('memory', 'rps'):.3f}")
    print(f"  redis+budgets  / memory+budgets {med('redis+budgets', 'rps') / med('memory+budgets', 'rps'):.3f}")
    print("\nRedis round trips per allowed request (target <= 2)")
    for label, value in trips.items():
        print(f"  {label:<16} {value:.2f}")
    for w in bench.warnings:
        print(f"!!! {w}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = h.RESULTS_DIR / f"stores-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"benchmark": "stores", "runs": bench.runs, "round_trips": trips,
                           "elapsed_s": round(time.time() - started, 1), "source": h.source_state()}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
