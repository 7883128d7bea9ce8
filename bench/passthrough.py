"""A bare pass-through reverse proxy: tokenward's server stack without tokenward.

The baseline for bench/gateway.py. Same stack as ``tokenward serve``: a pure ASGI app
built by a factory, served by granian with the settings of ``tokenward.server.serve``,
forwarding with an aiohttp ``ClientSession`` configured exactly as
``tokenward.http.upstream.Upstream.start`` configures its own (connector limit 256,
DNS cache, no auto-decompression, no cookie jar, the same timeouts). It reads the
request body, forwards it, and streams the response back chunk by chunk
(``iter_any``), dropping hop-by-hop, ``date`` and ``server`` headers. No policy, no
proof, no decision log, no disconnect watcher.

    python bench/passthrough.py --upstream http://127.0.0.1:8001 --port 8090
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import aiohttp

UPSTREAM_ENV = "BENCH_PASSTHROUGH_UPSTREAM"

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
    }
)
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length"}
_RESPONSE_DROP = frozenset(h.encode() for h in HOP_BY_HOP) | {b"date", b"server"}
_SKIP_AUTO = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})


class PassThrough:
    def __init__(self, upstream: str):
        self.base = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.session is not None:
                        await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def start(self) -> None:
        # As tokenward.http.upstream.Upstream.start with the policy defaults
        # (max_connections 256, connect_timeout 10, read_timeout 300).
        connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=300.0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self.session is not None
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _REQUEST_DROP
        ]
        url = self.base + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        try:
            resp = await self.session.request(
                scope["method"],
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=_SKIP_AUTO,
            )
        except (aiohttp.ClientError, TimeoutError, OSError):
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in _RESPONSE_DROP],
                }
            )
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientError, TimeoutError, OSError):
            pass
        finally:
            resp.close()


def create_app() -> PassThrough:
    """Granian factory (worker process): the upstream URL comes from the environment."""
    return PassThrough(os.environ[UPSTREAM_ENV])


def main() -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    os.environ[UPSTREAM_ENV] = args.upstream
    here = os.path.dirname(os.path.abspath(__file__))
    # The same settings as tokenward.server.serve.
    Granian(
        "passthrough:create_app",
        address=args.host,
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
        working_dir=Path(here),
    ).serve()


if __name__ == "__main__":
    main()
