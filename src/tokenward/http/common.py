"""Small ASGI helpers shared by the proxy and the middleware."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..decision import CODE_STATUS, JSON_HEADERS, PROOF_AUTHENTICATE, Decision, Flavour, refusal_body

__all__ = [
    "ASGIApp",
    "BodyRefused",
    "BodyTimeout",
    "BodyTooLarge",
    "ClientGone",
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

_CLOSE = (b"connection", b"close")


class BodyRefused(Exception):
    """The request body could not be read as sent; ``code`` and ``message`` say why, in the
    protocol's terms (docs/protocol.md, "Refusals"). Its answer closes the connection: what
    is left of the body on it has no trustworthy end."""

    code = "bad_request"
    message = "The request body could not be read."


class BodyTooLarge(BodyRefused):
    code = "payload_too_large"

    def __init__(self, cap: int):
        super().__init__()
        self.message = f"The request body is larger than this endpoint accepts ({cap} bytes)."


class BodyTimeout(BodyRefused):
    code = "request_timeout"

    def __init__(self, seconds: float):
        super().__init__()
        self.message = f"The request body did not arrive within {seconds:g} seconds."


class ClientGone(BodyRefused):
    """The connection ended before the body did, or the server could not parse the body's
    framing (a malformed chunked encoding reads as a disconnect): the client may still be
    there to read the answer."""

    code = "bad_request"
    message = "The request body ended before its declared length, or its chunked encoding is malformed."


def header_value(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


class _Deadlines:
    """Cuts off requests whose body does not arrive in time, for one event loop.

    The server bounds the time to send headers (``header_timeout``); nothing bounds the
    body, so a client trickling one byte a minute would hold its request forever. One
    sweeper task per loop, woken each second, cancels the reads that are overdue, rather
    than ``asyncio.timeout`` around each read: a timer handle per request costs 3-8 µs
    (measured on a 2-core machine), a dict entry a tenth of a microsecond.
    The sweeper exits when nothing is being read and is started again on demand.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.sweeper: asyncio.Task[None] | None = None

    def watch(self, task: asyncio.Task[Any], seconds: float) -> None:
        self.reading[task] = self.loop.time() + seconds
        if self.sweeper is None:
            self.sweeper = self.loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        try:
            while self.reading:
                await asyncio.sleep(_SWEEP_EVERY)
                now = self.loop.time()
                for task, deadline in list(self.reading.items()):
                    if deadline <= now and task not in self.expired:
                        self.expired.add(task)
                        task.cancel()
        finally:
            self.sweeper = None


_SWEEP_EVERY = 1.0
_deadlines: _Deadlines | None = None


async def read_body(scope: Scope, receive: Receive, cap: int, seconds: float) -> bytes:
    """Read the whole request body within ``seconds``, refusing (before reading
    it) anything over ``cap``. Raises a ``BodyRefused`` that says what went wrong."""
    declared = header_value(scope, b"content-length")
    if declared is not None:
        try:
            if int(declared) > cap:
                raise BodyTooLarge(cap)
        except ValueError:
            pass  # the server rejects a malformed content-length itself
    global _deadlines
    loop = asyncio.get_running_loop()
    deadlines = _deadlines
    if deadlines is None or deadlines.loop is not loop:
        deadlines = _deadlines = _Deadlines(loop)
    task = asyncio.current_task()
    assert task is not None  # an ASGI app always runs in a task
    deadlines.watch(task, seconds)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > cap:
                    raise BodyTooLarge(cap)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except asyncio.CancelledError:
        if task not in deadlines.expired:
            raise
        deadlines.expired.discard(task)
        task.uncancel()
        raise BodyTimeout(seconds) from None
    finally:
        del deadlines.reading[task]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None, *, complete: bool = False
) -> None:
    """A JSON response; ``complete``: ``headers`` already hold the content type and length."""
    if not complete:
        headers = JSON_HEADERS + [(b"content-length", str(len(body)).encode())] + (headers or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    flavour: Flavour,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    close: bool = False,
) -> int:
    """A tokenward error in the flavour's shape; ``close`` ends the connection after it (the
    request's framing or body cannot be trusted to tell where the next request starts)."""
    status = CODE_STATUS[code]
    if close:
        headers = [*(headers or ()), _CLOSE]
    await send_json(send, status, refusal_body(flavour, code, message), headers)
    return status


def decision_headers(request_id: str, decision: Decision | None) -> list[tuple[bytes, bytes]]:
    out = [(b"tokenward-request-id", request_id.encode())]
    if decision is not None:
        out.append((b"tokenward-decision", decision.header.encode()))
        if decision.work.conversation is not None:  # a server-held conversation: the id to continue it
            out.append((b"tokenward-conversation", decision.work.conversation[0].encode()))
        if decision.device_unknown:  # protocol §4.2: register the key again
            out.append((b"tokenward-device", b"unknown"))
    return out


async def send_refusal(
    send: Send, flavour: Flavour, decision: Decision, request_id: str, *, close: bool = False
) -> int:
    assert decision.code is not None  # refusals always carry a code (internal invariant)
    headers = decision_headers(request_id, decision)
    if close:
        headers.append(_CLOSE)
    if decision.retry_after is not None:
        headers.append((b"retry-after", str(decision.retry_after).encode()))
    status = decision.status
    if status == 401:
        headers.append(PROOF_AUTHENTICATE)
    body = refusal_body(flavour, decision.code, decision.message, decision.challenge)
    await send_json(send, status, body, headers)
    return status
