"""Reading an LLM request: each API flavour's JSON body into one :class:`LLMCall`.

A body the demo cannot read raises :class:`BadRequest`; the app answers it with 400 in the
error shape of the flavour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .replies import count_tokens

DEFAULT_MODEL = "demo-1"
MODELS = ("demo-1", "demo-mini")


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


def model_of(body: dict[str, Any]) -> str:
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
        model=model_of(body),
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
        model=model_of(body),
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
        model=model_of(body),
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
        model=model_of(body),
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
