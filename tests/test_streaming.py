"""SSE goes through as it is produced, and a client that leaves closes the upstream call."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from tests.conftest import GatewayProc, Upstream
from tests.independent_client import get_challenge, proof_header

CHAT = "/v1/chat/completions"


def stream_body(text: str) -> bytes:
    return json.dumps({"model": "demo-1", "stream": True,
                       "messages": [{"role": "user", "content": text}]}).encode()  # fmt: skip


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def _quiet_upstream(demo_upstream: Upstream) -> None:
    wait_for(
        lambda: (
            demo_upstream.stats()["streams_started"]
            == (demo_upstream.stats()["streams_completed"] + demo_upstream.stats()["streams_aborted"])
        )
    )
    demo_upstream.reset()


def test_first_chunk_arrives_before_the_upstream_finishes(gateway: GatewayProc, demo_upstream: Upstream) -> None:
    body = stream_body("stream slowly please")
    headers = {"content-type": "application/json", "x-demo-chunk-delay": "0.15",
               "Tokenward-Proof": proof_header(get_challenge(gateway.url, CHAT), body)}  # fmt: skip
    started = time.monotonic()
    with httpx.stream("POST", gateway.url + CHAT, content=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        first_at = time.monotonic() - started
        # The upstream is still producing: nothing completed yet.
        stats = demo_upstream.stats()
        assert stats["streams_started"] == 1 and stats["streams_completed"] == 0
        assert json.loads(first[6:])["object"] == "chat.completion.chunk"
        rest = [line for line in lines if line.startswith("data: ")]
        total = time.monotonic() - started
    assert rest[-1] == "data: [DONE]"
    assert len(rest) >= 10
    print(f"first chunk after {first_at * 1000:.0f} ms, whole stream {total * 1000:.0f} ms")
    assert first_at < total / 3


def test_client_disconnect_closes_the_upstream_stream(gateway: GatewayProc, demo_upstream: Upstream) -> None:
    body = stream_body("I will leave early")
    headers = {"content-type": "application/json", "x-demo-chunk-delay": "0.2",
               "Tokenward-Proof": proof_header(get_challenge(gateway.url, CHAT), body)}  # fmt: skip
    with httpx.stream("POST", gateway.url + CHAT, content=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        next(line for line in r.iter_lines() if line.startswith("data: "))
    # Leaving the block closed our connection mid-stream.
    assert wait_for(lambda: demo_upstream.stats()["streams_aborted"] == 1), demo_upstream.stats()
    stats = demo_upstream.stats()
    assert stats["streams_completed"] == 0
    assert stats["last_usage"]["aborted"] is True
    assert stats["last_usage"]["output_tokens"] < 40  # it stopped generating early


def test_gateway_logs_the_abandoned_stream(gateway: GatewayProc) -> None:
    from tokenward.log import read_recent

    body = stream_body("leaving again")
    headers = {"content-type": "application/json", "x-demo-chunk-delay": "0.2",
               "Tokenward-Proof": proof_header(get_challenge(gateway.url, CHAT), body)}  # fmt: skip
    with httpx.stream("POST", gateway.url + CHAT, content=body, headers=headers, timeout=30) as r:
        request_id = r.headers["tokenward-request-id"]
        next(line for line in r.iter_lines() if line.startswith("data: "))

    def logged() -> dict | None:
        return next((row for row in read_recent(gateway.db, 50) if row["request_id"] == request_id), None)

    assert wait_for(lambda: logged() is not None)
    row = logged()
    assert row is not None
    assert row["action"] == "allow" and row["error"] and "disconnect" in row["error"]
