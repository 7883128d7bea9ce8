"""The demo upstream's HTTP app: routes, streaming, counters and error answers.

:func:`create_app` builds the ASGI app; :class:`EventStream` sends a reply's SSE events
``delay`` seconds apart and knows how many tokens reached the client; :class:`DemoStats`
holds the counters tests read from ``GET /_demo/stats``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .calls import MODELS, BadRequest, LLMCall, model_of
from .dialects import FLAVOURS, SSEEvent, embeddings_json
from .replies import make_reply

CHUNK_DELAY_HEADER = "x-demo-chunk-delay"
MAX_CHUNK_DELAY = 5.0

_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})


@dataclass(slots=True)
class DemoStats:
    """Counters that tests read from ``GET /_demo/stats``.

    ``last_usage`` is ``{path, model, stream, aborted, input_tokens, output_tokens,
    total_tokens}`` of the last finished or aborted LLM response; for an aborted stream
    ``output_tokens`` counts the tokens actually sent. ``last_request`` is the last LLM
    request as received (secret header values masked).
    """

    requests: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    streams_started: int = 0
    streams_completed: int = 0
    streams_aborted: int = 0
    last_usage: dict[str, Any] | None = None
    last_request: dict[str, Any] | None = None

    def count_request(self, path: str) -> None:
        self.requests += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1

    def record_usage(self, path: str, call: LLMCall, output_tokens: int, *, aborted: bool = False) -> None:
        self.last_usage = {
            "path": path,
            "model": call.model,
            "stream": call.stream,
            "aborted": aborted,
            "input_tokens": call.prompt_tokens,
            "output_tokens": output_tokens,
            "total_tokens": call.prompt_tokens + output_tokens,
        }

    def record_request(self, request: Request, body: object) -> None:
        headers = {name: "***" if name in _SECRET_HEADERS else value for name, value in request.headers.items()}
        self.last_request = {
            "method": request.method,
            "path": request.url.path,
            "headers": headers,
            "body": body,
        }

    def reset(self) -> None:
        # In place: streams still open hold this object and report to it when they end.
        self.requests = self.streams_started = self.streams_completed = 0
        self.streams_aborted = 0
        self.by_path = {}
        self.last_usage = self.last_request = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_aborted": self.streams_aborted,
            "last_usage": self.last_usage,
            "last_request": self.last_request,
        }


# --------------------------------------------------------------------------------------
# Streaming: sending the SSE events
# --------------------------------------------------------------------------------------


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


class EventStream(Response):
    """An SSE response sent event by event, ``delay`` seconds apart.

    Unlike Starlette's ``StreamingResponse`` it knows how many completion tokens reached
    the socket, and reports ``on_close(tokens_sent, completed)`` exactly once, whether the
    stream finished or the client went away (disconnect, or a send that failed).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: Sequence[SSEEvent],
        *,
        delay: float,
        on_close: Callable[[int, bool], None],
    ) -> None:
        self.events = events
        self.delay = delay
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tokens_sent = 0
        completed = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                try:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": self.status_code,
                            "headers": self.raw_headers,
                        }
                    )
                    for i, event in enumerate(self.events):
                        if i and self.delay > 0:
                            await anyio.sleep(self.delay)
                        await send({"type": "http.response.body", "body": event.data, "more_body": True})
                        tokens_sent += event.tokens
                    completed = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    pass  # the client went away while we were writing
                tg.cancel_scope.cancel()
        finally:
            self.on_close(tokens_sent, completed)


# --------------------------------------------------------------------------------------
# HTTP endpoints
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoConfig:
    chunk_delay: float
    chunks: int | None


def _json(payload: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code, media_type="application/json")


def _chunk_delay(request: Request, default: float) -> float:
    raw = request.headers.get(CHUNK_DELAY_HEADER)
    if raw is None:
        return default
    try:
        delay = float(raw)
    except ValueError:
        return default
    return min(max(delay, 0.0), MAX_CHUNK_DELAY) if math.isfinite(delay) else default


