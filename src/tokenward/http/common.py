"""Small ASGI helpers shared by the proxy and the middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..decision import CODE_STATUS, Decision, Flavour, refusal_body

__all__ = [
    "ASGIApp",
    "BodyTooLarge",
    "Receive",
    "Scope",
    "Send",
    "read_body",
    "send_error",
    "send_json",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def header_value(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


async def read_body(scope: Scope, receive: Receive, cap: int) -> bytes:
    """Read the whole request body, refusing (before reading it) anything over ``cap``."""
    declared = header_value(scope, b"content-length")
    if declared is not None:
        try:
            if int(declared) > cap:
                raise BodyTooLarge
        except ValueError:
            pass  # the server rejects a malformed content-length itself
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > cap:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": JSON_HEADERS + [(b"content-length", str(len(body)).encode())] + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    flavour: Flavour,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> int:
    status = CODE_STATUS[code]
    await send_json(send, status, refusal_body(flavour, code, message), headers)
    return status


def decision_headers(request_id: str, decision: Decision | None) -> list[tuple[bytes, bytes]]:
    out = [(b"tokenward-request-id", request_id.encode())]
    if decision is not None:
        out.append((b"tokenward-decision", decision.header.encode()))
        if decision.conversation is not None:  # a server-held conversation: the id to continue it
            out.append((b"tokenward-conversation", decision.conversation[0].encode()))
        if decision.device_unknown:  # protocol §4.2: register the key again
            out.append((b"tokenward-device", b"unknown"))
    return out


async def send_refusal(send: Send, flavour: Flavour, decision: Decision, request_id: str) -> int:
    assert decision.code is not None  # refusals always carry a code (internal invariant)
    headers = decision_headers(request_id, decision)
    if decision.retry_after is not None:
        headers.append((b"retry-after", str(decision.retry_after).encode()))
    status = decision.status
    if status == 401:
        headers.append((b"www-authenticate", b'Tokenward realm="tokenward", version="1"'))
    body = refusal_body(flavour, decision.code, decision.message, decision.challenge)
    await send_json(send, status, body, headers)
    return status


def framing_problem(scope: Scope) -> str | None:
    """Why this request's framing is ambiguous (where its body ends, what its headers say),
    as a sentence for a ``400 bad_request``; None when it is sound."""
    return None
