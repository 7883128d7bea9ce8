"""Exact usage from real demo-upstream responses, fed the way the proxy receives them.

The demo upstream runs as a subprocess (``demo_upstream`` fixture) and reports its own
token counts at ``/_demo/stats``; every test compares the meter's result with them.
Streams are split at every byte boundary, fed one byte at a time, cut off halfway, and
passed through a small aiohttp proxy to the official ``openai`` SDK.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from tests.conftest import Upstream

from tokenward.demo.upstream import count_tokens
from tokenward.money import Usage, UsageMeter, default_estimator, prepare_request, usage_from_json

PROMPT = [{"role": "user", "content": "What does tokenward do, in one sentence?"}]


def demo_usage(up: Upstream) -> tuple[int, int]:
    last = up.stats()["last_usage"]
    return last["input_tokens"], last["output_tokens"]


async def fetch(up: Upstream, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    async with aiohttp.ClientSession() as session:
        async with session.post(up.url + path, json=body, headers=headers or {}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.read()


def run(meter: UsageMeter, chunks: list[bytes]) -> bytes:
    return b"".join(meter.feed(c) for c in chunks) + meter.end()


def events(stream: bytes) -> list[dict[str, Any] | str]:
    """Parse SSE the way the SDKs do: events end at a blank line; data lines are JSON."""
    out: list[dict[str, Any] | str] = []
    for block in stream.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if data:
            raw = b"\n".join(data)
            out.append(raw.decode() if raw == b"[DONE]" else orjson.loads(raw))
    return out


def is_usage_chunk(event: dict[str, Any] | str) -> bool:
    return isinstance(event, dict) and event.get("choices") == [] and isinstance(event.get("usage"), dict)


# -- prepare_request ------------------------------------------------------------------


def test_prepare_request_injects_include_usage_only_when_missing() -> None:
    body = {"model": "demo-1", "messages": PROMPT, "stream": True}
    prepared = prepare_request(body, "openai", "/v1/chat/completions")
    assert prepared.inject_usage and prepared.body is not None
    assert orjson.loads(prepared.body)["stream_options"] == {"include_usage": True}
    assert "stream_options" not in body  # the client's body is not touched

    keeps = {**body, "stream_options": {"include_obfuscation": False}}
    assert orjson.loads(prepare_request(keeps, "openai", "/v1/completions").body or b"")["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }
    explicit_false = {**body, "stream_options": {"include_usage": False}}
    assert prepare_request(explicit_false, "openai", "/v1/chat/completions").inject_usage

    asked = {**body, "stream_options": {"include_usage": True}}
    assert prepare_request(asked, "openai", "/v1/chat/completions") == prepare_request({}, "openai", "/x")
    assert prepare_request({**body, "stream": False}, "openai", "/v1/chat/completions").body is None
    assert prepare_request(body, "openai", "/v1/responses").body is None  # usage comes anyway
    assert prepare_request(body, "anthropic", "/v1/messages").body is None
    assert prepare_request(body, "custom", "/api/chat").body is None
    assert not prepare_request(body, "openai", "/v1/chat/completions", want_usage=False).inject_usage


def test_prepare_request_can_also_cap_the_output() -> None:
    body = {"model": "demo-1", "messages": PROMPT, "stream": True, "max_tokens": 5000}
    prepared = prepare_request(body, "openai", "/v1/chat/completions", output_limit=100)
    assert prepared.inject_usage and prepared.limited
    sent = orjson.loads(prepared.body or b"")
    assert sent["max_tokens"] == 100 and sent["stream_options"]["include_usage"] is True
    quiet = prepare_request(
        {**body, "stream": False, "max_tokens": 10}, "openai", "/v1/chat/completions", output_limit=100
    )
    assert quiet.body is None and not quiet.limited


# -- JSON bodies ----------------------------------------------------------------------

JSON_CASES = [
    ("openai", "/v1/chat/completions", {"model": "demo-1", "messages": PROMPT}),
    ("openai", "/v1/completions", {"model": "demo-1", "prompt": "Say something"}),
    ("openai", "/v1/responses", {"model": "demo-1", "input": "What is this?", "instructions": "Be brief"}),
    ("openai", "/v1/embeddings", {"model": "demo-1", "input": ["one two three", "four"]}),
    ("anthropic", "/v1/messages", {"model": "demo-1", "max_tokens": 50, "system": "Hi", "messages": PROMPT}),
    ("custom", "/api/chat", {"messages": PROMPT}),
]


@pytest.mark.parametrize("flavour, path, body", JSON_CASES, ids=[c[1] for c in JSON_CASES])
async def test_json_usage_is_exact(demo_upstream: Upstream, flavour: str, path: str, body: dict[str, Any]) -> None:
    raw = await fetch(demo_upstream, path, body)
    expected = demo_usage(demo_upstream)
    assert usage_from_json(raw, input_estimate=999) == Usage(*expected, exact=True)
    # The same through the meter, fed in pieces as a proxy would.
    meter = UsageMeter(flavour, path, sse=False, input_estimate=999)
    assert run(meter, [raw[:7], raw[7:100], raw[100:]]) == raw
    assert meter.result() == Usage(*expected, exact=True)


def test_json_without_usage_is_estimated_from_the_text() -> None:
    body = orjson.dumps({"choices": [{"message": {"content": "Hello, world!"}}]})
    assert usage_from_json(body, input_estimate=12, count=count_tokens) == Usage(12, 4, exact=False)
    anthropic = orjson.dumps({"content": [{"type": "text", "text": "Hi there."}]})
    assert usage_from_json(anthropic, input_estimate=3, count=count_tokens) == Usage(3, 3, exact=False)
    responses = orjson.dumps({"output": [{"content": [{"type": "output_text", "text": "a b"}]}]})
    assert usage_from_json(responses, input_estimate=0, count=count_tokens) == Usage(0, 2, exact=False)
    assert usage_from_json(b'{"error": {"message": "bad"}}', input_estimate=7) == Usage(7, 0, exact=False)
    assert usage_from_json(b"not json", input_estimate=7) == Usage(7, 0, exact=False)
    anthropic_cached = orjson.dumps(
        {"usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20,
                   "output_tokens": 9}}
    )  # fmt: skip
    assert usage_from_json(anthropic_cached, input_estimate=0) == Usage(125, 9, exact=True)


# -- streams --------------------------------------------------------------------------

STREAM_CASES = [
    ("openai", "/v1/chat/completions", {"model": "demo-1", "messages": PROMPT, "stream": True}),
    ("openai", "/v1/completions", {"model": "demo-1", "prompt": "Say something", "stream": True}),
    ("openai", "/v1/responses", {"model": "demo-1", "input": "What is this?", "stream": True}),
    ("anthropic", "/v1/messages", {"model": "demo-1", "max_tokens": 60, "messages": PROMPT, "stream": True}),
]


@pytest.mark.parametrize("flavour, path, body", STREAM_CASES, ids=[c[1] for c in STREAM_CASES])
async def test_stream_usage_is_exact_and_injected_usage_is_stripped(
    demo_upstream: Upstream, flavour: str, path: str, body: dict[str, Any]
) -> None:
    prepared = prepare_request(body, flavour, path)
    sent = orjson.loads(prepared.body) if prepared.body is not None else body
    raw = await fetch(demo_upstream, path, sent)
    expected = Usage(*demo_usage(demo_upstream), exact=True)
    meter = UsageMeter(flavour, path, inject_usage=prepared.inject_usage, input_estimate=1)
    forwarded = run(meter, [raw[i : i + 100] for i in range(0, len(raw), 100)])
    assert meter.result() == expected
    upstream_events, client_events = events(raw), events(forwarded)
    if prepared.inject_usage:  # the client never asked: it must not see the usage chunk
        assert sum(map(is_usage_chunk, upstream_events)) == 1
        assert client_events == [e for e in upstream_events if not is_usage_chunk(e)]
        assert forwarded.endswith(b"data: [DONE]\n\n")
    else:
        assert forwarded == raw


async def test_client_that_asked_for_usage_still_gets_it(demo_upstream: Upstream) -> None:
    body = {"model": "demo-1", "messages": PROMPT, "stream": True, "stream_options": {"include_usage": True}}
    prepared = prepare_request(body, "openai", "/v1/chat/completions")
    assert prepared.body is None and not prepared.inject_usage
    raw = await fetch(demo_upstream, "/v1/chat/completions", body)
    meter = UsageMeter("openai", "/v1/chat/completions")
    assert run(meter, [raw]) == raw
    assert meter.result() == Usage(*demo_usage(demo_upstream), exact=True)
    assert sum(map(is_usage_chunk, events(raw))) == 1


SPLIT_CASES = [
    ("openai", "/v1/chat/completions", {"model": "demo-1", "messages": PROMPT, "stream": True, "max_tokens": 3}),
    ("openai", "/v1/responses", {"model": "demo-1", "input": "Hi", "stream": True, "max_output_tokens": 2}),
    ("anthropic", "/v1/messages", {"model": "demo-1", "max_tokens": 3, "messages": PROMPT, "stream": True}),
]


@pytest.mark.parametrize("flavour, path, body", SPLIT_CASES, ids=[c[1] for c in SPLIT_CASES])
async def test_every_split_point_gives_the_same_result(
    demo_upstream: Upstream, flavour: str, path: str, body: dict[str, Any]
) -> None:
    prepared = prepare_request(body, flavour, path)
    raw = await fetch(demo_upstream, path, orjson.loads(prepared.body) if prepared.body else body)
    expected_usage = Usage(*demo_usage(demo_upstream), exact=True)

    def check(data: bytes, chunks: list[bytes]) -> None:
        meter = UsageMeter(flavour, path, inject_usage=prepared.inject_usage)
        forwarded = run(meter, chunks)
        assert meter.result() == expected_usage
        if prepared.inject_usage:
            assert events(forwarded) == [e for e in events(data) if not is_usage_chunk(e)]
        else:
            assert forwarded == data

    for data in (raw, raw.replace(b"\n", b"\r\n")):  # CRLF line endings are SSE too
        for i in range(len(data) + 1):
            check(data, [data[:i], data[i:]])
        check(data, [data[i : i + 1] for i in range(len(data))])
        for i in range(0, len(data), 7):  # three pieces
            check(data, [data[:i], data[i : i + 13], data[i + 13 :]])


CUT_CASES = [
    ("openai", "/v1/chat/completions", {"model": "demo-1", "messages": PROMPT, "stream": True}),
    ("openai", "/v1/completions", {"model": "demo-1", "prompt": "Say something", "stream": True}),
    ("openai", "/v1/responses", {"model": "demo-1", "input": "What is this?", "stream": True}),
    ("anthropic", "/v1/messages", {"model": "demo-1", "max_tokens": 60, "messages": PROMPT, "stream": True}),
    ("custom", "/api/chat", {"messages": PROMPT, "stream": True}),
]


@pytest.mark.parametrize("flavour, path, body", CUT_CASES, ids=[c[1] for c in CUT_CASES])
async def test_client_disconnect_is_charged_for_what_was_streamed(
    demo_upstream: Upstream, flavour: str, path: str, body: dict[str, Any]
) -> None:
    """The proxy stops reading halfway and closes the upstream: the demo counts what it
    sent, the meter counts what it saw; they agree token for token (demo rule), and the
    production estimate (tiktoken) is not below it."""
    prepared = prepare_request(body, flavour, path)
    sent = orjson.loads(prepared.body) if prepared.body else body
    aborted_before = demo_upstream.stats()["streams_aborted"]
    estimator = default_estimator()
    input_estimate = estimator.estimate_input(sent)
    meters = [
        UsageMeter(flavour, path, inject_usage=prepared.inject_usage, input_estimate=input_estimate, count=count)
        for count in (count_tokens, estimator.counter("demo-1"))
    ]
    seen = 0
    async with aiohttp.ClientSession() as session:
        resp = await session.post(demo_upstream.url + path, json=sent, headers={"x-demo-chunk-delay": "0.05"})
        async for chunk in resp.content.iter_any():
            for meter in meters:
                meter.feed(chunk)
            seen += chunk.count(b"\n\n")
            if seen >= 8:
                break
        resp.close()  # what the proxy does when its client leaves
    deadline = time.monotonic() + 5
    while (stats := demo_upstream.stats())["streams_aborted"] == aborted_before:
        assert time.monotonic() < deadline, "the demo did not see the disconnect"
        await asyncio.sleep(0.02)
    last = stats["last_usage"]
    assert last["aborted"] and last["output_tokens"] > 0
    by_rule, estimated = (m.result() for m in meters)
    assert not by_rule.exact
    assert by_rule.output_tokens == last["output_tokens"]
    assert last["output_tokens"] <= estimated.output_tokens <= 2 * last["output_tokens"]
    if flavour == "anthropic":  # message_start carried the exact input
        assert by_rule.input_tokens == last["input_tokens"]
    else:
        assert by_rule.input_tokens == input_estimate >= last["input_tokens"]


def test_stream_without_usage_is_estimated_and_odd_input_is_survived() -> None:
    meter = UsageMeter("openai", "/v1/chat/completions", input_estimate=5, count=count_tokens)
    stream = (
        b": keep-alive comment\n\n"
        b'data: {"choices":[{"delta":{"content":"Hello, "}}]}\n\n'
        b"data: not json\n\n"
        b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}\n\n'
        b'event: x\ndata: {"choices":[{"text":"world"}]}\n\n'
        b'data: {"usage": "nonsense"}\n\n'
        b"data: [DONE]\n\n"
    )
    assert run(meter, [stream]) == stream
    assert meter.result() == Usage(5, count_tokens("Hello, f{}world"), exact=False)


def test_a_stream_that_is_not_sse_is_never_held_back() -> None:
    meter = UsageMeter("openai", "/v1/chat/completions", inject_usage=True)
    blob = b"x" * (1 << 20) + b"y" * 10  # no blank line anywhere
    forwarded = meter.feed(blob[:1000]) + meter.feed(blob[1000:])
    assert forwarded + meter.end() == blob


def test_large_streams_keep_bounded_raw_state() -> None:
    meter = UsageMeter("openai", "/v1/chat/completions", count=count_tokens)
    event = b'data: {"choices":[{"delta":{"content":"word "}}]}\n\n'
    for _ in range(60_000):  # ~3 MB
        meter.feed(event)
    assert meter._raw_size <= (1 << 20) + len(event)
    assert meter.result() == Usage(0, 60_000, exact=False)


# -- through a proxy, to the official SDK ---------------------------------------------


class MiniProxy:
    """The wiring the gateway's proxy needs, in 30 lines: prepare, forward, meter."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.results: list[Usage] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        flavour = "anthropic" if path == "/v1/messages" else "openai"
        body = await request.json()
        prepared = prepare_request(body, flavour, path)
        async with aiohttp.ClientSession() as session:
            upstream = await session.post(
                self.upstream + path,
                data=prepared.body if prepared.body is not None else await request.read(),
                headers={"content-type": "application/json"},
            )
            sse = upstream.content_type == "text/event-stream"
            meter = UsageMeter(flavour, path, inject_usage=prepared.inject_usage, sse=sse)
            response = web.StreamResponse(status=upstream.status, headers={"content-type": upstream.content_type})
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    out = meter.feed(chunk)
                    if out:
                        await response.write(out)
                tail = meter.end()
                if tail:
                    await response.write(tail)
            finally:
                upstream.close()
                self.results.append(meter.result())
            await response.write_eof()
            return response


