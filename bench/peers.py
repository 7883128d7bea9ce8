"""tokenward next to a peer, as ratios measured in one run (issue 17, "peers").

Under one load generator (wrk + bench/wrk_requests.lua), JSON and SSE requests to
POST /v1/chat/completions, all against the same demo upstream:

  pass        bench/passthrough.py (granian + aiohttp, no checks): the limit
  tokenward   tokenward serve (enforce, difficulty 2, SQLite decision log), each request
              with its own pre-solved single-use proof for its exact body
  litellm     the LiteLLM proxy, pinned exactly to litellm[proxy]==1.80.0 (later releases
              included compromised ones: never float this pin), 2 workers, the demo
              upstream as an OpenAI-compatible model, no database, no auth

LiteLLM is installed in a throwaway virtual environment, never in the project's:

    python3 -m venv /tmp/litellm-venv
    /tmp/litellm-venv/bin/pip install 'litellm[proxy]==1.80.0'
    .venv/bin/python bench/peers.py --litellm /tmp/litellm-venv/bin/litellm     # ~2 min

Ratios are each target's requests per second over the pass-through's in the same run
(pairs interleaved, median of --rounds); "tokenward / litellm" is the headline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

PIN = "1.80.0"
THREADS = 2
ROWS = 4000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def litellm_version(exe: Path) -> str:
    python = exe.with_name("python")
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip()


def start_litellm(exe: Path, log_dir: Path, upstream: str, workers: int) -> h.Server:
    config = log_dir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: demo-1\n"
        "    litellm_params:\n"
        "      model: openai/demo-1\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  telemetry: false\n"
    )
    port = h.free_port()
    env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "true"}
    s = h.Server(
        "litellm",
        [str(exe), "--config", str(config), "--host", h.HOST, "--port", str(port), "--num_workers", str(workers)],
        port,
        env=env,
        log_dir=log_dir,
    )
    s.wait_ready("/health/liveliness", timeout=120)
    return s


def check(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    req = urllib.request.Request(
        url + h.ROUTE, data=body, method="POST", headers={"content-type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != 200:
            raise SystemExit(f"{url}: {r.status}")
        return r.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--litellm", type=Path, required=True, help="the litellm executable of its own venv")
    ap.add_argument("--workers", type=int, default=2, help="LiteLLM workers (default 2)")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--kinds", nargs="+", choices=["json", "sse"], default=["json", "sse"])
    args = ap.parse_args()
    started = time.time()
    version = litellm_version(args.litellm)
    if version != PIN:
        raise SystemExit(f"{args.litellm} is litellm {version or '?'}; this benchmark runs exactly {PIN}")
    tmp = Path(tempfile.mkdtemp(prefix="tokenward-peers-"))
    logs = tmp / "logs"
    logs.mkdir()
    mint = h.ProofMint(difficulty=2, ttl=600)
    results: dict[str, dict[str, list[h.WrkResult]]] = {}
    try:
        db = tmp / "decisions.db"
        policy = h.write_policy(tmp / "policy.yaml", db, difficulty=2, ttl=600, extra=h.LOAD_GENERATOR_POLICY)
        up = h.start_upstream(logs, chunks=20)
        targets = {
            "pass": h.start_passthrough(logs, up.url),
            "tokenward": h.start_gateway(logs, policy, up.url, mint.key_b64),
            "litellm": start_litellm(args.litellm, logs, up.url, args.workers),
        }
        mint.use_gateway(targets["tokenward"].url)
        for kind in args.kinds:
            body = h.chat_body(0, stream=kind == "sse", tag="sanity")
            replies = {
                "pass": check(targets["pass"].url, body),
                "tokenward": check(targets["tokenward"].url, body, {"tokenward-proof": mint.proof(body)}),
                "litellm": check(targets["litellm"].url, body),
            }
            if kind == "sse":
                bad = [n for n, r in replies.items() if not r.rstrip().endswith(b"data: [DONE]")]
                if bad:
                    raise SystemExit(f"SSE replies incomplete from {bad}")
        log(f"all three answer; LiteLLM {version} with {args.workers} workers")
        batch = 0
        for kind in args.kinds:
            plain = tmp / f"plain-{kind}"
            h.write_slices(plain, THREADS, ((None, h.chat_body(i, stream=kind == "sse")) for i in range(ROWS)))
            for rnd in range(args.rounds):
                order = ["pass", "tokenward", "litellm"] if rnd % 2 == 0 else ["litellm", "tokenward", "pass"]
                for name in order:
                    data, wrap = plain, True
                    if name == "tokenward":  # every request its own fresh proof for its exact body
                        batch += 1
                        n = int(4000 * args.duration) + 2000
                        mint.prefetch(n)
                        data = tmp / f"proofs-{batch}"
                        rows = ((mint.proof(b := h.chat_body(i, stream=kind == "sse", tag=f"p{batch}")), b)
                                for i in range(n))  # fmt: skip
                        h.write_slices(data, THREADS, rows)
                        wrap = False
                    res = h.run_wrk(
                        f"{name} {kind}", targets[name].url + h.ROUTE, data,
                        connections=args.connections, duration=args.duration, threads=THREADS, wrap=wrap,
                    )  # fmt: skip
                    log(f"  {name:9} {kind}: {res.rps:8.0f} req/s  p50 {res.p50_ms:6.2f} ms  non-2xx {res.non2xx}")
                    if res.non2xx or res.exhausted:
                        raise SystemExit(f"{name} {kind}: {res.non2xx} non-2xx, {res.exhausted} replayed proofs")
                    results.setdefault(kind, {}).setdefault(name, []).append(res)
    finally:
        h.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\npeers — wrk -t{THREADS} -c{args.connections}, {args.duration:g} s runs, median of {args.rounds}; "
          f"LiteLLM {version}, {args.workers} workers")  # fmt: skip
    print(f"{'kind':5} {'pass req/s':>11} {'tokenward':>10} {'litellm':>9}  {'tw/pass':>8} {'ll/pass':>8} "
          f"{'tw/litellm':>10}  {'p50 ms pass/tw/ll':>20}")  # fmt: skip
    summary: dict[str, Any] = {}
    for kind, by in results.items():
        rps = {n: statistics.median(r.rps for r in rs) for n, rs in by.items()}
        p50 = {n: statistics.median(r.p50_ms for r in rs) for n, rs in by.items()}
        summary[kind] = {"rps": rps, "p50_ms": p50, "tokenward_vs_litellm": rps["tokenward"] / rps["litellm"]}
        print(f"{kind.upper():5} {rps['pass']:11.0f} {rps['tokenward']:10.0f} {rps['litellm']:9.0f}  "
              f"{rps['tokenward'] / rps['pass']:8.3f} {rps['litellm'] / rps['pass']:8.3f} "
              f"{rps['tokenward'] / rps['litellm']:10.2f}  "
              f"{p50['pass']:6.2f}/{p50['tokenward']:6.2f}/{p50['litellm']:6.2f}")  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = h.RESULTS_DIR / f"peers-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "peers", "timestamp": stamp, "litellm": version, "workers": args.workers,
           "settings": vars(args) | {"litellm": str(args.litellm)}, "summary": summary,
           "runs": {k: {n: [r.as_dict() for r in rs] for n, rs in by.items()} for k, by in results.items()},
           "source": h.source_state(), "elapsed_s": round(time.time() - started, 1)}  # fmt: skip
    out.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
