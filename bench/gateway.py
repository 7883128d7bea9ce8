"""Gateway overhead, as ratios measured in one run (see bench/README.md).

Under one load generator (wrk + bench/wrk_requests.lua), for JSON and SSE requests to
POST /v1/chat/completions at concurrency 16 and 64:

  direct       wrk -> demo upstream
  pass         wrk -> bench/passthrough.py (granian + aiohttp, no tokenward) -> upstream
  tokenward    wrk -> tokenward serve (enforce, difficulty 2, SQLite decision log) -> upstream,
               every request carrying its own pre-solved single-use proof for its exact body

and the refusal path: requests without a proof to tokenward (401 + fresh challenge)
against bench/refuse401.py (a constant 401 on the same server stack).

    .venv/bin/python bench/gateway.py              # ~4.5 min
    .venv/bin/python bench/gateway.py --quick      # 3 s runs, one round: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

# Issue 17's targets (they replace those of issues 2, 3 and 5).
TARGET_THROUGHPUT = {"json": 0.75, "sse": 0.80}  # tokenward req/s / pass-through req/s
TARGET_ADDED_P50_MS = 0.5  # tokenward p50 - pass-through p50, at concurrency 1
TARGET_REFUSAL = 0.50  # tokenward 401 req/s / trivial 401 req/s
TARGET_SSE_EVENT_US = 3.0  # CPU a stream adds per event, beyond what a JSON call adds
THREADS = 2
FOREIGN_LOAD_LIMIT = 0.15  # cores used by processes outside the benchmark: above, a run is noisy
PLAIN_ROWS = 4000  # distinct bodies for runs without proofs (walked in a loop)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"content-type": "application/json", "x-demo-chunk-delay": "0", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.duration: float = args.duration
        self.mint = h.ProofMint(difficulty=2, ttl=600)
        self.tmp = Path(tempfile.mkdtemp(prefix="tokenward-bench-"))
        self.runs: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.noisy: list[str] = []
        self.proof_batch = 0

    # -- servers -------------------------------------------------------------------
    def start(self) -> None:
        logs = self.tmp / "logs"
        logs.mkdir()
        self.db = self.tmp / "decisions.db"
        policy = h.write_policy(self.tmp / "policy.yaml", self.db, difficulty=2, ttl=600, extra=h.LOAD_GENERATOR_POLICY)
        log(f"temp dir {self.tmp}; starting demo upstream, pass-through, tokenward, 401 app")
        self.up = h.start_upstream(logs, chunks=20)
        self.pt = h.start_passthrough(logs, self.up.url)
        self.gw = h.start_gateway(logs, policy, self.up.url, self.mint.key_b64)
        self.mint.use_gateway(self.gw.url)
        self.rf = h.start_refuser(logs)
        self.targets = {"direct": self.up, "pass": self.pt, "tokenward": self.gw, "trivial401": self.rf}

    def sanity(self) -> None:
        """One request of each kind, checked by hand, before measuring anything."""
        url = h.ROUTE
        body = h.chat_body(0, stream=False, tag="sanity")
        for name in ("direct", "pass"):
            status, _ = post(self.targets[name].url + url, body)
            assert status == 200, f"{name}: expected 200, got {status}"
        proof = self.mint.proof(body)
        status, _ = post(self.gw.url + url, body, {"tokenward-proof": proof})
        assert status == 200, f"tokenward with a fresh proof: expected 200, got {status}"
        status, reply = post(self.gw.url + url, body, {"tokenward-proof": proof})
        assert status == 401 and b"proof_replayed" in reply, f"replay: got {status} {reply[:200]!r}"
        status, reply = post(self.gw.url + url, body)
        assert status == 401 and b"proof_required" in reply, f"no proof: got {status} {reply[:200]!r}"
        status, fake = post(self.rf.url + url, body)
        assert status == 401, f"trivial401: got {status}"
        if abs(len(fake) - len(reply)) > 40:
            self.warnings.append(f"401 body sizes differ: tokenward {len(reply)} B, trivial {len(fake)} B")
        # A streamed request through the gateway arrives complete.
        sbody = h.chat_body(0, stream=True, tag="sanity")
        status, streamed = post(self.gw.url + url, sbody, {"tokenward-proof": self.mint.proof(sbody)})
        assert status == 200 and streamed.rstrip().endswith(b"data: [DONE]"), "SSE through tokenward"
        self.sse_events = streamed.count(b"data: ")
        self.sse_bytes = len(streamed)
        log(f"sanity ok (SSE reply: {self.sse_events} events, {self.sse_bytes} bytes)")

    # -- data ------------------------------------------------------------------------
    def plain_data(self, kind: str) -> Path:
        d = self.tmp / f"plain-{kind}"
        if not d.exists():
            rows = ((None, h.chat_body(i, stream=kind == "sse")) for i in range(PLAIN_ROWS))
            h.write_slices(d, THREADS, rows)
        return d

    def proof_data(self, kind: str, n: int) -> Path:
        self.proof_batch += 1
        d = self.tmp / f"proofs-{self.proof_batch}-{kind}"
        t0 = time.perf_counter()
        self.mint.prefetch(n)

        def rows():  # distinct body and a fresh challenge for every request
            for i in range(n):
                body = h.chat_body(i, stream=kind == "sse", tag=f"b{self.proof_batch}")
                yield self.mint.proof(body), body

        h.write_slices(d, THREADS, rows())
        log(f"  pre-solved {n} proofs in {time.perf_counter() - t0:.1f}s")
        return d

    # -- one wrk run -------------------------------------------------------------------
    def run(
        self,
        scenario: str,
        target: str,
        kind: str,
        conc: int,
        data: Path,
        *,
        wrap: bool,
        duration: float | None = None,
        round_no: int = 0,
        record: bool = True,
    ) -> h.WrkResult:
        server = self.targets[target]
        watch = {"server": server.pid, "upstream": self.up.pid}
        if target == "direct":
            watch = {"upstream": self.up.pid}
        elif target == "trivial401":
            watch = {"server": server.pid}
        cpu0 = {k: h.tree_cpu_seconds(p) for k, p in watch.items()}
        all_pids = [s.pid for s in self.targets.values() if s.proc.poll() is None]
        busy0, own0, t0 = h.machine_busy_seconds(), h.own_cpu_seconds(all_pids), time.monotonic()
        res = h.run_wrk(
            f"{scenario} {kind} c{conc}",
            server.url + h.ROUTE,
            data,
            connections=conc,
            duration=duration or self.duration,
            threads=min(THREADS, conc),  # wrk needs a connection per thread
            wrap=wrap,
        )
        cpu = {k: h.tree_cpu_seconds(p) - cpu0[k] for k, p in watch.items()}
        wall = time.monotonic() - t0
        # CPU the rest of the machine used meanwhile (other people's processes): noise
        foreign = max(0.0, (h.machine_busy_seconds() - busy0) - (h.own_cpu_seconds(all_pids) - own0))
        foreign_cores = foreign / wall
        row = {
            "scenario": scenario,
            "target": target,
            "kind": kind,
            "connections": conc,
            "round": round_no,
            **res.as_dict(),
            "cpu_us_per_req": {
                **{k: v * 1e6 / max(res.requests, 1) for k, v in cpu.items()},
                "wrk": res.wrk_cpu_s * 1e6 / max(res.requests, 1),
            },
            "foreign_load_cores": round(foreign_cores, 3),
        }
        problems = []
        expect_all_refused = "refusal" in scenario or target == "trivial401"
        if expect_all_refused:
            if res.non2xx != res.requests:
                problems.append(f"{res.requests - res.non2xx} responses were 2xx/3xx, expected all 401")
        elif res.non2xx:
            problems.append(f"{res.non2xx} non-2xx responses of {res.requests}")
        if res.exhausted:
            problems.append(f"ran out of pre-solved proofs: {res.exhausted} requests replayed one")
        if foreign_cores > FOREIGN_LOAD_LIMIT and record:
            self.noisy.append(f"{res.label} ({target}): other processes used {foreign_cores:.2f} cores")
        bad_sockets = {k: v for k, v in res.socket_errors.items() if v}
        if bad_sockets:
            problems.append(f"socket errors {bad_sockets}")
        row["valid"] = not problems
        row["problems"] = problems
        if problems:
            msg = f"{res.label} ({target}): " + "; ".join(problems)
            self.warnings.append(msg)
            log("!" * 78 + f"\n!!! INVALID RUN: {msg}\n" + "!" * 78)
        log(
            f"  {scenario:<12} {kind:<4} c{conc:<3} {res.rps:8.0f} req/s  p50 {res.p50_ms:6.2f} ms"
            f"  p99 {res.p99_ms:7.2f} ms  non-2xx {res.non2xx}  (other load {foreign_cores:.2f} cores)"
        )
        if record:
            self.runs.append(row)
        return res

    # -- the plan ----------------------------------------------------------------------
    def warm_up(self) -> None:
        log("warm-up (1 s per target, not recorded)")
        plain = self.plain_data("json")
        for target in ("direct", "pass", "trivial401"):
            self.run("warmup", target, "json", 16, plain, wrap=True, duration=1, record=False)
        self.run("warmup-refusal", "tokenward", "json", 16, plain, wrap=True, duration=1, record=False)
        proofs = self.proof_data("json", 6000)
        self.run("warmup", "tokenward", "json", 16, proofs, wrap=False, duration=1, record=False)

    def measure_cell(self, kind: str, conc: int) -> None:
        log(f"{kind.upper()} c{conc}")
        plain = self.plain_data(kind)
        direct = self.run("direct", "direct", kind, conc, plain, wrap=True)
        pass_rps: list[float] = []
        for r in range(self.args.rounds):
            # ABBA: alternate which of the pair runs first, so drift cancels out
            order = ("pass", "tokenward") if r % 2 == 0 else ("tokenward", "pass")
            for scenario in order:
                if scenario == "pass":
                    pass_rps.append(self.run("pass", "pass", kind, conc, plain, wrap=True, round_no=r).rps)
                else:
                    # enough single-use proofs for the run: duration x expected rate x 1.5
                    expected = max([*pass_rps, direct.rps * 0.5])
                    n = int(self.duration * expected * 1.5) + 500
                    data = self.proof_data(kind, n)
                    self.run("tokenward", "tokenward", kind, conc, data, wrap=False, round_no=r)
                    shutil.rmtree(data, ignore_errors=True)

    def measure_refusal(self, conc: int) -> None:
        log(f"refusal c{conc}")
        plain = self.plain_data("json")
        for r in range(self.args.refusal_rounds):
            order = ("trivial401", "tokenward") if r % 2 == 0 else ("tokenward", "trivial401")
            for target in order:
                self.run(f"refusal-{target}", target, "json", conc, plain, wrap=True, round_no=r)

    # -- after ---------------------------------------------------------------------------
    def decision_log(self) -> dict[str, Any]:
        """Stop the gateway (its log drains on shutdown) and count what it decided."""
        rc = self.gw.stop(timeout=30)
        out: dict[str, Any] = {"gateway_exit_code": rc, "by_code": {}}
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            rows = conn.execute(
                "SELECT coalesce(code, action), status, count(*) FROM decisions GROUP BY 1, 2"
            ).fetchall()
            conn.close()
        except sqlite3.Error as exc:
            self.warnings.append(f"cannot read the decision log: {exc}")
            return out
        for code, status, n in rows:
            out["by_code"][f"{code} {status}"] = n
        unexpected = {
            k: v
            for k, v in out["by_code"].items()
            if not (
                k in ("allow 200", "allow 0", "proof_required 401") or (k == "proof_replayed 401" and v == 1)
            )  # the sanity check's replay
        }
        # "allow 0": requests cut off when wrk stopped mid-response (no status recorded).
        out["unexpected"] = unexpected
        if unexpected:
            self.warnings.append(f"decision log holds unexpected outcomes: {unexpected}")
        proof_sent = sum(
            r["requests"] for r in self.runs if r["target"] == "tokenward" and not r["scenario"].startswith("refusal")
        )
        out["allowed_logged"] = sum(v for k, v in out["by_code"].items() if k.startswith("allow"))
        out["proof_requests_completed_by_wrk"] = proof_sent
        return out

    def summarize(self) -> dict[str, Any]:
        def pick(scenario: str, kind: str, conc: int) -> list[dict[str, Any]]:
            return [
                r for r in self.runs if r["scenario"] == scenario and r["kind"] == kind and r["connections"] == conc
            ]

        def med(rows: list[dict[str, Any]], key: str) -> float:
            return statistics.median(r[key] for r in rows)

        cells = []
        for kind in self.args.kinds:
            for conc in self.args.connections:
                cell: dict[str, Any] = {"kind": kind, "connections": conc}
                for scenario in ("direct", "pass", "tokenward"):
                    rows = pick(scenario, kind, conc)
                    cell[scenario] = {
                        "rps": med(rows, "rps"),
                        "p50_ms": med(rows, "p50_ms"),
                        "p99_ms": med(rows, "p99_ms"),
                        "runs": len(rows),
                        "valid": all(r["valid"] for r in rows),
                        "cpu_us_per_req": {
                            k: statistics.median(r["cpu_us_per_req"][k] for r in rows)
                            for k in rows[0]["cpu_us_per_req"]
                        },
                    }
                p, t = cell["pass"], cell["tokenward"]
                cell["throughput_ratio"] = t["rps"] / p["rps"]
                cell["added_p50_ms"] = t["p50_ms"] - p["p50_ms"]
                cell["pass_vs_direct"] = p["rps"] / cell["direct"]["rps"]
                # Noise-robust companion: when every process is CPU-bound on the same cores,
                # req/s is inversely proportional to the CPU all of them spend per request.
                cell["cpu_model_ratio"] = sum(p["cpu_us_per_req"].values()) / sum(t["cpu_us_per_req"].values())
                cell["valid"] = p["valid"] and t["valid"] and cell["direct"]["valid"]
                cells.append(cell)
        refusal = []
        for conc in self.args.connections:
            f = [r for r in self.runs if r["scenario"] == "refusal-trivial401" and r["connections"] == conc]
            t = [r for r in self.runs if r["scenario"] == "refusal-tokenward" and r["connections"] == conc]
            refusal.append(
                {
                    "connections": conc,
                    "trivial401": {
                        "rps": med(f, "rps"),
                        "p50_ms": med(f, "p50_ms"),
                        "p99_ms": med(f, "p99_ms"),
                        "cpu_us_per_req": statistics.median(r["cpu_us_per_req"]["server"] for r in f),
                    },
                    "tokenward": {
                        "rps": med(t, "rps"),
                        "p50_ms": med(t, "p50_ms"),
                        "p99_ms": med(t, "p99_ms"),
                        "cpu_us_per_req": statistics.median(r["cpu_us_per_req"]["server"] for r in t),
                    },
                    "ratio": med(t, "rps") / med(f, "rps"),
                    "cpu_model_ratio": statistics.median(
                        r["cpu_us_per_req"]["server"] + r["cpu_us_per_req"]["wrk"] for r in f
                    )
                    / statistics.median(r["cpu_us_per_req"]["server"] + r["cpu_us_per_req"]["wrk"] for r in t),
                    "valid": all(r["valid"] for r in f + t),
                }
            )
        # What a stream costs beyond a JSON call, per event: the CPU tokenward adds to an SSE
        # call over the pass-through, less what it adds to a JSON call (the decision), over
        # the events of one reply.
        sse_event_us = {}
        by = {(c["kind"], c["connections"]): c for c in cells}
        for conc in self.args.connections:
            sse, js = by.get(("sse", conc)), by.get(("json", conc))
            if sse is not None and js is not None and self.sse_events:
                added = [c["tokenward"]["cpu_us_per_req"]["server"] - c["pass"]["cpu_us_per_req"]["server"]
                         for c in (sse, js)]  # fmt: skip
                sse_event_us[conc] = (added[0] - added[1]) / self.sse_events
        return {"cells": cells, "refusal": refusal, "sse_event_us": sse_event_us}

    def print_report(self, summary: dict[str, Any], dlog: dict[str, Any]) -> None:
        names = {
            "direct": "direct to upstream",
            "pass": "bare pass-through",
            "tokenward": "tokenward (proofs)",
        }
        print()
        print(
            f"tokenward gateway benchmark — wrk -t{THREADS}, {self.duration:g} s per run, "
            f"{self.args.rounds} round(s) of pass/tokenward (median shown); "
            f"SSE = {self.sse_events} events, {self.sse_bytes} B per reply"
        )
        print()
        hdr = (
            f"{'scenario':<20} {'kind':<5} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
            f"   {'CPU µs/req: proxy / upstream / wrk':<34}"
        )
        print(hdr)
        print("-" * len(hdr))
        for cell in summary["cells"]:
            for scenario in ("direct", "pass", "tokenward"):
                s = cell[scenario]
                cpu = s["cpu_us_per_req"]
                cpu_txt = (
                    f"{cpu['server']:6.0f} / {cpu['upstream']:6.0f} / {cpu['wrk']:4.0f}"
                    if "server" in cpu
                    else f"{'-':>6} / {cpu['upstream']:6.0f} / {cpu['wrk']:4.0f}"
                )
                flag = "" if s["valid"] else "  INVALID"
                print(
                    f"{names[scenario]:<20} {cell['kind'].upper():<5} {cell['connections']:>4} "
                    f"{s['rps']:8.0f} {s['p50_ms']:8.2f} {s['p99_ms']:8.2f}   {cpu_txt}{flag}"
                )
            print()
        print("tokenward / bare pass-through")
        hdr2 = (
            f"{'kind':<5} {'conc':>4}  {'throughput':>10} {'target':>8}  {'added p50':>10} {'target':>8}"
            f"  {'pass/direct':>11}  {'CPU-model':>9}"
        )
        print(hdr2)
        print("-" * len(hdr2))
        for cell in summary["cells"]:
            target = TARGET_THROUGHPUT[cell["kind"]]
            ok_t = cell["throughput_ratio"] >= target
            ok_l = cell["added_p50_ms"] <= TARGET_ADDED_P50_MS
            latency = "ok" if ok_l else "MISS" if cell["connections"] == 1 else "-"  # the target is at c1
            print(
                f"{cell['kind'].upper():<5} {cell['connections']:>4}  {cell['throughput_ratio']:10.3f} "
                f"{'≥' + format(target, '.2f'):>6} {'ok' if ok_t else 'MISS':<4}"
                f"{cell['added_p50_ms']:+8.2f} ms {'≤' + format(TARGET_ADDED_P50_MS, '.1f') + ' ms':>8} "
                f"{latency:<4} {cell['pass_vs_direct']:8.3f}  {cell['cpu_model_ratio']:11.3f}"
                + ("" if cell["valid"] else "   INVALID")
            )
        print("(the added-p50 target applies at concurrency 1: --connections 1)")
        for conc, per_event in summary.get("sse_event_us", {}).items():
            ok = per_event <= TARGET_SSE_EVENT_US
            print(
                f"CPU a stream adds per SSE event, c{conc}: {per_event:+.1f} µs "
                f"(target ≤ {TARGET_SSE_EVENT_US:g}: {'ok' if ok else 'MISS'}) — (tokenward - pass) CPU per SSE call, "
                f"less the same for JSON, over {self.sse_events} events"
            )
        print()
        print(
            "CPU-model: (CPU per request of pass-through + upstream + wrk) / (the same with tokenward):"
            " the throughput\nratio to expect on an otherwise idle machine; steadier than req/s when"
            " other processes share the cores."
        )
        print()
        print("refusal path: no proof -> 401 + fresh challenge (tokenward) vs constant 401 (same server)")
        hdr3 = (
            f"{'conc':>4} {'trivial 401 req/s':>18} {'tokenward 401 req/s':>20} {'ratio':>7} {'target':>7}"
            f"      {'CPU µs/req (trivial / tokenward)'}  {'CPU-model':>9}"
        )
        print(hdr3)
        print("-" * len(hdr3))
        for r in summary["refusal"]:
            ok = r["ratio"] >= TARGET_REFUSAL
            print(
                f"{r['connections']:>4} {r['trivial401']['rps']:18.0f} {r['tokenward']['rps']:20.0f} "
                f"{r['ratio']:7.3f} {'≥' + format(TARGET_REFUSAL, '.2f'):>7} {'ok' if ok else 'MISS'}"
                f"  {r['trivial401']['cpu_us_per_req']:8.0f} / {r['tokenward']['cpu_us_per_req']:6.0f}"
                f"          {r['cpu_model_ratio']:9.3f}" + ("" if r["valid"] else "   INVALID")
            )
        print()
        print(
            f"decision log: {dlog.get('by_code')}  (wrk completed "
            f"{dlog.get('proof_requests_completed_by_wrk')} "
            f"proof-carrying requests; log allowed {dlog.get('allowed_logged')})"
        )
        if self.noisy:
            print()
            print(
                f"noise: {len(self.noisy)} run(s) shared the machine with other busy processes "
                f"(> {FOREIGN_LOAD_LIMIT} cores); ratios are less reliable:"
            )
            for n in self.noisy:
                print(f"  {n}")
        if self.warnings:
            print()
            print("!" * 78)
            print("!!! WARNINGS — figures marked INVALID must not be used:")
            for w in self.warnings:
                print(f"!!!   {w}")
            print("!" * 78)


def main() -> int:
    parser = argparse.ArgumentParser(description="tokenward gateway overhead benchmark (ratios in one run)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, one round: a smoke test")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="pass/tokenward pairs per cell, alternating order (default 2; median)",
    )
    parser.add_argument(
        "--refusal-rounds",
        type=int,
        default=1,
        help="trivial-401/tokenward pairs per concurrency (default 1)",
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--kinds", nargs="+", choices=["json", "sse"], default=["json", "sse"])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, decision db)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.refusal_rounds = 3.0, 1, 1
    started = time.time()
    bench = Bench(args)
    summary: dict[str, Any] = {}
    dlog: dict[str, Any] = {}
    try:
        bench.start()
        bench.sanity()
        bench.warm_up()
        for kind in args.kinds:
            for conc in args.connections:
                bench.measure_cell(kind, conc)
        for conc in args.connections:
            bench.measure_refusal(conc)
        dlog = bench.decision_log()
        summary = bench.summarize()
    finally:
        h.stop_all()
        if not args.keep:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    bench.print_report(summary, dlog)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or h.RESULTS_DIR / f"gateway-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "gateway",
        "timestamp": stamp,
        "elapsed_s": round(time.time() - started, 1),
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "refusal_rounds": args.refusal_rounds,
            "connections": args.connections,
            "kinds": args.kinds,
            "wrk_threads": THREADS,
            "difficulty": 2,
            "ttl": 600,
            "sse_events_per_reply": getattr(bench, "sse_events", None),
        },
        "targets": {
            "throughput_ratio": TARGET_THROUGHPUT,
            "added_p50_ms": TARGET_ADDED_P50_MS,
            "refusal_ratio": TARGET_REFUSAL,
            "sse_event_us": TARGET_SSE_EVENT_US,
        },
        "source": h.source_state(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "summary": summary,
        "decision_log": dlog,
        "warnings": bench.warnings,
        "noisy_runs": bench.noisy,
        "runs": bench.runs,
    }
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nresults: {out}  ({doc['elapsed_s']:.0f} s)")
    valid = all(c["valid"] for c in summary["cells"]) and all(r["valid"] for r in summary["refusal"])
    return 0 if valid and not bench.warnings else 1


if __name__ == "__main__":
    sys.exit(main())
