"""The reverse proxy (``tokenward serve``): a pure ASGI app in front of an upstream LLM."""

from __future__ import annotations

import gc
import logging
from typing import Any

from ..decision import Flavour
from ..guard import Guard, RequestOutcome
from ..watch import PolicyWatcher
from .common import BodyRefused, Receive, Scope, Send, read_body, send_error
from .cors import route_cors
from .edge import admit
from .endpoints import PREFIX, Endpoints
from .gate import Gate, build_facts
from .upstream import Upstream

__all__ = ["Gateway", "tune_gc"]

log = logging.getLogger("tokenward.proxy")


def tune_gc() -> None:
    """Move what start-up built (modules, policy, models) out of the collector's sight and
    collect young objects less often. Every request allocates many small objects and the
    stores hold many long-lived ones: with the default thresholds the cyclic collector
    keeps re-scanning them, which showed as CPU per request under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class Gateway:
    """Routes each request: our endpoints, protected routes through the gate, the rest
    forwarded or refused as the policy's ``other_routes`` says."""

    def __init__(self, guard: Guard, upstream: Upstream, watcher: PolicyWatcher | None = None):
        self.guard = guard
        self.upstream = upstream
        self.watcher = watcher
        self.gate = Gate(guard)
        self.endpoints = Endpoints(guard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        admitted = await admit(scope, send, self.guard)
        if admitted is None:
            return
        scope = admitted
        path: str = scope["path"]
        if path.startswith(PREFIX):
            await self.endpoints(scope, receive, send)
            return
        route = self.guard.policy.route_for(path)
        if route is None:
            if self.guard.policy.other_routes == "pass":
                await self.pass_through(scope, receive, send)
            else:
                await send_error(send, Flavour.CUSTOM, "not_found", "This gateway serves no such route.")
            return
        if not route.protect:
            await self.pass_through(scope, receive, send)
            return
        if route.cors is not None:  # browsers on other origins (docs/browser-sdk.md)
            cors_send = await route_cors(scope, send, route)
            if cors_send is None:
                return  # a preflight, answered
            send = cors_send
        if scope["method"] in route.methods:
            await self.gate(scope, receive, send, route, self.upstream.forward)
        else:
            await send_error(
                send, route.api, "method_not_allowed",
                f"Use {', '.join(route.methods)} on {route.path}.",
                [(b"allow", ", ".join(route.methods).encode())],
            )  # fmt: skip

    async def pass_through(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Unprotected traffic: forwarded with the same hygiene, not logged."""
        try:
            body = await read_body(scope, receive, self.guard.policy.max_body_bytes, self.guard.policy.body_timeout)
        except BodyRefused as exc:
            await send_error(send, Flavour.CUSTOM, exc.code, exc.message, close=True)
            return
        facts = build_facts(scope, body, None, self.guard.trusted, "-", 0.0)
        await self.upstream.forward(scope, receive, send, facts, None, [], RequestOutcome())

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "lifespan.startup":
                try:
                    await self.guard.start()
                    await self.upstream.start()
                except Exception as exc:
                    log.exception("tokenward failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.watcher is not None:
                    self.watcher.start()
                tune_gc()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self.watcher is not None:
                        await self.watcher.stop()
                    await self.upstream.close()
                    await self.guard.close()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return
