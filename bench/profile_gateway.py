"""Where the gateway worker spends its time under load: py-spy on the granian worker.

Starts the demo upstream and tokenward (as bench/gateway.py does), drives it with wrk
(proof-carrying requests, or with --refusals requests without a proof), samples the
worker with ``py-spy record`` and prints the hottest functions (self time and
inclusive time) from the collapsed stacks. Figures measured while py-spy samples are
not benchmark figures. Needs ``pip install py-spy`` in the venv.

    .venv/bin/python bench/profile_gateway.py [--kind json|sse] [--conc 64] [--refusals]
    .venv/bin/python bench/profile_gateway.py --target pass     # the bare pass-through
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

PYSPY = str(Path(sys.executable).with_name("py-spy"))


def frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def report(collapsed: Path, top: int) -> None:
    self_t: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [
            frame_name(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += n
        self_t[frames[-1]] += n
        leaf = stack.split(";")[-1]
        lines[frame_name(leaf) + ":" + leaf.rpartition(":")[2].rstrip(")")] += n
        for f in set(frames):
            incl[f] += n
    print(f"{total} samples")
    print(f"\ntop {top} by self time")
    for f, n in self_t.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print(f"\ntop {top // 2} lines by self time (time in a C/Rust call counts on its caller's line)")
    for f, n in lines.most_common(top // 2):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print(f"\ntop {top} by inclusive time")
    for f, n in incl.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=["json", "sse"], default="json")
    p.add_argument("--conc", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--refusals", action="store_true", help="send no proofs (the 401 path)")
    p.add_argument("--target", choices=["tokenward", "pass"], default="tokenward")
    p.add_argument("--top", type=int, default=30)
    p.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every active thread (default: only the thread holding the GIL, i.e. where Python CPU time goes)",
    )
    p.add_argument("--out", type=Path, default=None, help="keep the collapsed stacks (flamegraph.pl input) here")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tokenward-profile-"))
    try:
        mint = h.ProofMint()
        policy = h.write_policy(tmp / "policy.yaml", tmp / "decisions.db", extra=h.LOAD_GENERATOR_POLICY)
        up = h.start_upstream(tmp)
        if args.target == "pass":
            server = h.start_passthrough(tmp, up.url)
        else:
            server = h.start_gateway(tmp, policy, up.url, mint.key_b64)
            mint.use_gateway(server.url)
        stream = args.kind == "sse"
        if args.refusals or args.target == "pass":
            rows = ((None, h.chat_body(i, stream=stream)) for i in range(4000))
            wrap = True
        else:
            n = int(args.duration * 3000 * 1.5)
            mint.prefetch(n)
            rows = ((mint.proof(b), b) for b in (h.chat_body(i, stream=stream) for i in range(n)))
            wrap = False
        h.write_slices(tmp / "data", 2, rows)
        worker = h.worker_pids(server.pid)[0]
        raw = tmp / "profile.txt"
        spy = subprocess.Popen(
            [
                PYSPY,
                "record",
                "--pid",
                str(worker),
                "--duration",
                str(int(args.duration)),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
                "--threads",
                *([] if args.all_threads else ["--gil"]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        res = h.run_wrk(
            "profile",
            server.url + h.ROUTE,
            tmp / "data",
            connections=args.conc,
            duration=args.duration,
            wrap=wrap,
        )
        spy.wait(args.duration + 30)
        print(
            f"{args.target} {args.kind} c{args.conc}{' refusals' if args.refusals else ''}: "
            f"{res.rps:.0f} req/s while sampled, p50 {res.p50_ms:.2f} ms, non-2xx {res.non2xx}"
        )
        if not raw.exists():
            print(spy.stderr.read().decode() if spy.stderr else "py-spy wrote nothing")
            return
        report(raw, args.top)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(raw, args.out)
    finally:
        h.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