@pytest.fixture
async def proxy(demo_upstream: Upstream) -> AsyncIterator[tuple[str, MiniProxy]]:
    mini = MiniProxy(demo_upstream.url)
    app = web.Application()
    app.router.add_post("/{tail:.*}", mini.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", mini
    await runner.cleanup()


async def test_sdk_stream_through_a_metering_proxy(proxy: tuple[str, MiniProxy], demo_upstream: Upstream) -> None:
    url, mini = proxy
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=10)
    plain = await client.chat.completions.create(model="demo-1", messages=PROMPT)  # type: ignore[arg-type]
    assert mini.results[-1] == Usage(plain.usage.prompt_tokens, plain.usage.completion_tokens, exact=True)  # type: ignore[union-attr]

    stream = await client.chat.completions.create(model="demo-1", messages=PROMPT, stream=True)  # type: ignore[arg-type]
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None and chunk.choices for chunk in chunks)  # no injected usage chunk
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content
    assert mini.results[-1] == Usage(*demo_usage(demo_upstream), exact=True)

    asked = await client.chat.completions.create(
        model="demo-1",
        messages=PROMPT,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    last = [chunk async for chunk in asked][-1]
    assert last.usage is not None and last.usage.completion_tokens == mini.results[-1].output_tokens
    await client.close()


# -- cost -----------------------------------------------------------------------------


async def test_bench_feed_per_chunk(demo_upstream: Upstream) -> None:
    """Run with -s to see the cost of metering: µs per SSE chunk fed (one event each)."""
    body = {"model": "demo-1", "messages": PROMPT, "stream": True, "stream_options": {"include_usage": True}}
    raw = await fetch(demo_upstream, "/v1/chat/completions", body)
    chunks = [c + b"\n\n" for c in raw.split(b"\n\n") if c]
    for label, inject in (("pass-through", False), ("stripping", True)):
        rounds = 300
        start = time.perf_counter()
        for _ in range(rounds):
            meter = UsageMeter("openai", "/v1/chat/completions", inject_usage=inject)
            for chunk in chunks:
                meter.feed(chunk)
            meter.end()
            usage = meter.result()
        per = (time.perf_counter() - start) / (rounds * len(chunks)) * 1e6
        assert usage.exact
        print(f"\n[bench] UsageMeter.feed {label}: {per:.2f} µs per chunk ({len(chunks)} chunks, result included)")


def test_upstream_errors_without_usage_cost_nothing() -> None:
    error = b'{"error": {"message": "model overloaded", "type": "server_error"}}'
    meter = UsageMeter("openai", "/v1/chat/completions", sse=False, status=503, input_estimate=40)
    assert run(meter, [error]) == error
    assert meter.result() == Usage(0, 0, exact=False)
    cut = UsageMeter("openai", "/v1/chat/completions", status=500, input_estimate=40, count=count_tokens)
    run(cut, [b'data: {"choices":[{"delta":{"content":"partial answer"}}]}\n\n'])
    assert cut.result() == Usage(0, 0, exact=False)
    billed = UsageMeter("openai", "/v1/chat/completions", sse=False, status=400)
    run(billed, [b'{"error": {}, "usage": {"prompt_tokens": 3, "completion_tokens": 0}}'])
    assert billed.result() == Usage(3, 0, exact=True)  # usage present: it is what was billed


def test_huge_json_bodies_keep_only_their_tail() -> None:
    row = b'{"object":"embedding","index":0,"embedding":[' + b"0.123456," * 1000 + b"0.1]},"
    body = b'{"object":"list","data":[' + row * 1200 + b'{"index":1}],"model":"m",'
    body += b'"usage":{"prompt_tokens":777,"total_tokens":777}}'
    assert len(body) > 10 << 20
    meter = UsageMeter("openai", "/v1/embeddings", sse=False, input_estimate=5)
    assert run(meter, [body[i : i + 65536] for i in range(0, len(body), 65536)]) == body
    assert meter.result() == Usage(777, 0, exact=True)
    assert meter._json is None and len(meter._json_tail) <= 64 << 10
    no_usage = UsageMeter("openai", "/v1/embeddings", sse=False, input_estimate=5)
    run(no_usage, [row * 1200])
    assert no_usage.result() == Usage(5, 0, exact=False)


def test_lone_cr_streams_are_forwarded_without_delay() -> None:
    meter = UsageMeter("openai", "/v1/chat/completions", inject_usage=True)
    first = b'data: {"choices":[{"delta":{"content":"a"}}]}\r\r'
    assert meter.feed(first) == first  # not held until 1 MB
    assert meter.feed(b"data: [DONE]\r\r") == b"data: [DONE]\r\r"