async def _json_body(request: Request) -> dict[str, Any]:
    stats: DemoStats = request.app.state.stats
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        stats.record_request(request, None)
        raise BadRequest("The request body is not valid JSON.") from None
    stats.record_request(request, body)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


async def llm_endpoint(request: Request) -> Response:
    path = request.url.path
    flavour = FLAVOURS[path]
    config: DemoConfig = request.app.state.config
    stats: DemoStats = request.app.state.stats
    call = flavour.parse(await _json_body(request))
    reply = make_reply(call.prompt, call.max_tokens, config.chunks)
    if not call.stream:
        stats.record_usage(path, call, reply.tokens)
        return _json(flavour.to_json(call, reply))

    def on_close(tokens_sent: int, completed: bool) -> None:
        if completed:
            stats.streams_completed += 1
        else:
            stats.streams_aborted += 1
        stats.record_usage(path, call, tokens_sent, aborted=not completed)

    stats.streams_started += 1
    events = flavour.to_events(call, reply, config.chunks)
    return EventStream(events, delay=_chunk_delay(request, config.chunk_delay), on_close=on_close)


async def embeddings(request: Request) -> Response:
    body = await _json_body(request)
    response, tokens = embeddings_json(body)
    call = LLMCall(model_of(body), "", tokens, None, stream=False)
    request.app.state.stats.record_usage(request.url.path, call, 0)
    return _json(response)


async def models(request: Request) -> Response:
    data = [{"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "tokenward-demo"} for name in MODELS]
    return _json({"object": "list", "data": data})


async def demo_page(request: Request) -> Response:
    return HTMLResponse(request.app.state.chat_html)


async def stats_endpoint(request: Request) -> Response:
    return _json(request.app.state.stats.as_dict())


async def reset_endpoint(request: Request) -> Response:
    request.app.state.stats.reset()
    return _json({"ok": True})


def _error_body(path: str, status_code: int, message: str, param: str | None = None) -> object:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status_code, "api_error")
    if path == "/v1/messages":
        return {"type": "error", "error": {"type": kind, "message": message}}
    code = {404: "not_found", 405: "method_not_allowed"}.get(status_code)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


async def _on_bad_request(request: Request, exc: Exception) -> Response:
    exc = cast(BadRequest, exc)
    return _json(_error_body(request.url.path, 400, exc.message, exc.param), 400)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    exc = cast(HTTPException, exc)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return _json(_error_body(request.url.path, exc.status_code, message), exc.status_code)


class _DemoMarker:
    """Counts requests (all but ``/_demo/*``) and adds ``x-demo-upstream: 1`` to responses."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith("/_demo/"):
            self.app.state.stats.count_request(scope["path"])

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-demo-upstream", b"1")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_marked)


def create_app(*, chunk_delay: float = 0.0, chunks: int | None = None) -> ASGIApp:
    """The demo upstream as an ASGI app.

    ``chunk_delay``: seconds slept between SSE events (a request may override it with the
    ``x-demo-chunk-delay`` header, capped at 5 s). ``chunks``: if set, every streamed reply
    is sent as exactly that many content deltas (the reply is lengthened to have at least
    that many tokens); by default each delta carries two tokens.
    """
    if not math.isfinite(chunk_delay) or chunk_delay < 0:
        raise ValueError(f"chunk_delay must be a non-negative number of seconds: {chunk_delay!r}")
    if chunks is not None and chunks < 1:
        raise ValueError(f"chunks must be at least 1: {chunks!r}")
    routes = [Route(path, llm_endpoint, methods=["POST"]) for path in FLAVOURS]
    routes += [
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/demo", demo_page, methods=["GET"]),
        Route("/_demo/stats", stats_endpoint, methods=["GET"]),
        Route("/_demo/reset", reset_endpoint, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={BadRequest: _on_bad_request, HTTPException: _on_http_error},
    )
    app.state.config = DemoConfig(chunk_delay=chunk_delay, chunks=chunks)
    app.state.stats = DemoStats()
    app.state.chat_html = (
        resources.files(__package__ or "tokenward.demo").joinpath("chat.html").read_text(encoding="utf-8")
    )
    return _DemoMarker(app)
