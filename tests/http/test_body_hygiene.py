"""What the gateway judges is what the upstream parses: bodies, encodings and the
client's claims about its address (docs/protocol.md, docs/policy.md)."""

from __future__ import annotations

import gzip
import itertools
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway
from tests.http.test_paths import RecordingUpstream
from tests.independent_client import chat_body, get_challenge, proof_header

CUSTOM = "/api/chat"
CHAT = "/v1/chat/completions"
_probes = itertools.count()


@pytest.fixture(scope="module")
def budget_gateway(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("hygiene"), demo_upstream.url, {
        "routes": [{"path": CUSTOM, "api": "custom", "model": "demo-1", "max_output_tokens": 50}],
        "budgets": [{"name": "global-day", "key": "global", "usd": 100, "window": 86400}],
        "prices": {"demo-1": {"input": 1.0, "output": 2.0}},
        "proof": {"difficulty": 4},
    })  # fmt: skip
    yield gw
    gw.stop()


def _row(db: Path, request_id: str) -> dict | None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute("SELECT * FROM decisions WHERE request_id = ?", (request_id,)).fetchone()
        finally:
            conn.close()
        if row is not None:
            return dict(row)
        time.sleep(0.1)
    return None


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", None, "Application/JSON", "application/x-www-form-urlencoded"]
)
def test_a_custom_routes_body_is_judged_whatever_its_content_type(budget_gateway: GatewayProc,
                                                                  content_type: str | None) -> None:  # fmt: skip
    body = json.dumps({"messages": [{"role": "user", "content": "What are your opening hours?"}]}).encode()
    proof = proof_header(get_challenge(budget_gateway.url, CUSTOM), body)
    headers = {"Tokenward-Proof": proof}
    if content_type is not None:
        headers["content-type"] = content_type
    r = httpx.post(budget_gateway.url + CUSTOM, content=body, headers=headers)
    assert r.status_code == 200, r.text
    row = _row(budget_gateway.db, r.headers["tokenward-request-id"])
    assert row is not None
    # The call was read: its spend was reserved against the budget and its model priced.
    assert row["reserved_usd"] and row["reserved_usd"] > 0, row
    assert row["model"] == "demo-1"


@pytest.mark.parametrize("body", [b"message=hello", b"hello there", b"\x00\x01"])
def test_a_custom_route_refuses_a_body_that_is_not_json(budget_gateway: GatewayProc, body: bytes) -> None:
    proof = proof_header(get_challenge(budget_gateway.url, CUSTOM), body)
    r = httpx.post(budget_gateway.url + CUSTOM, content=body,
                   headers={"Tokenward-Proof": proof, "content-type": "text/plain"})  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP", "identity, gzip"])
def test_a_compressed_body_is_refused_on_a_protected_route(upstream: RecordingUpstream, tmp_path: Path,
                                                           encoding: str) -> None:  # fmt: skip
    gw = start_gateway(tmp_path, upstream.url, {"proof": {"difficulty": 4}})
    try:
        body = gzip.compress(chat_body("compressed"))
        proof = proof_header(get_challenge(gw.url, CHAT), body)
        probe = f"enc{next(_probes)}"
        r = httpx.post(gw.url + CHAT, content=body, headers={
            "Tokenward-Proof": proof, "content-type": "application/json", "content-encoding": encoding,
            "x-probe": probe,
        })  # fmt: skip
        assert r.status_code == 415, r.text
        assert r.json()["error"]["code"] == "unsupported_encoding"
        assert probe not in upstream.seen
        row = _row(gw.db, r.headers["tokenward-request-id"])
        assert row is not None and row["name"] == "request/encoded"
        # An uncompressed body that says so is fine.
        plain = chat_body("plain")
        proof = proof_header(get_challenge(gw.url, CHAT), plain)
        r = httpx.post(gw.url + CHAT, content=plain, headers={
            "Tokenward-Proof": proof, "content-type": "application/json", "content-encoding": "identity",
        })  # fmt: skip
        assert r.status_code == 200, r.text
    finally:
        gw.stop()


def test_the_upstream_hears_the_address_the_gateway_believes(upstream: RecordingUpstream, tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, upstream.url, {"proof": {"difficulty": 4}})
    try:
        body = chat_body("where am I")
        proof = proof_header(get_challenge(gw.url, CHAT), body)
        probe = f"xff{next(_probes)}"
        r = httpx.post(gw.url + CHAT, content=body, headers={
            "Tokenward-Proof": proof, "content-type": "application/json", "x-probe": probe,
            "X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6",
            "True-Client-IP": "6.6.6.6", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
        })  # fmt: skip
        assert r.status_code == 200, r.text
        seen = upstream.headers[probe]
        assert seen[b"x-forwarded-for"] == b"127.0.0.1"
        assert seen[b"x-real-ip"] == b"127.0.0.1"
        assert seen[b"forwarded"] == b"for=127.0.0.1;proto=http"
        assert seen[b"x-forwarded-proto"] == b"http"
        assert b"true-client-ip" not in seen and b"x-forwarded-host" not in seen
        assert b"6.6.6.6" not in b"".join(seen.values())
    finally:
        gw.stop()
