"""A fake LLM upstream that speaks the OpenAI and Anthropic wire formats.

It stands where a paid model would be, so the gateway, its tests, the benchmarks and the
demo can run offline and for free. The official ``openai`` and ``anthropic`` SDKs parse
its answers, both plain JSON and streamed (SSE).

Replies are deterministic: they depend only on the last user message (see
:func:`reply_text`). Tokens are counted by one documented rule (see :func:`count_tokens`),
the same for prompts and completions, so the gateway can check its own accounting.

Endpoints (every response carries ``x-demo-upstream: 1``)::

    POST /v1/chat/completions   OpenAI chat (JSON or SSE, stream_options.include_usage)
    POST /v1/completions        OpenAI legacy completions
    POST /v1/responses          OpenAI Responses API
    POST /v1/embeddings         deterministic 16-dim vectors (float or base64)
    GET  /v1/models             demo-1, demo-mini
    POST /v1/messages           Anthropic Messages (JSON or named SSE events)
    POST /api/chat              a site's own widget: {"reply", "usage"} or data: {"delta"}
    GET  /demo                  the chat page
    GET  /_demo/stats           counters for tests;  POST /_demo/reset zeroes them

Streams wait ``chunk_delay`` seconds between events; a request may ask for another delay
with the ``x-demo-chunk-delay`` header (seconds, capped at 5).

Run it with ``python -m tokenward.demo.upstream --host 127.0.0.1 --port 8001``.

This module is the command line; the demo itself is in :mod:`.replies` (token rule and
replies), :mod:`.calls` (reading requests), :mod:`.dialects` (JSON and SSE per API) and
:mod:`.app` (the HTTP app). The public names are re-exported here.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from .app import DemoStats, create_app
from .calls import DEFAULT_MODEL, MODELS
from .replies import count_tokens, reply_text

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "DemoStats",
    "count_tokens",
    "create_app",
    "main",
    "reply_text",
]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tokenward.demo.upstream",
        description="Serve the tokenward demo LLM (OpenAI and Anthropic wire formats).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--chunks", type=int, default=None, help="content deltas per stream")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve the demo upstream with uvicorn until interrupted."""
    import uvicorn  # a test/demo dependency: only the command line needs it

    args = _parse_args(argv)

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                port = self.servers[0].sockets[0].getsockname()[1] if self.servers else args.port
                print(f"demo upstream listening on http://{args.host}:{port}", flush=True)

    def installed(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    config = uvicorn.Config(
        create_app(chunk_delay=args.chunk_delay, chunks=args.chunks),
        host=args.host,
        port=args.port,
        loop="uvloop" if installed("uvloop") else "asyncio",
        http="httptools" if installed("httptools") else "auto",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    AnnouncingServer(config).run()


if __name__ == "__main__":
    main()
