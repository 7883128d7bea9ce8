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
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import math
import re
import secrets
import struct
import time
from collections.abc import Callable, Iterable, Sequence
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

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "DemoStats",
    "count_tokens",
    "create_app",
    "main",
    "reply_text",
]

DEFAULT_MODEL = "demo-1"
MODELS = ("demo-1", "demo-mini")
CHUNK_DELAY_HEADER = "x-demo-chunk-delay"
MAX_CHUNK_DELAY = 5.0
EMBEDDING_DIMS = 16
MAX_EMBEDDING_DIMS = 1024
REPLY_MIN_WORDS = 40
TOPIC_MAX_WORDS = 12

# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------

# One token is a run of word characters or one other non-space character:
# "Hello, world!" is 4 tokens. Whitespace is never a token.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# The same tokens with the whitespace before each, so that pieces join back into the text.
_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")


def count_tokens(text: str) -> int:
    """Count tokens by the demo rule: each run of word characters (``\\w+``) is one
    token, and so is each other non-whitespace character."""
    return len(_TOKEN_RE.findall(text))


def _pieces(text: str) -> list[str]:
    """Split ``text`` into one piece per token, each keeping its leading whitespace."""
    return _PIECE_RE.findall(text)


# --------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------

_FILLER = (
    "Here is a demo answer from the tokenward fake upstream.",
    "It costs nothing, knows nothing, and streams its words one or two at a time.",
    "A real model would charge for every one of these tokens,",
    "which is why the gateway asks each request for fresh proof of work.",
)


def reply_text(prompt: str, *, min_tokens: int = 0) -> str:
    """The assistant's answer to ``prompt`` (the last user message).

    ``You asked about "<first 12 words of the prompt>".`` followed by fixed filler
    sentences until the reply has at least 40 words and at least ``min_tokens`` tokens.
    """
    words = prompt.split()
    topic = " ".join(words[:TOPIC_MAX_WORDS]) + (" ..." if len(words) > TOPIC_MAX_WORDS else "")
    parts = [f'You asked about "{topic or "nothing"}".']
    n_words = len(parts[0].split())
    n_tokens = count_tokens(parts[0])
    i = 0
    while n_words < REPLY_MIN_WORDS or n_tokens < min_tokens:
        sentence = _FILLER[i % len(_FILLER)]
        parts.append(sentence)
        n_words += len(sentence.split())
        n_tokens += count_tokens(sentence)
        i += 1
    text = " ".join(parts)
    return text if text.endswith(".") else text.rstrip(",") + "."


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply cut to the request's token limit, as pieces of one token each."""

    pieces: tuple[str, ...]
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces)

    def deltas(self, chunks: int | None) -> list[tuple[str, int]]:
        """``(text, tokens)`` per streamed delta: two tokens each, or ``chunks`` deltas."""
        n = len(self.pieces)
        if chunks is None:
            sizes = [min(2, n - i) for i in range(0, n, 2)]
        else:
            count = max(1, min(chunks, n))
            base, extra = divmod(n, count)
            sizes = [base + (1 if i < extra else 0) for i in range(count)]
        out: list[tuple[str, int]] = []
        start = 0
        for size in sizes:
            out.append(("".join(self.pieces[start : start + size]), size))
            start += size
        return out


def make_reply(prompt: str, max_tokens: int | None, chunks: int | None) -> Reply:
    pieces = _pieces(reply_text(prompt, min_tokens=chunks or 0))
    if max_tokens is not None and len(pieces) > max_tokens:
        return Reply(tuple(pieces[:max_tokens]), truncated=True)
    return Reply(tuple(pieces), truncated=False)


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------


