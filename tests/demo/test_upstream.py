"""The demo upstream, over real sockets, with the official SDKs as clients.

The server runs as ``python -m tokenward.demo.upstream --port 0`` in a subprocess, which
also exercises the command line; the tests talk to it only over HTTP.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# The documented token rule: a run of word characters, or one other non-space character.
TOKEN_RE = re.compile(r"\w+|[^\w\s]")

PROMPT = "What does tokenward do, in one sentence?"


def tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


def start_upstream(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenward.demo.upstream", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        pytest.fail(f"demo upstream did not start: {line!r}")
    return proc, match.group(1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    proc, base = start_upstream()
    yield base
    stop(proc)


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=5) as client:
        client.post("/_demo/reset").raise_for_status()
        yield client


@pytest.fixture
def oai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=5)


@pytest.fixture
def claude(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, timeout=5)


def stats(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/_demo/stats")
    response.raise_for_status()
    return response.json()


def user(text: str = PROMPT) -> list[Any]:  # one user message, for either SDK
    return [{"role": "user", "content": text}]


# --- OpenAI chat completions ----------------------------------------------------------


def test_chat_plain(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="demo-mini",
        messages=[{"role": "system", "content": "Be brief."}, *user()],
    )
    assert raw.headers["x-demo-upstream"] == "1"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "demo-mini"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    text = choice.message.content or ""
    assert text.startswith(f'You asked about "{PROMPT}".')
    assert len(text.split()) >= 40
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == tokens("Be brief.") + tokens(PROMPT)
    assert completion.usage.completion_tokens == tokens(text)
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens + completion.usage.completion_tokens)


def test_chat_max_tokens_truncates(oai: openai.OpenAI) -> None:
    for limit in ({"max_tokens": 7}, {"max_completion_tokens": 7}):
        completion = oai.chat.completions.create(model="demo-1", messages=user(), **limit)  # type: ignore[call-overload]
        choice = completion.choices[0]
        assert choice.finish_reason == "length"
        assert tokens(choice.message.content or "") == 7
        assert completion.usage is not None and completion.usage.completion_tokens == 7


def test_chat_stream_matches_plain(oai: openai.OpenAI) -> None:
    plain = oai.chat.completions.create(model="demo-1", messages=user()).choices[0].message.content
    chunks = list(oai.chat.completions.create(model="demo-1", messages=user(), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 10  # a word or two each
    assert "".join(deltas) == plain
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_chat_stream_include_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="demo-1",
            messages=user(),
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=9,
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == tokens(PROMPT)
    assert last.usage.completion_tokens == 9
    assert chunks[-2].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert tokens(text) == 9


# --- OpenAI legacy completions, responses, embeddings, models -------------------------


def test_completions_plain_and_stream(oai: openai.OpenAI) -> None:
    plain = oai.completions.create(model="demo-1", prompt=PROMPT)
    assert plain.object == "text_completion"
    text = plain.choices[0].text
    assert text.startswith(f'You asked about "{PROMPT}".')
    assert plain.usage is not None
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (
        tokens(PROMPT),
        tokens(text),
    )
    chunks = list(
        oai.completions.create(model="demo-1", prompt=PROMPT, stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == tokens(text)


def test_responses_plain(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="demo-1", input=PROMPT, instructions="Be brief.")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text.startswith(f'You asked about "{PROMPT}".')
    assert response.output[0].type == "message"
    assert response.usage is not None
    assert response.usage.input_tokens == tokens("Be brief.") + tokens(PROMPT)
    assert response.usage.output_tokens == tokens(response.output_text)
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_responses_stream(oai: openai.OpenAI) -> None:
    plain = oai.responses.create(model="demo-1", input=user()).output_text
    with oai.responses.stream(model="demo-1", input=user()) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == plain == final.output_text
    assert final.usage is not None and final.usage.output_tokens == tokens(plain)

    events = list(oai.responses.create(model="demo-1", input=PROMPT, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_max_output_tokens(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="demo-1", input=PROMPT, max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert tokens(response.output_text) == 16


def test_embeddings(oai: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it; ask for floats explicitly too.
    default = oai.embeddings.create(model="demo-embed", input="hello world")
    floats = oai.embeddings.create(model="demo-embed", input="hello world", encoding_format="float")
    a, b = default.data[0].embedding, floats.data[0].embedding
    assert len(a) == len(b) == 16
    assert all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))
    assert math.isclose(math.sqrt(sum(x * x for x in b)), 1.0, abs_tol=1e-4)
    assert default.usage.prompt_tokens == default.usage.total_tokens == 2

    many = oai.embeddings.create(model="demo-embed", input=["hello world", "other"])
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == a  # deterministic
    assert many.data[1].embedding != a
    assert many.usage.prompt_tokens == 3


def test_embeddings_base64_is_float32(http: httpx.Client) -> None:
    body = {"input": "hello world", "encoding_format": "base64", "dimensions": 8}
    data = http.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]
    assert len(struct.unpack("<8f", base64.b64decode(data))) == 8


def test_models(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == ["demo-1", "demo-mini"]


# --- Anthropic messages ---------------------------------------------------------------


def test_anthropic_plain(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="demo-1", max_tokens=1024, system="Be brief.", messages=user())
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f'You asked about "{PROMPT}".')
    assert message.usage.input_tokens == tokens("Be brief.") + tokens(PROMPT)
    assert message.usage.output_tokens == tokens(text)


def test_anthropic_stream(claude: anthropic.Anthropic) -> None:
    plain = claude.messages.create(model="demo-1", max_tokens=1024, messages=user())
    with claude.messages.stream(model="demo-1", max_tokens=1024, messages=user()) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == final.content[0].text == plain.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == tokens(PROMPT)
    assert final.usage.output_tokens == tokens(streamed)


def test_anthropic_stream_events_and_max_tokens(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model="demo-1", max_tokens=6, messages=user(), stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.usage.output_tokens == 1  # type: ignore[union-attr]
    delta = events[-2]
    assert delta.delta.stop_reason == "max_tokens"  # type: ignore[union-attr]
    assert delta.usage.output_tokens == 6  # type: ignore[union-attr]


def test_anthropic_errors(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    with pytest.raises(anthropic.BadRequestError):
        http_body = {"model": "demo-1", "messages": user()}  # no max_tokens
        claude.post("/v1/messages", body=http_body, cast_to=anthropic.types.Message)
    response = http.post("/v1/messages", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- the site's own chat endpoint, the page, errors -----------------------------------


def test_custom_chat_json_and_stream(http: httpx.Client, oai: openai.OpenAI) -> None:
    expected = oai.chat.completions.create(model="x", messages=user()).choices[0].message.content
    body = http.post("/api/chat", json={"messages": user()}).json()
    assert body["reply"] == expected
    assert body["usage"]["completion_tokens"] == tokens(expected or "")
    assert body["usage"]["prompt_tokens"] == tokens(PROMPT)

    with http.stream("POST", "/api/chat", json={"messages": user(), "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    deltas = [json.loads(line[6:])["delta"] for line in lines[:-1]]
    assert "".join(deltas) == expected


def test_demo_page(http: httpx.Client) -> None:
    response = http.get("/demo")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<script src="/.tokenward/sdk.js"></script>' in page
    for marker in ('id="prompt"', 'id="send"', 'id="messages"', 'id="proof-stats"'):
        assert marker in page
    assert "http://" not in page and "https://" not in page  # works offline


def test_errors_are_json(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", content=b"{oops")
    assert response.status_code == 400
    assert response.headers["x-demo-upstream"] == "1"
    assert response.json()["error"]["type"] == "invalid_request_error"
    response = http.post("/v1/chat/completions", json={"model": "demo-1"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- stats, streaming timing, aborted streams -----------------------------------------


def test_stats_count_requests_and_streams(http: httpx.Client, oai: openai.OpenAI) -> None:
    assert stats(http)["requests"] == 0
    oai.chat.completions.create(model="demo-1", messages=user(), max_tokens=3)
    list(oai.chat.completions.create(model="demo-1", messages=user(), stream=True))
    s = stats(http)
    assert s["requests"] == 2
    assert s["by_path"] == {"/v1/chat/completions": 2}
    assert (s["streams_started"], s["streams_completed"], s["streams_aborted"]) == (1, 1, 0)
    usage = s["last_usage"]
    assert usage["stream"] is True and usage["aborted"] is False
    assert usage["input_tokens"] == tokens(PROMPT)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    request = s["last_request"]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "***"
    assert request["body"]["stream"] is True


def test_stream_is_not_buffered(http: httpx.Client) -> None:
    body = {"messages": user(), "stream": True}
    delay = 0.01
    started = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-demo-chunk-delay": str(delay)}) as response:
        arrivals = [time.perf_counter() - started for line in response.iter_lines() if line]
    assert len(arrivals) > 20
    # Each event leaves as soon as it is made: the first long before the last.
    assert arrivals[-1] - arrivals[0] >= delay * (len(arrivals) - 1) * 0.9
    assert arrivals[0] < (arrivals[-1] - arrivals[0]) / 2


def test_aborted_stream_is_counted_with_partial_usage(http: httpx.Client) -> None:
    full = http.post("/v1/chat/completions", json={"messages": user()}).json()["usage"]
    body = {"messages": user(), "stream": True}
    headers = {"x-demo-chunk-delay": "0.2"}
    with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # one content chunk received: hang up
    deadline = time.monotonic() + 3
    while (s := stats(http))["streams_aborted"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (s["streams_started"], s["streams_completed"], s["streams_aborted"]) == (1, 0, 1)
    usage = s["last_usage"]
    assert usage["aborted"] is True
    assert 0 < usage["output_tokens"] < full["completion_tokens"]
    assert usage["input_tokens"] == full["prompt_tokens"]


def test_command_line_chunks_and_delay() -> None:
    proc, base = start_upstream("--chunks", "5", "--chunk-delay", "0.01")
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=5)
        chunks = list(client.chat.completions.create(model="demo-1", messages=user(), stream=True))
        deltas = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
        assert len(deltas) == 5
        plain = client.chat.completions.create(model="demo-1", messages=user())
        assert "".join(deltas) == plain.choices[0].message.content
    finally:
        stop(proc)


# --- the chat page in a real browser --------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")

# Stands in for the gateway's /.tokenward/sdk.js: same API, no proof, slow chunks.
SDK_STUB = """
window.tokenward = {
  lastProof: null,
  fetch: function (url, init) {
    this.lastProof = {solveMs: 143.4, difficulty: 16, hashes: 65536};
    init.headers = Object.assign({}, init.headers, {"x-demo-chunk-delay": "0.01"});
    return fetch(url, init);
  },
};
"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_chat_page_streams_and_shows_refusals(url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    refusal = {"error": {"type": "tokenward", "code": "blocked", "message": "Go away, robot."}}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.route(
                "**/.tokenward/sdk.js",
                lambda route: route.fulfill(content_type="text/javascript", body=SDK_STUB),
            )
            page.goto(f"{url}/demo")
            page.fill("#prompt", PROMPT)
            page.press("#prompt", "Enter")
            assert page.text_content("div.msg.user") == PROMPT
            # Text shows up while the answer is still streaming, then the answer completes.
            page.wait_for_function(
                "() => { const a = document.querySelector('div.msg.assistant');"
                " return a && a.textContent.length > 0 && !a.dataset.done; }",
                timeout=5000,
            )
            page.wait_for_selector("div.msg.assistant[data-done='1']", timeout=5000)
            answer = page.text_content("div.msg.assistant") or ""
            assert answer.startswith(f'You asked about "{PROMPT}".')
            assert page.text_content("#proof-stats") == "proof: 16 bits, 143 ms, 65536 hashes"

            page.route(
                "**/v1/chat/completions",
                lambda route: route.fulfill(status=403, json=refusal),
            )
            page.fill("#prompt", "again")
            page.click("#send")
            page.wait_for_selector("div.msg.assistant.error[data-done='1']", timeout=5000)
            assert page.text_content("div.msg.assistant.error") == "Go away, robot."
            assert page.locator("div.msg").count() == 4
        finally:
            browser.close()
