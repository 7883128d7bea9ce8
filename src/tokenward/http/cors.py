"""CORS: browsers on other origins calling protected routes and the gateway's endpoints.

A route may list the exact origins whose pages may call it (``cors`` in the policy,
docs/browser-sdk.md "SDK on another origin"). On such a route the gateway owns CORS:

* it answers preflights itself (``OPTIONS`` with ``Access-Control-Request-Method``): an
  allowed origin gets ``204`` with that exact origin, the route's methods, the headers the
  SDK sends and ``Max-Age``; any other origin gets ``403 origin_not_allowed`` and no CORS
  header. A preflight never reaches the guard, the store, the decision log or the upstream;
* every answer on the route (allowed calls, streams, every refusal) carries
  ``Access-Control-Allow-Origin: <that origin>`` for an allowed ``Origin``, the headers the
  SDK reads in ``Access-Control-Expose-Headers``, and ``Vary: Origin`` for everyone;
* ``Access-Control-*`` headers sent by the upstream (or the wrapped app) are dropped on
  the route: its ``*`` or its reflected origin must not open the route to another site.

The challenge, device-registration and SDK endpoints answer the union of the routes'
origins, without credentials (the SDK sends none to them).

An origin is matched byte for byte against the normalized list (browsers serialize it
one way: lower-case scheme and host, no default port, punycode): nothing a client sends is
ever reflected unless it is exactly one of the listed origins. ``*`` and ``null`` cannot
be listed. With no route declaring ``cors``, a request costs one attribute check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..decision import Flavour, refusal_body
from ..origins import _VARY, EXPOSED, SDK_REQUEST_HEADERS, CorsSettings, normalize_origin
from .common import JSON_HEADERS, Message, Scope, Send

if TYPE_CHECKING:
    from ..policy import Policy, RouteSettings

__all__ = [
    "EXPOSED",
    "SDK_REQUEST_HEADERS",
    "CorsSettings",
    "EndpointCors",
    "endpoint_cors",
    "normalize_origin",
    "route_cors",
]

_ENDPOINT_REQUEST_HEADERS = "Content-Type, Tokenward-Proof"
_EXPOSE_ENDPOINTS = (b"access-control-expose-headers", b"Retry-After")


def _origin(scope: Scope) -> tuple[bytes | None, bool]:
    """(the request's Origin, whether it is a preflight). Two Origin headers: no origin."""
    origin: bytes | None = None
    preflight = False
    seen = 0
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value
            seen += 1
        elif name == b"access-control-request-method":
            preflight = True
    if seen != 1:
        origin = None
    return origin, preflight and scope["method"] == "OPTIONS"


async def route_cors(scope: Scope, send: Send, route: RouteSettings) -> Send | None:
    """For a protected route with ``cors``: None when the request was a preflight (now
    answered), else the ``send`` to answer it with."""
    cors = route.cors
    assert cors is not None
    origin, preflight = _origin(scope)
    allowed = origin is not None and origin in cors.allowed
    if preflight:
        if allowed:
            assert origin is not None
            methods = ", ".join(route.methods).encode()
            await _no_content(send, [_VARY, (b"access-control-allow-origin", origin),
                                     (b"access-control-allow-methods", methods), *cors.preflight_headers])  # fmt: skip
        else:
            await _forbidden(send, route.path)
        return None
    extra = [(b"access-control-allow-origin", origin), *cors.answer_headers] if allowed and origin else [_VARY]
    return _with_headers(send, extra)


class EndpointCors:
    """The union of the routes' origins, for /.tokenward/challenge, /device and /sdk.js
    (built once per policy; ``None`` from :meth:`of` when no route declares ``cors``)."""

    __slots__ = ("allowed", "max_age")

    def __init__(self, allowed: frozenset[bytes], max_age: int):
        self.allowed = allowed
        self.max_age = str(max_age).encode()

    @staticmethod
    def of(policy: Policy) -> EndpointCors | None:
        declared = [r.cors for r in policy.routes if r.protect and r.cors is not None]
        if not declared:
            return None
        return EndpointCors(frozenset().union(*(c.allowed for c in declared)), min(c.max_age for c in declared))


async def endpoint_cors(scope: Scope, send: Send, cors: EndpointCors, methods: bytes) -> Send | None:
    """Like :func:`route_cors` for the gateway's own endpoints (no credentials)."""
    origin, preflight = _origin(scope)
    allowed = origin is not None and origin in cors.allowed
    if preflight:
        if allowed:
            assert origin is not None
            await _no_content(
                send,
                [
                    _VARY, (b"access-control-allow-origin", origin), (b"access-control-allow-methods", methods),
                    (b"access-control-allow-headers", _ENDPOINT_REQUEST_HEADERS.encode()),
                    (b"access-control-max-age", cors.max_age),
                ],
            )  # fmt: skip
        else:
            await _forbidden(send, scope["path"])
        return None
    extra = [_VARY, (b"access-control-allow-origin", origin), _EXPOSE_ENDPOINTS] if allowed and origin else [_VARY]
    return _with_headers(send, extra)


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` with the answer's own Access-Control-* headers replaced by ``extra``."""

    async def send_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            own = [(k, v) for k, v in message.get("headers", ()) if not k.lower().startswith(b"access-control-")]
            message = {**message, "headers": own + extra}
        await send(message)

    return send_cors


async def _no_content(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _forbidden(send: Send, path: str) -> None:
    body = refusal_body(
        Flavour.CUSTOM, "origin_not_allowed",
        f"This origin may not call {path[:200]} from a browser: the gateway's policy lists the origins "
        "that may (cors.origins of the route).",
    )  # fmt: skip
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), _VARY],
        }
    )
    await send({"type": "http.response.body", "body": body})