class BadRequest(Exception):
    """A request the demo refuses with 400, in the error shape of its API flavour."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class LLMCall:
    """What the demo needs to know about one parsed LLM request."""

    model: str
    prompt: str  # the last user message: the reply is derived from it
    prompt_tokens: int  # all text in the request that a model would read
    max_tokens: int | None
    stream: bool
    include_usage: bool = False


def _text_of(content: object) -> str:
    """Text of a message's ``content``: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _messages(body: dict[str, Any], name: str = "messages") -> list[dict[str, Any]]:
    messages = body.get(name)
    if messages is None:
        raise BadRequest(f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest(f"'{name}' must be an array of message objects.", param=name)
    return messages


def _last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role", "user") == "user":
            return _text_of(message.get("content"))
    return ""


def _tokens_in(texts: Iterable[str]) -> int:
    return sum(count_tokens(text) for text in texts)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else DEFAULT_MODEL


def _max_tokens(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{name}' must be a positive integer.", param=name)
        return value
    return None


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def parse_chat(body: dict[str, Any]) -> LLMCall:
    messages = _messages(body)
    return LLMCall(
        model=_model(body),
        prompt=_last_user_text(messages),
        prompt_tokens=_tokens_in(_text_of(m.get("content")) for m in messages),
        max_tokens=_max_tokens(body, "max_completion_tokens", "max_tokens"),
        stream=body.get("stream") is True,
        include_usage=_include_usage(body),
    )


def parse_completion(body: dict[str, Any]) -> LLMCall:
    prompt = body.get("prompt")
    if prompt is None:
        raise BadRequest("Missing required parameter: 'prompt'.", param="prompt")
    if isinstance(prompt, str):
        texts = [prompt]
    elif isinstance(prompt, list):
        texts = [p for p in prompt if isinstance(p, str)]
    else:
        raise BadRequest("'prompt' must be a string or an array of strings.", param="prompt")
    return LLMCall(
        model=_model(body),
        prompt=texts[-1] if texts else "",
        prompt_tokens=_tokens_in(texts),
        max_tokens=_max_tokens(body, "max_tokens"),
        stream=body.get("stream") is True,
        include_usage=_include_usage(body),
    )


def parse_responses(body: dict[str, Any]) -> LLMCall:
    items = body.get("input")
    if items is None:
        raise BadRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadRequest("'input' must be a string or an array of input items.", param="input")
    instructions = body.get("instructions")
    texts = [instructions] if isinstance(instructions, str) else []
    texts += [_text_of(item.get("content")) for item in items]
    return LLMCall(
        model=_model(body),
        prompt=_last_user_text([i for i in items if "content" in i]),
        prompt_tokens=_tokens_in(texts),
        max_tokens=_max_tokens(body, "max_output_tokens"),
        stream=body.get("stream") is True,
    )


def parse_anthropic(body: dict[str, Any]) -> LLMCall:
    messages = _messages(body)
    max_tokens = _max_tokens(body, "max_tokens")
    if max_tokens is None:
        raise BadRequest("max_tokens: Field required", param="max_tokens")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise BadRequest("system: Input should be a string or a list of text blocks")
    texts = [_text_of(system)] + [_text_of(m.get("content")) for m in messages]
    return LLMCall(
        model=_model(body),
        prompt=_last_user_text(messages),
        prompt_tokens=_tokens_in(texts),
        max_tokens=max_tokens,
        stream=body.get("stream") is True,
    )


def parse_custom(body: dict[str, Any]) -> LLMCall:
    messages = _messages(body)
    return LLMCall(
        model=DEFAULT_MODEL,
        prompt=_last_user_text(messages),
        prompt_tokens=_tokens_in(_text_of(m.get("content")) for m in messages),
        max_tokens=None,
        stream=body.get("stream") is True,
    )


# --------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------

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
# Server-sent events
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: bytes  # the whole event, blank line included
    tokens: int = 0  # completion tokens this event carries


def sse(payload: object, *, event: str | None = None, tokens: int = 0) -> SSEEvent:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return SSEEvent(head + b"data: " + data + b"\n\n", tokens)


SSE_DONE = sse(b"[DONE]")


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
# Wire formats: one builder per flavour, JSON body and SSE events
# --------------------------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _openai_usage(call: LLMCall, reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": reply.tokens,
        "total_tokens": call.prompt_tokens + reply.tokens,
    }


def _openai_finish(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def chat_json(call: LLMCall, reply: Reply) -> dict[str, Any]:
    return {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply.text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": _openai_finish(reply),
            }
        ],
        "usage": _openai_usage(call, reply),
        "system_fingerprint": None,
    }


