"""Oversize input gets a clear error before anything judges it (docs/policy.md: max_header_bytes,
max_url_bytes, max_body_bytes; the server's own ceiling of 100 headers)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway
from tests.http.test_framing import _decision, _request, exchange
from tests.independent_client import chat_body, get_challenge, proof_header

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def gw(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    g = start_gateway(tmp_path_factory.mktemp("limits"), demo_upstream.url, {
        "max_header_bytes": 8192, "max_url_bytes": 2048, "max_body_bytes": 4096, "proof": {"difficulty": 4},
    })  # fmt: skip
    yield g
    g.stop()


def _proved(gw: GatewayProc, headers: dict[str, str] | None = None, path: str = CHAT) -> httpx.Response:
    body = chat_body("hello")
    proof = proof_header(get_challenge(gw.url, CHAT), body)
    return httpx.post(gw.url + path, content=body, headers={
        "content-type": "application/json", "tokenward-proof": proof, **(headers or {}),
    })  # fmt: skip


def test_headers_over_the_limit_get_a_431_naming_it(gw: GatewayProc) -> None:
    assert _proved(gw, {"cookie": "a" * 6000}).status_code == 200  # under the limit: served
    r = _proved(gw, {"cookie": "a" * 9000})
    assert r.status_code == 431, r.text
    error = r.json()["error"]
    assert error["code"] == "headers_too_large" and "8192" in error["message"]
    assert r.headers["connection"] == "close"
    assert _decision(gw, r.headers["tokenward-request-id"]) == "request/too_large"


def test_more_headers_than_the_server_reads_get_a_431(gw: GatewayProc) -> None:
    headers = [b"X-H%d: v" % i for i in range(120)]
    [r] = exchange(gw.url, _request(b"GET", b"/.tokenward/health", headers, b"", "many"))
    assert r.status == 431


def test_a_request_target_over_the_limit_gets_a_414_naming_it(gw: GatewayProc) -> None:
    assert httpx.get(gw.url + "/.tokenward/health?" + "a" * 1500).status_code == 200
    for target in ("/.tokenward/health?" + "a" * 3000, CHAT + "?" + "q" * 3000, "/" + "p" * 3000):
        r = httpx.post(gw.url + target, content=chat_body())
        assert r.status_code == 414, (target[:30], r.status_code)
        error = r.json()["error"]
        assert error["code"] == "uri_too_long" and "2048" in error["message"]
    # In the dialect of the route the client meant, so its SDK shows the message.
    r = httpx.post(gw.url + "/v1/messages?" + "q" * 3000, content=b"{}")
    assert r.status_code == 414 and r.json()["type"] == "error"


def test_a_body_over_the_limit_gets_a_413_before_it_is_read(gw: GatewayProc) -> None:
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    for path in (CHAT, "/.tokenward/challenge"):
        r = httpx.post(gw.url + path, content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413, (path, r.status_code)
        assert r.json()["error"]["code"] == "payload_too_large"
        assert r.headers["connection"] == "close"
