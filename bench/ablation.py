"""What each piece of tokenward costs per request: the same load against the gateway with
pieces switched off (bench/_variants.py), the bare pass-through and the trivial 401 app.

CPU µs per request (user + system time of the server's process tree, all threads,
divided by the requests wrk completed) is the steadier figure on a shared 2-core
machine; req/s is printed beside it. Not a substitute for bench/gateway.py.

    .venv/bin/python bench/ablation.py [--duration 8] [--rounds 2] [--conc 64] [--kind json]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

VARIANTS = ("full", "nolog", "nowatch", "bare")


def start_variant(tmp: Path, variant: str, upstream: str, key: str) -> h.Server:
    policy = h.write_policy(
        tmp / f"policy-{variant}.yaml", tmp / f"decisions-{variant}.db", extra=h.LOAD_GENERATOR_POLICY
    )
    port = h.free_port()
    s = h.Server(
        f"tokenward-{variant}",
        [
            h.PYTHON,
            str(h.BENCH_DIR / "_variants.py"),
            "--variant",
            variant,
            "--policy",
            str(policy),
            "--upstream",
            upstream,
            "--port",
            str(port),
        ],
        port,
        env={"TOKENWARD_KEYS": key},
        log_dir=tmp,
    )
    s.wait_ready("/.tokenward/health")
    return s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--conc", type=int, default=64)
    p.add_argument("--kind", choices=["json", "sse"], default="json")
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=["full", "nolog", "nowatch", "bare", "logqueue", "logrows", "noguard", "hollow", "plumb"],
    )
    p.add_argument("--no-refusals", action="store_true")
    args = p.parse_args()
    variants = args.variants
    tmp = Path(tempfile.mkdtemp(prefix="tokenward-ablation-"))
    mint = h.ProofMint()
    stream = args.kind == "sse"
    rows: dict[str, list[tuple[float, float, float]]] = {}
    try:
        up = h.start_upstream(tmp)
        servers = {"pass": h.start_passthrough(tmp, up.url)}
        for v in variants:
            servers[v] = start_variant(tmp, v, up.url, mint.key_b64)
        servers["trivial401"] = h.start_refuser(tmp)
        h.write_slices(tmp / "plain", 2, ((None, h.chat_body(i, stream=stream)) for i in range(4000)))
        batch = 0

        def measure(name: str, target: str, data: Path, wrap: bool) -> None:
            s = servers[target]
            c0 = h.tree_cpu_seconds(s.pid)
            res = h.run_wrk(name, s.url + h.ROUTE, data, connections=args.conc, duration=args.duration, wrap=wrap)
            cpu = (h.tree_cpu_seconds(s.pid) - c0) * 1e6 / max(res.requests, 1)
            bad = res.exhausted or (res.non2xx if not name.startswith("refusal") else res.requests - res.non2xx)
            flag = "  INVALID" if bad else ""
            print(
                f"  {name:<22} {res.rps:8.0f} req/s  p50 {res.p50_ms:6.2f} ms  {cpu:6.0f} CPU µs/req{flag}",
                flush=True,
            )
            rows.setdefault(name, []).append((res.rps, res.p50_ms, cpu))

        for r in range(args.rounds):
            print(f"round {r + 1}: {args.kind} c{args.conc}, proofs", flush=True)
            order = ["pass", *variants]
            if r % 2:
                order.reverse()
            for target in order:
                if target == "pass":
                    measure("pass", "pass", tmp / "plain", True)
                    continue
                batch += 1
                n = int(args.duration * 3500 * 1.5)
                data = tmp / f"proofs-{batch}"
                mint.use_gateway(servers[target].url)
                mint.prefetch(n)
                h.write_slices(
                    data,
                    2,
                    ((mint.proof(b), b) for b in (h.chat_body(i, stream=stream, tag=f"a{batch}") for i in range(n))),
                )
                measure(f"tokenward-{target}", target, data, False)
                shutil.rmtree(data)
            if args.no_refusals:
                continue
            print(f"round {r + 1}: refusals (no proof), c{args.conc}", flush=True)
            for target in ("trivial401", *(v for v in variants if v != "plumb")):  # plumb refuses nothing
                measure(f"refusal-{target}", target, tmp / "plain", True)
        print("\nmedians")
        base = statistics.median(x[2] for x in rows["pass"])
        floor = statistics.median(x[2] for x in rows.get("refusal-trivial401", [(0, 0, 0)]))
        for name, xs in rows.items():
            rps = statistics.median(x[0] for x in xs)
            p50 = statistics.median(x[1] for x in xs)
            cpu = statistics.median(x[2] for x in xs)
            ref = floor if name.startswith("refusal") else base
            print(
                f"  {name:<22} {rps:8.0f} req/s  p50 {p50:6.2f} ms  {cpu:6.0f} CPU µs/req "
                f"({cpu - ref:+5.0f} vs {'trivial 401' if name.startswith('refusal') else 'pass'})"
            )
        batches = []
        if "full" in servers:
            servers["full"].stop(timeout=30)
            batches = [ln for ln in servers["full"].log_path.read_text().splitlines() if ln.startswith("BATCHES")]
        if batches:
            print("\ndecision log writer (full variant): " + re.sub(r"^BATCHES ", "", batches[-1]))
    finally:
        h.stop_all()
        time.sleep(0.2)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