def chat_events(call: LLMCall, reply: Reply, chunks: int | None) -> list[SSEEvent]:
    base: dict[str, Any] = {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": None,
    }
    if call.include_usage:
        base["usage"] = None  # as OpenAI does: null on every chunk but the last

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    events = [sse(chunk({"role": "assistant", "content": "", "refusal": None}))]
    events += [sse(chunk({"content": text}), tokens=n) for text, n in reply.deltas(chunks)]
    events.append(sse(chunk({}, _openai_finish(reply))))
    if call.include_usage:
        events.append(sse({**base, "choices": [], "usage": _openai_usage(call, reply)}))
    events.append(SSE_DONE)
    return events


def completion_json(call: LLMCall, reply: Reply) -> dict[str, Any]:
    return {
        "id": _new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "text": reply.text,
                "index": 0,
                "logprobs": None,
                "finish_reason": _openai_finish(reply),
            }
        ],
        "usage": _openai_usage(call, reply),
    }


def completion_events(call: LLMCall, reply: Reply, chunks: int | None) -> list[SSEEvent]:
    base: dict[str, Any] = {
        "id": _new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": call.model,
    }

    def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    events = [sse(chunk(text), tokens=n) for text, n in reply.deltas(chunks)]
    events.append(sse(chunk("", _openai_finish(reply))))
    if call.include_usage:
        events.append(sse({**base, "choices": [], "usage": _openai_usage(call, reply)}))
    events.append(SSE_DONE)
    return events


def _response_message(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content if text or status != "in_progress" else [],
    }


def _response_object(resp_id: str, call: LLMCall, reply: Reply | None, item_id: str, created: int) -> dict[str, Any]:
    """A Responses API ``response``; ``reply=None`` gives the in-progress snapshot."""
    status = "in_progress" if reply is None else "incomplete" if reply.truncated else "completed"
    usage = None
    if reply is not None:
        usage = {
            "input_tokens": call.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": reply.tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": call.prompt_tokens + reply.tokens,
        }
    item_status = "completed" if status == "completed" else "incomplete"
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "completed_at": None if reply is None else int(time.time()),
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None,
        "max_output_tokens": call.max_tokens,
        "model": call.model,
        "output": [] if reply is None else [_response_message(item_id, reply.text, item_status)],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def responses_json(call: LLMCall, reply: Reply) -> dict[str, Any]:
    return _response_object(_new_id("resp_"), call, reply, _new_id("msg_"), int(time.time()))


def responses_events(call: LLMCall, reply: Reply, chunks: int | None) -> list[SSEEvent]:
    resp_id, item_id, created = _new_id("resp_"), _new_id("msg_"), int(time.time())
    final = _response_object(resp_id, call, reply, item_id, created)
    pending = _response_object(resp_id, call, None, item_id, created)
    item_status = final["output"][0]["status"]
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    payloads: list[tuple[dict[str, Any], int]] = [
        ({"type": "response.created", "response": pending}, 0),
        ({"type": "response.in_progress", "response": pending}, 0),
        (
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": _response_message(item_id, "", "in_progress"),
            },
            0,
        ),
        ({"type": "response.content_part.added", **where, "part": empty_part}, 0),
    ]
    payloads += [
        ({"type": "response.output_text.delta", **where, "delta": text, "logprobs": []}, n)
        for text, n in reply.deltas(chunks)
    ]
    done_part = {**empty_part, "text": reply.text}
    payloads += [
        ({"type": "response.output_text.done", **where, "text": reply.text, "logprobs": []}, 0),
        ({"type": "response.content_part.done", **where, "part": done_part}, 0),
        (
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": _response_message(item_id, reply.text, item_status),
            },
            0,
        ),
        ({"type": f"response.{final['status']}", "response": final}, 0),
    ]
    return [
        sse({**payload, "sequence_number": seq}, event=payload["type"], tokens=n)
        for seq, (payload, n) in enumerate(payloads)
    ]


