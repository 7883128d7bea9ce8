"""tokenward with pieces switched off, for bench/ablation.py (never for production).

The gateway is built exactly as ``tokenward serve`` builds it (``create_gateway``), then
one piece is disabled by patching from outside, so the difference in CPU per request
is what that piece costs:

  full      unchanged (the decision log also counts its batch sizes)
  nolog     decisions are not logged (``guard.log = None``)
  nowatch   no client-disconnect watcher task per forwarded request
  bare      both of the above
  logqueue  records are queued to the writer thread, which drops them (no rows, no SQLite)
  logrows   the writer builds the rows (JSON columns) but does not insert them
  noguard   the guard answers every request "allow" at once and nothing is settled (the
            record journaled before the answer is still made)
  hollow    noguard without the decision log and the watcher: what the HTTP layer alone
            (body, the check for work, facts, headers, forwarding) costs
  plumb     the protected route forwarded as an unprotected one (Gateway.pass_through):
            tokenward's own forwarding code without the gate, against the pass-through's

    TOKENWARD_KEYS=... python bench/_variants.py --variant nolog --policy P --upstream U --port N
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path
from typing import Any

VARIANT_ENV = "BENCH_TOKENWARD_VARIANT"
SETTINGS_ENV = "BENCH_TOKENWARD_SETTINGS"


class _NoWatcher:
    def cancel(self) -> None:
        pass


class _AsyncioWithoutWatcher:
    """Stands in for the ``asyncio`` name inside tokenward.http.upstream only."""

    def __init__(self, real: Any):
        self._real = real

    def ensure_future(self, coro: Any) -> _NoWatcher:
        coro.close()
        return _NoWatcher()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _count_batches(log: Any) -> None:
    sizes: collections.Counter[int] = collections.Counter()
    write = log._write

    def counted(conn: Any, batch: list[Any]) -> Any:
        sizes[len(batch)] += 1
        return write(conn, batch)

    log._write = counted
    close = log.close

    async def report_and_close() -> None:
        await close()
        n = sum(sizes.values())
        rows = sum(k * v for k, v in sizes.items())
        print(
            f"BATCHES {n} transactions, {rows} rows, mean {rows / max(n, 1):.1f} rows/transaction, "
            f"most common sizes {sizes.most_common(8)}",
            file=sys.stderr,
            flush=True,
        )

    log.close = report_and_close


def create_app() -> Any:
    import orjson

    import tokenward.http.upstream as upstream_mod
    from tokenward.http.app import create_gateway
    from tokenward.policy import load_policy

    variant = os.environ[VARIANT_ENV]
    settings = orjson.loads(os.environ[SETTINGS_ENV])
    policy = load_policy(settings["policy"], upstream=settings["upstream"])
    gateway = create_gateway(policy)
    log = gateway.guard.log
    if variant in ("nolog", "bare", "hollow"):
        gateway.guard.log = None
    elif variant == "logqueue":
        log._write = lambda conn, batch: conn  # type: ignore[union-attr]
    elif variant == "logrows":
        from tokenward.log.sqlite import _row

        log._write = lambda conn, batch: [_row(r) for r in batch] and conn  # type: ignore[union-attr]
    elif log is not None:
        _count_batches(log)
    if variant in ("noguard", "hollow"):
        from tokenward.decision import Action, Decision

        allow = Decision(Action.ALLOW, "proof/ok")
        guard = gateway.guard

        async def check(facts: Any) -> Decision:
            return allow

        async def finish(*args: Any, **kwargs: Any) -> None:
            return None

        guard.check = check  # type: ignore[method-assign]
        guard.finish = finish  # type: ignore[method-assign]
    if variant == "plumb":
        gateway.guard.log = None
        from tokenward.http.endpoints import PREFIX

        http = gateway.http

        async def forwarded(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"].startswith(PREFIX):  # challenges are still served
                await http(scope, receive, send)
            else:
                await gateway.pass_through(scope, receive, send)

        gateway.http = forwarded  # type: ignore[method-assign]
    if variant in ("nowatch", "bare", "hollow"):
        upstream_mod.asyncio = _AsyncioWithoutWatcher(upstream_mod.asyncio)  # type: ignore[assignment]
    return gateway


def main() -> None:
    import orjson
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    p = argparse.ArgumentParser()
    p.add_argument(
        "--variant",
        choices=["full", "nolog", "nowatch", "bare", "logqueue", "logrows", "noguard", "hollow", "plumb"],
        required=True,
    )
    p.add_argument("--policy", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    os.environ[VARIANT_ENV] = args.variant
    os.environ[SETTINGS_ENV] = orjson.dumps({"policy": args.policy, "upstream": args.upstream}).decode()
    here = Path(__file__).resolve().parent
    # The same settings as tokenward.server.serve.
    Granian(
        "_variants:create_app",
        address="127.0.0.1",
        port=args.port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=1,
        loop=Loops.auto,
        websockets=False,
        log_level=LogLevels("warning"),
        log_access=False,
        backlog=2048,
        http=HTTPModes.http1,  # as tokenward.server.serve
        http1_settings=HTTP1Settings(header_read_timeout=10_000),
        working_dir=here,
    ).serve()


if __name__ == "__main__":
    main()
