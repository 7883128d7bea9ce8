"""``TokenwardMiddleware``: the same per-request checks inside an existing ASGI app.

Pure ASGI (no BaseHTTPMiddleware, which breaks contextvars). Protected routes go through
the same gate as the proxy; the checked body is replayed to the app, so the app reads
exactly the bytes the proof was made for. Everything else goes straight to the app —
``other_routes`` is a reverse-proxy setting and does not apply here. Every request first
passes the edge (``edge.admit``): a path the app could read differently from the route
it was judged as is refused, or resolved for the app with ``ambiguous_paths: canonicalize``.

    from tokenward import TokenwardMiddleware
    app = TokenwardMiddleware(app, policy="tokenward.yaml")
"""

from __future__ import annotations

from pathlib import Path

from ..decision import Decision
from ..facts import RequestFacts
from ..guard import Guard, RequestOutcome
from ..log import open_log
from ..metrics import Metrics
from ..money.call import CallPlan
from ..money.usage import UsageMeter
from ..policy import Policy, load_policy
from ..store import open_store
from .app import load_keys
from .common import ASGIApp, Message, Receive, Scope, Send
from .cors import route_cors
from .edge import admit
from .endpoints import PREFIX, Endpoints
from .gate import Gate

__all__ = ["TokenwardMiddleware"]


class TokenwardMiddleware:
    """An ASGI app that checks the policy's protected routes before ``app`` sees them.

    Give it a policy (a :class:`Policy`, or the path of a policy file; ``None`` reads the
    default one) or a ready :class:`Guard`. The guard starts with the app's lifespan, or
    on the first request, and closes with the lifespan's shutdown.
    """

    app: ASGIApp  # the wrapped application: unprotected requests and checked calls reach it
    guard: Guard  # judges each request: policy, store, keys, decision log
    gate: Gate  # a protected route's request: check, replay the body to the app, meter, settle
    endpoints: Endpoints  # the gateway's own /.tokenward/* endpoints
    _started: bool

    def __init__(
        self,
        app: ASGIApp,
        policy: Policy | str | Path | None = None,
        *,
        guard: Guard | None = None,
    ) -> None:
        self.app = app
        if guard is None:
            pol = policy if isinstance(policy, Policy) else load_policy(policy)
            guard = Guard(
                pol,
                store=open_store(pol.store),
                keys=load_keys(pol),
                log=open_log(pol.log),
                metrics=Metrics() if pol.admin.metrics else None,
            )
        self.guard = guard
        self.gate = Gate(guard)
        self.endpoints = Endpoints(guard)
        self._started = False

    async def _start(self) -> None:
        if not self._started:
            self._started = True
            await self.guard.start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self._start()
        admitted = await admit(scope, send, self.guard)
        if admitted is None:
            return
        scope = admitted
        path: str = scope["path"]
        if path.startswith(PREFIX):
            await self.endpoints(scope, receive, send)
            return
        route = self.guard.policy.route_for(path)
        if route is not None and route.protect and route.cors is not None:  # docs/browser-sdk.md
            cors_send = await route_cors(scope, send, route)
            if cors_send is None:
                return  # a preflight, answered
            send = cors_send
        if route is None or not route.protect or scope["method"] not in route.methods:
            await self.app(scope, receive, send)
            return
        await self.gate(scope, receive, send, route, self._call_app)

    async def _call_app(
        self, scope: Scope, receive: Receive, send: Send, facts: RequestFacts, decision: Decision,
        response_headers: list[tuple[bytes, bytes]], outcome: RequestOutcome,
    ) -> None:  # fmt: skip
        replayed = False
        call: CallPlan | None = decision.work.call
        body = call.body if call is not None and call.body is not None else facts.body
        if body is not facts.body:
            # The app reads the body the gateway planned (usage asked for, a degrade, a
            # server-held conversation): its headers must give that body's length.
            scope = {**scope, "headers": _with_length(scope["headers"], len(body))}
        meter: UsageMeter | None = None

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_metered(message: Message) -> None:
            nonlocal meter
            if message["type"] == "http.response.start":
                outcome.status = message["status"]
                headers = list(message.get("headers", []))
                if call is not None:
                    content_type = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), "")
                    meter = call.meter(outcome.status, content_type)
                    outcome.model = call.model
                    if call.inject_usage:
                        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                message = {**message, "headers": headers + response_headers}
            elif message["type"] == "http.response.body" and meter is not None:
                chunk = meter.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    chunk += meter.end()
                    outcome.usage = meter.result()
                    if decision.work.conversation is not None:
                        outcome.text = meter.text()
                message = {**message, "body": chunk}
            await send(message)

        try:
            await self.app(scope, replay, send_metered)
        finally:
            if meter is not None and outcome.usage is None:
                outcome.usage = meter.result()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_and_start() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
            return message

        async def send_and_close(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.guard.close()
            await send(message)

        await self.app(scope, receive_and_start, send_and_close)


def _with_length(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """``headers`` with one Content-Length of ``length`` and no Transfer-Encoding: the
    body is replayed to the app whole, whatever framing the client used."""
    kept = [(k, v) for k, v in headers if k not in (b"content-length", b"transfer-encoding")]
    return [*kept, (b"content-length", str(length).encode())]