def _anthropic_stop(reply: Reply) -> str:
    return "max_tokens" if reply.truncated else "end_turn"


def anthropic_json(call: LLMCall, reply: Reply) -> dict[str, Any]:
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": _anthropic_stop(reply),
        "stop_sequence": None,
        "usage": {"input_tokens": call.prompt_tokens, "output_tokens": reply.tokens},
    }


def anthropic_events(call: LLMCall, reply: Reply, chunks: int | None) -> list[SSEEvent]:
    message = {
        **anthropic_json(call, reply),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": call.prompt_tokens, "output_tokens": 1},
    }

    def event(name: str, payload: dict[str, Any], tokens: int = 0) -> SSEEvent:
        return sse({"type": name, **payload}, event=name, tokens=tokens)

    events = [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("ping", {}),
    ]
    events += [
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}}, n)
        for t, n in reply.deltas(chunks)
    ]
    events += [
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta",
            {
                "delta": {"stop_reason": _anthropic_stop(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.tokens},
            },
        ),
        event("message_stop", {}),
    ]
    return events


def custom_json(call: LLMCall, reply: Reply) -> dict[str, Any]:
    return {"reply": reply.text, "usage": _openai_usage(call, reply)}


def custom_events(call: LLMCall, reply: Reply, chunks: int | None) -> list[SSEEvent]:
    events = [sse({"delta": text}, tokens=n) for text, n in reply.deltas(chunks)]
    events.append(SSE_DONE)
    return events


@dataclass(frozen=True, slots=True)
class Flavour:
    """How one LLM endpoint parses a request and renders a reply."""

    parse: Callable[[dict[str, Any]], LLMCall]
    to_json: Callable[[LLMCall, Reply], dict[str, Any]]
    to_events: Callable[[LLMCall, Reply, int | None], list[SSEEvent]]


FLAVOURS: dict[str, Flavour] = {
    "/v1/chat/completions": Flavour(parse_chat, chat_json, chat_events),
    "/v1/completions": Flavour(parse_completion, completion_json, completion_events),
    "/v1/responses": Flavour(parse_responses, responses_json, responses_events),
    "/v1/messages": Flavour(parse_anthropic, anthropic_json, anthropic_events),
    "/api/chat": Flavour(parse_custom, custom_json, custom_events),
}


# --------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------


def embedding_vector(item: str | list[int], dims: int = EMBEDDING_DIMS) -> list[float]:
    """A deterministic unit vector derived from a hash of the input."""
    data = item.encode() if isinstance(item, str) else orjson.dumps(item)
    raw = [(b - 127.5) / 127.5 for b in hashlib.shake_256(data).digest(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def _embedding_inputs(body: dict[str, Any]) -> list[str | list[int]]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(x, int) and not isinstance(x, bool) for x in value):
            return [value]  # one input given as token ids
        if all(isinstance(x, str) or isinstance(x, list) for x in value):
            return value
    raise BadRequest("'input' must be a string, an array of strings or of token arrays.", "input")


def embeddings_json(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    inputs = _embedding_inputs(body)
    dims = body.get("dimensions", EMBEDDING_DIMS)
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_EMBEDDING_DIMS:
        raise BadRequest(f"'dimensions' must be an integer from 1 to {MAX_EMBEDDING_DIMS}.")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vector = embedding_vector(item, dims)
        encoded: list[float] | str = vector
        if as_base64:
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count_tokens(i) if isinstance(i, str) else len(i) for i in inputs)
    response = {
        "object": "list",
        "data": data,
        "model": _model(body),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return response, tokens


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
    call = LLMCall(_model(body), "", tokens, None, stream=False)
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


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


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
