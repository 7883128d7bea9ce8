"""The gateway's own endpoints under ``/.tokenward/``: challenge, SDK, health."""

from __future__ import annotations

import asyncio
import base64
import binascii
from importlib import resources

import orjson

from ..admin.auth import presented
from ..decision import Flavour
from ..guard import DEVICE_ROUTE, Guard, new_request_id
from ..metrics import CONTENT_TYPE, Metrics
from ..policy import RouteSettings
from ..store import StoreUnavailable
from .common import BodyRefused, Receive, Scope, Send, read_body, send_error, send_json
from .cors import EndpointCors, endpoint_cors
from .gate import build_facts

__all__ = ["PREFIX", "Endpoints"]

PREFIX = "/.tokenward/"
# The endpoints a page on another origin uses (the SDK), with their methods.
_CORS_METHODS = {"challenge": b"POST", "device": b"POST", "sdk.js": b"GET"}
_CHALLENGE_BODY_CAP = 4096


def _load_sdk() -> bytes:
    return resources.files("tokenward.sdk").joinpath("tokenward.js").read_bytes()


class Endpoints:
    def __init__(self, guard: Guard):
        self.guard = guard
        self._sdk: bytes | None = None
        # /.tokenward/metrics needs the admin token (docs/observability.md); none: 404.
        self._admin_token = guard.policy.admin.token()
        self._cors_policy: object = None
        self._cors_union: EndpointCors | None = None

    def _cors(self) -> EndpointCors | None:
        """The routes' origins, for the endpoints a page on another origin calls (per policy)."""
        policy = self.guard.policy
        if policy is not self._cors_policy:
            self._cors_union, self._cors_policy = EndpointCors.of(policy), policy
        return self._cors_union

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"][len(PREFIX) :]
        method = scope["method"]
        if name in _CORS_METHODS and (cors := self._cors()) is not None:  # docs/browser-sdk.md
            cors_send = await endpoint_cors(scope, send, cors, _CORS_METHODS[name])
            if cors_send is None:
                return  # a preflight, answered
            send = cors_send
        if name == "challenge":
            if method != "POST":
                await _method_not_allowed(send, "POST")
                return
            await self.challenge(scope, receive, send)
        elif name == "device":
            if method != "POST":
                await _method_not_allowed(send, "POST")
                return
            await self.device(scope, receive, send)
        elif name == "health":
            await self.health(send)
        elif name == "sdk.js":
            await self.sdk(send)
        elif name == "metrics" and self._admin_token is not None and self.guard.metrics is not None:
            await self.metrics(scope, send, self._admin_token, self.guard.metrics)
        else:
            await send_error(send, Flavour.CUSTOM, "not_found", "No such tokenward endpoint.")

    async def challenge(self, scope: Scope, receive: Receive, send: Send) -> None:
        """docs/protocol.md §1: ``{"route": "/api/chat"}`` -> a fresh signed challenge for that route."""
        try:
            body = await read_body(scope, receive, _CHALLENGE_BODY_CAP, self.guard.policy.body_timeout)
        except BodyRefused as exc:
            await send_error(send, Flavour.CUSTOM, exc.code, exc.message, close=True)
            return
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        route_path = data.get("route") if isinstance(data, dict) else None
        if not isinstance(route_path, str):
            await send_error(
                send, Flavour.CUSTOM, "bad_request",
                'Send a JSON object naming the route to protect, e.g. {"route": "/v1/chat/completions"}.',
            )  # fmt: skip
            return
        policy = self.guard.policy
        route: RouteSettings | str | None
        if route_path == DEVICE_ROUTE:
            route = DEVICE_ROUTE if policy.devices.enabled else None
        else:
            route = policy.route_for(route_path)
        if route is None or (not isinstance(route, str) and not route.protect):
            await send_error(
                send, Flavour.CUSTOM, "bad_request",
                f"{route_path[:200]!r} is not a route this gateway protects.",
            )  # fmt: skip
            return
        facts = build_facts(scope, body, None, self.guard.trusted, new_request_id(), self.guard.clock())
        challenge = await self.guard.adaptive_challenge(facts, route)
        await send_json(send, 200, orjson.dumps(challenge.to_wire()))

    async def device(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Register a device key (docs/protocol.md §4.2): one proved request per key."""
        try:
            body = await read_body(scope, receive, _CHALLENGE_BODY_CAP, self.guard.policy.body_timeout)
        except BodyRefused as exc:
            await send_error(send, Flavour.CUSTOM, exc.code, exc.message, close=True)
            return
        try:
            data = orjson.loads(body)
            text = data["public_key"]
            public_key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error, ValueError):
            await send_error(
                send, Flavour.CUSTOM, "bad_request",
                'Send {"public_key": "<base64url SubjectPublicKeyInfo DER>"} with a Tokenward-Proof.',
            )  # fmt: skip
            return
        facts = build_facts(scope, body, None, self.guard.trusted, new_request_id(), self.guard.clock())
        try:
            status, answer = await self.guard.register_device(facts, public_key)
        except StoreUnavailable:
            await send_error(send, Flavour.CUSTOM, "store_unavailable", "Try again shortly.")
            return
        if status == 200:
            await send_json(send, 200, orjson.dumps(answer))
        else:
            retry = answer.pop("retry_after", None)
            extra = [(b"retry-after", str(retry).encode())] if retry is not None else None
            await send_json(send, status, orjson.dumps({"error": {"type": "tokenward", **answer}}), extra)

    async def health(self, send: Send) -> None:
        try:
            store_ok = await self.guard.store.ping()
        except StoreUnavailable:
            store_ok = False
        # Ok or not, nothing more: which part is down is for the operator's log, not for clients.
        await send_json(send, 200 if store_ok else 503, b'{"status":"ok"}' if store_ok else b'{"status":"unavailable"}')

    async def sdk(self, send: Send) -> None:
        if self._sdk is None:
            self._sdk = _load_sdk()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/javascript; charset=utf-8"),
                    (b"content-length", str(len(self._sdk)).encode()),
                    (b"cache-control", b"public, max-age=300"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._sdk})

    async def metrics(self, scope: Scope, send: Send, token: str, metrics: Metrics) -> None:
        if not presented(token, scope["headers"]):
            await send_error(
                send, Flavour.CUSTOM, "unauthorized", "Send the admin token: Authorization: Bearer <token>.",
                [(b"www-authenticate", b'Bearer realm="tokenward"')],
            )  # fmt: skip
            return
        body = await asyncio.to_thread(metrics.render)  # multiprocess mode reads every worker's file
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _method_not_allowed(send: Send, allowed: str) -> None:
    await send_error(
        send, Flavour.CUSTOM, "method_not_allowed", f"Use {allowed} here.",
        [(b"allow", allowed.encode())],
    )  # fmt: skip
