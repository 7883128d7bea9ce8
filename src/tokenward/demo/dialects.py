"""Writing a reply in each API's wire format: the JSON body and the SSE events.

One builder pair per flavour (OpenAI chat, legacy completions, Responses, Anthropic
Messages, a site's own widget); :data:`FLAVOURS` ties each path to how it parses a request
and renders a reply. Embeddings are answered here too. Sending the events (delays, client
disconnects) is the app's work (:class:`tokenward.demo.app.EventStream`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .calls import (
    BadRequest,
    LLMCall,
    model_of,
    parse_anthropic,
    parse_chat,
    parse_completion,
    parse_custom,
    parse_responses,
)
from .replies import Reply, count_tokens

EMBEDDING_DIMS = 16
MAX_EMBEDDING_DIMS = 1024

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
        "model": model_of(body),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return response, tokens
