"""Microbenchmark of tokenward's per-request steps, in-process, one at a time.

Not a ratio benchmark: a breakdown that explains bench/gateway.py. Each step runs N
times on a scope shaped like the ones granian hands the gateway under wrk; the figure
is wall-clock µs per call on this machine (other load on the machine inflates it).

    .venv/bin/python bench/hotpath.py [-n 20000]

``--allowed-cpu`` prints one steadier figure instead, to compare two builds side by side
(``PYTHONPATH=other/src``): the CPU time (process time, every thread: the log's writer
included) of guard.check + guard.finish per allowed request, over distinct requests,
the least of several repeats.

    .venv/bin/python bench/hotpath.py --allowed-cpu [--repeats 6] [-n 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h


def scope_for(body: bytes, proof: str | None) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"content-type", b"application/json"),
        (b"x-demo-chunk-delay", b"0"),
        (b"content-length", str(len(body)).encode()),
    ]
    if proof is not None:
        headers.append((b"tokenward-proof", proof.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": h.ROUTE,
        "raw_path": h.ROUTE.encode(),
        "query_string": b"",
        "headers": headers,
    }


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help="calls per step (20000), or requests per repeat (3000)")
    p.add_argument("--allowed-cpu", action="store_true", help="only the CPU per allowed request (see above)")
    p.add_argument("--repeats", type=int, default=6)
    args = p.parse_args()
    if args.allowed_cpu:
        await allowed_cpu(args.n or 3000, args.repeats)
        return
    n = args.n or 20000

    from tokenward.decision import Action
    from tokenward.guard import RequestOutcome, new_request_id, refuse_unproved
    from tokenward.http.common import read_body, send_refusal
    from tokenward.http.gate import Gate, build_facts
    from tokenward.http.upstream import Upstream, _watch_disconnect

    tmp, mint, guard = await started_guard()
    policy, dlog = guard.policy, guard.log
    route = policy.route_for(h.ROUTE)
    assert route is not None
    gate = Gate(guard)
    trusted = getattr(guard, "trusted", None) or getattr(gate, "trusted", None)
    upstream = Upstream(policy.upstream)  # type: ignore[arg-type]

    body = h.chat_body(1, stream=False)
    bodies = [h.chat_body(i, stream=False) for i in range(n)]
    proofs = [mint.proof(b) for b in bodies]
    plain_scope = scope_for(body, None)
    proof_scopes = [scope_for(b, pr) for b, pr in zip(bodies, proofs, strict=True)]
    facts_plain = build_facts(plain_scope, body, route, trusted, "x" * 24, time.time())
    facts_proof = [
        build_facts(s, b, route, trusted, "x" * 24, time.time()) for s, b in zip(proof_scopes, bodies, strict=True)
    ]
    allow = await guard.check(facts_proof[0])
    refusal = await guard.check(facts_plain)
    assert allow.action is Action.ALLOW and refusal.code == "proof_required", (allow, refusal)

    results: list[tuple[str, float]] = []

    async def timeit(name: str, fn: Callable[[int], Awaitable[Any] | Any], count: int = n) -> None:
        t0 = time.perf_counter()
        for i in range(count):
            r = fn(i)
            if asyncio.iscoroutine(r):
                await r
        us = (time.perf_counter() - t0) * 1e6 / count
        results.append((name, us))
        print(f"  {us:8.2f} µs  {name}", flush=True)

    async def receive_body() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def sink(_message: Any) -> None:
        return None

    never = asyncio.Event()

    async def receive_forever() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    print(f"tokenward request path, {n} calls each (wall µs per call)")
    await timeit("new_request_id()", lambda i: new_request_id())
    await timeit("read_body()", lambda i: read_body(plain_scope, receive_body, 1 << 20, 30.0))
    await timeit(
        "build_facts() incl. parse_call (orjson)",
        lambda i: build_facts(proof_scopes[i], bodies[i], route, trusted, "r", 1.0),
    )
    # fresh facts for a second pass of the proof check: challenges are single use
    await timeit("guard.check(): valid proof (verify + consume_once + decide)", lambda i: guard.check(facts_proof[i]))
    await timeit(
        "guard.check(): replayed proof (verify + consume + new challenge)",
        lambda i: guard.check(facts_proof[i]),
    )
    await timeit("guard.check(): no proof (issue challenge + decide)", lambda i: guard.check(facts_plain))
    await timeit(
        "refuse_unproved(): no proof, as the gateway answers it (challenge, template, log record)",
        lambda i: refuse_unproved(
            guard, route, "POST", h.ROUTE, plain_scope["headers"], "127.0.0.1", body, "r" * 24, 1.0, 0.0
        ),
    )
    await timeit(
        "send_refusal() (refusal body + headers, fake send)",
        lambda i: send_refusal(sink, route.api, refusal, "r" * 24),
    )
    await timeit("Upstream._request_headers()", lambda i: upstream._request_headers(proof_scopes[i], "127.0.0.1"))

    async def watcher_cycle(_i: int) -> None:
        t = asyncio.ensure_future(_watch_disconnect(receive_forever, {}))
        await asyncio.sleep(0)  # let it start and park on receive(), as in a real request
        t.cancel()

    async def bare_cycle(_i: int) -> None:
        await asyncio.sleep(0)

    await timeit("(reference: one event-loop turn, asyncio.sleep(0))", bare_cycle)
    await timeit("disconnect watcher: ensure_future + start + cancel (incl. one loop turn)", watcher_cycle)
    outcome = RequestOutcome()
    outcome.status = 200
    finish = hasattr(guard, "finish")
    if finish:
        await timeit(
            "guard.finish(): log record + settle (one store batch), writer thread running",
            lambda i: guard.finish(facts_proof[i], allow, outcome, 0.1, 0.2),
        )
    await timeit(
        "guard.record() -> SQLite log queue (writer thread running)",
        lambda i: guard.record(facts_proof[i], allow, outcome, 0.1, 0.2),
    )
    await _metrics_cost(timeit, policy, facts_proof, allow, refusal, outcome)
    t0 = time.perf_counter()
    await guard.close()
    drain = time.perf_counter() - t0
    print(f"  (closing the log drained the queue in {drain:.2f} s; {getattr(dlog, 'written', '?')} rows written)")
    shutil.rmtree(tmp, ignore_errors=True)
    total = sum(
        us
        for name, us in results
        if name.startswith(
            (
                "new_request_id",
                "read_body",
                "build_facts",
                "guard.check(): valid",
                "Upstream._request",
                "disconnect",
                "guard.finish" if finish else "guard.record",
            )
        )
    )
    print(f"\nsum for one allowed request (tokenward's own steps): ~{total:.0f} µs")


async def started_guard() -> tuple[Path, Any, Any]:
    """(temp dir, proof mint, started guard) with the benchmark policy and its SQLite log."""
    from tokenward.guard import Guard
    from tokenward.log import open_log
    from tokenward.policy import load_policy
    from tokenward.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="tokenward-hotpath-"))
    mint = h.ProofMint()
    policy_path = h.write_policy(tmp / "policy.yaml", tmp / "decisions.db", extra=h.LOAD_GENERATOR_POLICY)
    policy = load_policy(policy_path, upstream="http://127.0.0.1:9")
    guard = Guard(policy, store=open_store(policy.store), keys=mint.ring, log=open_log(policy.log))
    mint.use_ring(guard.keys)  # scoped to its memory store's lifetime
    await guard.start()
    return tmp, mint, guard


async def allowed_cpu(n: int, repeats: int) -> None:
    from tokenward.guard import RequestOutcome
    from tokenward.http.gate import build_facts

    tmp, mint, guard = await started_guard()
    route = guard.policy.route_for(h.ROUTE)
    outcome = RequestOutcome()
    outcome.status = 200
    runs = []
    try:
        for r in range(repeats):
            bodies = [h.chat_body(i, stream=False, tag=f"cpu{r}") for i in range(n)]
            facts = [
                build_facts(scope_for(b, mint.proof(b)), b, route, guard.trusted, "x" * 24, time.time()) for b in bodies
            ]
            t0 = time.process_time()
            for f in facts:
                decision = await guard.check(f)
                await guard.finish(f, decision, outcome, 0.1, 0.2)
            runs.append((time.process_time() - t0) / n * 1e6)
            assert decision.forwards, decision
    finally:
        await guard.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"CPU per allowed request (guard.check + guard.finish): {min(runs):.1f} µs, least of {repeats} x {n}")
    print("  every repeat: " + ", ".join(f"{x:.1f}" for x in runs))


async def _metrics_cost(timeit: Any, policy: Any, facts: list[Any], allow: Any, refusal: Any, outcome: Any) -> None:
    """What counting one decision in the metrics costs (part of guard.finish when the
    gateway has metrics): in one process, and in multiprocess mode as under serve."""
    try:
        from tokenward.guard.settle import decision_record
        from tokenward.metrics import MULTIPROC_ENV, Metrics
    except ImportError:  # a build without metrics
        return
    allowed = decision_record(facts[0], allow, outcome, 0.1, 0.2, 0.001)
    refused_outcome = type(outcome)()
    refused_outcome.status = refusal.status
    refused = decision_record(facts[0], refusal, refused_outcome, 0.1, 0.1, None)
    metrics = Metrics(multiprocess=False)
    await timeit("Metrics.decision(): an allowed call, own registry", lambda i: metrics.decision(
        allowed, outcome))  # fmt: skip
    await timeit("Metrics.decision(): a refusal, own registry", lambda i: metrics.decision(
        refused, refused_outcome))  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        os.environ[MULTIPROC_ENV] = directory
        try:
            shared = Metrics(multiprocess=True)
            await timeit("Metrics.decision(): an allowed call, multiprocess files", lambda i: shared.decision(
                allowed, outcome))  # fmt: skip
            await timeit("Metrics.decision(): a refusal, multiprocess files", lambda i: shared.decision(
                refused, refused_outcome))  # fmt: skip
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
