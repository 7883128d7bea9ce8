"""Request bodies exactly as the official SDKs build them (captured by a mock transport)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import openai
import orjson

from tokenward.decision import Flavour
from tokenward.facts import LLMCall, parse_call


def _capture(make: Any, call: Any, error: type[Exception]) -> dict[str, Any]:
    seen: list[bytes] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.content)
        return httpx2.Response(500, json={"error": {"message": "capture only"}})

    client = make(httpx2.Client(transport=httpx2.MockTransport(handler)))
    try:
        call(client)
    except error:
        pass
    assert len(seen) == 1
    body: dict[str, Any] = json.loads(seen[0])
    return body


def openai_chat(**kwargs: Any) -> dict[str, Any]:
    return _capture(
        lambda h: openai.OpenAI(api_key="sk-test", base_url="http://capture.invalid/v1", max_retries=0, http_client=h),
        lambda c: c.chat.completions.create(**kwargs),
        openai.APIStatusError,
    )


def openai_responses(**kwargs: Any) -> dict[str, Any]:
    return _capture(
        lambda h: openai.OpenAI(api_key="sk-test", base_url="http://capture.invalid/v1", max_retries=0, http_client=h),
        lambda c: c.responses.create(**kwargs),
        openai.APIStatusError,
    )


def anthropic_messages(**kwargs: Any) -> dict[str, Any]:
    return _capture(
        lambda h: anthropic.Anthropic(
            api_key="sk-ant-test", base_url="http://capture.invalid", max_retries=0, http_client=h
        ),
        lambda c: c.messages.create(**kwargs),
        anthropic.APIStatusError,
    )


def call_of(body: dict[str, Any], flavour: Flavour = Flavour.OPENAI) -> LLMCall:
    call = parse_call(flavour, orjson.dumps(body))
    assert isinstance(call, LLMCall)
    return call


WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
