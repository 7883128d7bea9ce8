"""CPU per refusal (a call without a proof -> 401 + fresh challenge) of one gateway build.

Quicker and steadier than gateway.py's refusal section when comparing two builds side by
side: run it for each, alternately, and compare the minimum of the rounds. The gateway
imported is whatever ``tokenward`` resolves to (set ``PYTHONPATH`` to another checkout's
``src`` to measure that one).

    .venv/bin/python bench/refusal_cpu.py [--log-options '?journal=off'] [--rounds 3] [--duration 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _harness as h  # bench/ is on sys.path when the script runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log-options", default="", help="appended to the decision log URI, e.g. '?journal=off'")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--conc", type=int, default=16)
    p.add_argument("--no-metrics", action="store_true", help="admin.metrics: false (what the metrics cost)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tokenward-refusal-"))
    db = tmp / "decisions.db"
    extra = h.LOAD_GENERATOR_POLICY + ("\nadmin: {metrics: false}" if args.no_metrics else "")
    policy = h.write_policy(tmp / "policy.yaml", db, extra=extra)
    if args.log_options:
        policy.write_text(policy.read_text().replace(f"log: sqlite:///{db}", f"log: sqlite:///{db}{args.log_options}"))
    up = h.start_upstream(tmp)
    gw = h.start_gateway(tmp, policy, up.url, h.ProofMint().key_b64)
    h.write_slices(tmp / "plain", 2, ((None, h.chat_body(i, stream=False)) for i in range(4000)))
    try:
        cpu = []
        for _ in range(args.rounds):
            c0 = h.tree_cpu_seconds(gw.pid)
            res = h.run_wrk("refusal", gw.url + h.ROUTE, tmp / "plain", connections=args.conc,
                            duration=args.duration, wrap=True)  # fmt: skip
            cpu.append((h.tree_cpu_seconds(gw.pid) - c0) * 1e6 / max(res.requests, 1))
        print(f"CPU µs per refusal, {args.rounds} rounds: {[round(x) for x in cpu]}  min {min(cpu):.0f}")
    finally:
        gw.stop()
        up.stop()


if __name__ == "__main__":
    main()
