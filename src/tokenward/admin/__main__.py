"""``python -m tokenward.admin``: the admin listener process that ``tokenward serve
--admin-port`` starts next to the gateway's workers (docs/observability.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import uvicorn

from ..errors import ConfigurationError
from ..metrics import MULTIPROC_ENV, render_multiprocess
from ..oplog import logging_config
from .app import admin_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenward.admin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True, help="the decision log URI the dashboard reads")
    parser.add_argument("--token-env", default="TOKENWARD_ADMIN_TOKEN")
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    args = parser.parse_args(argv)
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        print(f"the admin listener needs {MULTIPROC_ENV} (tokenward serve sets it)", file=sys.stderr)
        return 2
    from ..policy import AdminSettings

    try:
        token = AdminSettings(token_env=args.token_env).token()
    except ConfigurationError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    app = admin_app(render_metrics=lambda: render_multiprocess(directory), token=token, log_uri=args.log)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_config=logging_config(args.log_format, args.log_level),
        log_level=args.log_level, access_log=False, lifespan="off",
    )  # fmt: skip
    server = uvicorn.Server(config)

    async def run() -> None:
        watch = asyncio.ensure_future(_orphaned(args.parent, server)) if args.parent else None
        try:
            await server.serve()
        finally:
            if watch is not None:
                watch.cancel()

    asyncio.run(run())
    return 0


async def _orphaned(parent: int, server: uvicorn.Server) -> None:
    """Stop when the gateway that started us is gone (killed without a chance to stop us)."""
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells us; polled once a second
        await asyncio.sleep(1)
    server.should_exit = True


if __name__ == "__main__":
    sys.exit(main())
