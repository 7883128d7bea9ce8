"""The official openai and anthropic SDKs through the gateway, with and without the helper."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import openai
import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway

from tokenward.log import read_recent
from tokenward.sdk.client import async_http_client, http_client

QUESTION = "How does tokenward stop stolen calls?"


def test_sdks_use_httpx2() -> None:
    # The helper plugs into the SDKs' own HTTP library: make sure it is the one they use.
    import httpx2

    assert isinstance(openai.OpenAI(api_key="x")._client, httpx2.Client)
    assert isinstance(anthropic.Anthropic(api_key="x")._client, httpx2.Client)


def test_openai_without_proof_raises_authentication_error(gateway: GatewayProc) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "hi"}])
    assert "fresh proof" in info.value.message
    assert info.value.body["code"] == "proof_required"
    assert info.value.response.headers["tokenward-decision"] == "challenge"


def test_anthropic_without_proof_raises_authentication_error(gateway: GatewayProc) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        client.messages.create(model="demo-1", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert "fresh proof" in str(info.value)
    assert info.value.body["error"]["type"] == "proof_required"


def test_openai_with_helper_plain_and_streaming(gateway: GatewayProc) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", http_client=http_client())
    reply = client.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": QUESTION}])
    assert QUESTION in reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model="demo-1", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == reply.choices[0].message.content
    assert usage is not None and usage.completion_tokens == reply.usage.completion_tokens
    # Other OpenAI routes go through too.
    assert client.embeddings.create(model="demo-1", input="hello").data[0].embedding
    assert QUESTION in client.responses.create(model="demo-1", input=QUESTION).output_text


def test_anthropic_with_helper_plain_and_streaming(gateway: GatewayProc) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="unused", http_client=http_client())
    message = client.messages.create(model="demo-1", max_tokens=200, messages=[{"role": "user", "content": QUESTION}])
    assert QUESTION in message.content[0].text
    with client.messages.stream(
        model="demo-1", max_tokens=200, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == message.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens


async def test_async_clients_with_helper(gateway: GatewayProc) -> None:
    oa = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", http_client=async_http_client())
    reply = await oa.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "async?"}])
    assert "async?" in reply.choices[0].message.content
    an = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="unused", http_client=async_http_client())
    text = ""
    async with an.messages.stream(
        model="demo-1", max_tokens=100, messages=[{"role": "user", "content": "async stream?"}]
    ) as stream:
        async for piece in stream.text_stream:
            text += piece
    assert "async stream?" in text


def test_a_challenge_answered_with_work_alone_is_degraded(tmp_path: Path, demo_upstream: Upstream) -> None:
    """The helper solves the harder challenge a risky call gets and retries; with nothing
    new about the caller the retry is degraded, not answered in full (docs/risk.md)."""
    rule = {"name": "python-sdk", "action": "weigh", "header": {"user-agent": "^OpenAI/Python"}, "weight": 3}
    gw = start_gateway(tmp_path, demo_upstream.url, {"rules": [rule]})
    try:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", http_client=http_client(), max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="demo-1", messages=[{"role": "user", "content": QUESTION}]
        )
        assert raw.headers["tokenward-decision"] == "degrade"
        assert QUESTION in raw.parse().choices[0].message.content  # a person still gets an answer
        deadline, rows = time.monotonic() + 5, []
        while len(rows) < 2 and time.monotonic() < deadline:
            rows = list(read_recent(gw.db, 10))
            time.sleep(0.05)
        by_action = {r["action"]: r for r in rows}
        assert by_action["challenge"]["code"] == "challenge"
        assert by_action["degrade"]["name"] == "risk/3/answered"
        assert "challenge/answered" in by_action["degrade"]["reasons"]
    finally:
        gw.stop()
