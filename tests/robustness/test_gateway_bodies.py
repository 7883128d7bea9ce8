"""Hostile and odd request bodies, identities and registrations over a real gateway socket.

Each test here failed on the gateway before the fix it guards:

* a proved call with odd JSON types (a ``role`` that is a list, a content part whose
  ``type`` is an object) answered 500, and its proof replayed the crash;
* a custom route reserved its output cap but forwarded the client's ``max_tokens``;
* an expired token weighed less than no token with ``expect_account``;
* ``max_registrations_per_subnet`` limited nothing;
* no limit on JSON nesting or on the number of messages.
"""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import GatewayProc, Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header
from tests.robustness.test_fuzz_bodies import SHAPES

CHAT = "/v1/chat/completions"
CUSTOM = "/api/chat"
ROUTES = [
    {"path": CHAT, "api": "openai"},
    {"path": "/v1/completions", "api": "openai"},
    {"path": "/v1/responses", "api": "openai"},
    {"path": "/v1/embeddings", "api": "openai"},
    {"path": "/v1/messages", "api": "anthropic"},
    {"path": CUSTOM, "api": "custom", "model": "gpt-4o", "max_output_tokens": 256},
    {"path": "/_demo/*", "protect": False},
]
SEEN_ACTIONS = {"allow", "challenge", "throttle", "block", "degrade", "invalid"}


def post(gw: GatewayProc, path: str, body: bytes, **headers: str) -> httpx.Response:
    proof = proof_header(get_challenge(gw.url, path), body)
    return httpx.post(gw.url + path, content=body, timeout=30,
                      headers={"content-type": "application/json", "tokenward-proof": proof, **headers})  # fmt: skip


def log_rows(gw: GatewayProc, request_ids: list[str]) -> list[sqlite3.Row]:
    """The decision log's rows of these requests (the log is written in batches)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(gw.db) as conn:
            conn.row_factory = sqlite3.Row
            marks = ",".join("?" * len(request_ids))
            rows = conn.execute(f"SELECT * FROM decisions WHERE request_id IN ({marks})", request_ids).fetchall()
        if len(rows) == len(request_ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def assert_well_formed_row(row: sqlite3.Row) -> None:
    assert row["action"] in SEEN_ACTIONS and row["name"] and "/" in row["name"]
    assert row["error"] is None, row["error"]
    assert all(isinstance(r, str) for r in orjson.loads(row["reasons"]))
    for signal in orjson.loads(row["signals"]):
        assert set(signal) == {"name", "score", "evidence"} and isinstance(signal["evidence"], dict)
    assert row["status"] < 500, (row["name"], row["status"])


def signals_of(gw: GatewayProc, response: httpx.Response) -> set[str]:
    (row,) = log_rows(gw, [response.headers["tokenward-request-id"]])
    return {s["name"] for s in orjson.loads(row["signals"])}


@pytest.fixture(scope="module")
def gw(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    g = start_gateway(
        tmp_path_factory.mktemp("bodies"), demo_upstream.url,
        # One test client sends hundreds of calls in a row: its cadence is not what is tested here.
        {"proof": {"difficulty": 0}, "routes": ROUTES, "limits": [], "weights": {"behaviour/*": 0},
         "budgets": [{"name": "global", "key": "global", "usd": 1_000_000, "window": 86400}]},
    )  # fmt: skip
    yield g
    g.stop()


# -- odd JSON types -------------------------------------------------------------------------

ODD = [
    (CHAT, {"model": "demo-1", "messages": [{"role": ["user"], "content": "hi"}]}),
    (CHAT, {"model": "demo-1", "messages": [{"role": "user", "content": [{"type": {"a": 1}, "text": "hi"}]}]}),
    (CHAT, {"model": "demo-1", "messages": [{"role": "user", "content": [{"type": ["image_url"]}]}]}),
    (CHAT, {"model": "demo-1", "messages": [{"role": {"r": 1}, "content": "hi"}], "tools": [{"type": {}}]}),
    ("/v1/messages", {"model": "demo-1", "max_tokens": 50, "system": [{"type": [1], "text": "x"}],
                      "messages": [{"role": "user", "content": [{"type": {"t": "text"}, "source": {}}]}]}),
    ("/v1/responses", {"model": "demo-1", "input": [{"type": {"x": 1}, "role": "user", "content": "hi"},
                                                    {"type": ["function_call"], "arguments": {}}]}),
    (CUSTOM, {"messages": [{"role": [], "content": [{"type": {}, "text": "hi"}]}], "prompt": {"p": [1]}}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), ODD)
def test_odd_json_types_are_judged_and_the_proof_is_used_up(gw: GatewayProc, path: str, body: dict) -> None:
    raw = orjson.dumps(body)
    proof = proof_header(get_challenge(gw.url, path), raw)
    headers = {"content-type": "application/json", "tokenward-proof": proof}
    first = httpx.post(gw.url + path, content=raw, headers=headers)
    assert first.status_code in (200, 400), first.text  # was 500 (TypeError: unhashable type)
    assert first.headers["tokenward-decision"]
    again = httpx.post(gw.url + path, content=raw, headers=headers)
    assert again.status_code == 401, again.text
    code = again.json()["error"].get("code") or again.json()["error"]["type"]
    assert code == "proof_replayed"
    for row in log_rows(gw, [first.headers["tokenward-request-id"], again.headers["tokenward-request-id"]]):
        assert_well_formed_row(row)


# -- the socket-level fuzz --------------------------------------------------------------------

SOCKET_PATHS = [CHAT, "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/messages", CUSTOM]


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(data=st.data())
def test_generated_bodies_never_500_and_the_log_stays_well_formed(gw: GatewayProc, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(SOCKET_PATHS))
    body = data.draw(SHAPES[path])
    r = post(gw, path, orjson.dumps(body))
    assert r.status_code < 500, r.text
    assert r.headers["tokenward-decision"] in SEEN_ACTIONS
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
    (row,) = log_rows(gw, [r.headers["tokenward-request-id"]])
    assert_well_formed_row(row)


# -- custom routes forward the cap they reserve ---------------------------------------------


@pytest.mark.parametrize(
    ("asked", "forwarded"),
    [
        ({"max_tokens": 100_000}, {"max_tokens": 256}),
        ({"max_tokens": -1}, {"max_tokens": 256}),  # "no limit" to some servers
        ({"max_output_tokens": "100000"}, {"max_output_tokens": 256}),
        ({"max_completion_tokens": 40, "max_tokens": 90_000}, {"max_completion_tokens": 40, "max_tokens": 256}),
        ({"max_tokens": 100}, {"max_tokens": 100}),
    ],
)
def test_a_custom_route_forwards_the_output_cap_it_reserved(
    gw: GatewayProc, demo_upstream: Upstream, asked: dict, forwarded: dict
) -> None:
    body = orjson.dumps({"messages": [{"role": "user", "content": "What is on the menu?"}], **asked})
    r = post(gw, CUSTOM, body)
    assert r.status_code == 200, r.text
    received = demo_upstream.stats()["last_request"]["body"]
    assert {k: received.get(k) for k in forwarded} == forwarded
    (row,) = log_rows(gw, [r.headers["tokenward-request-id"]])
    assert row["reserved_usd"] > 0


def test_a_custom_body_without_a_limit_field_is_forwarded_as_sent(gw: GatewayProc, demo_upstream: Upstream) -> None:
    body = orjson.dumps({"messages": [{"role": "user", "content": "What is on the menu?"}]})
    assert post(gw, CUSTOM, body).status_code == 200
    assert demo_upstream.stats()["last_request"]["body"] == orjson.loads(body)


# -- limits on bodies ------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    """A chat call whose JSON nests ``depth`` levels (the body itself is level 1)."""
    value: Any = "deep"
    for _ in range(depth - 3):  # body > messages > message > metadata lists
        value = [value]
    return {"model": "demo-1", "messages": [{"role": "user", "content": "hi", "metadata": value}]}


def test_json_nesting_beyond_the_default_limit_is_a_clear_400(gw: GatewayProc) -> None:
    ok = post(gw, CHAT, orjson.dumps(nested(64)))
    assert ok.status_code == 200, ok.text
    deep = post(gw, CHAT, orjson.dumps(nested(65)))
    assert deep.status_code == 400, deep.text
    error = deep.json()["error"]
    assert error["code"] == "bad_request" and "at most 64 levels" in error["message"]
    # Far deeper than Python's own recursion limit: still a 400, not a crash.
    deeper = post(gw, CHAT, b'{"model": "demo-1", "messages": ' + b"[" * 1000 + b"]" * 1000 + b"}")
    assert deeper.status_code == 400 and "levels" in deeper.json()["error"]["message"]


def test_more_messages_than_the_default_limit_is_a_clear_400(gw: GatewayProc) -> None:
    many = [{"role": "user", "content": "a"}] * 10_001
    r = post(gw, CHAT, orjson.dumps({"model": "demo-1", "messages": many}))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_request" and "10001 messages" in error["message"] and "10000" in error["message"]
    items = [{"type": "message", "role": "user", "content": "a"}] * 10_001
    r = post(gw, "/v1/responses", orjson.dumps({"model": "demo-1", "input": items}))
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    # Embeddings inputs are not messages.
    r = post(gw, "/v1/embeddings", orjson.dumps({"model": "demo-1", "input": ["a"] * 10_001}))
    assert r.status_code != 400, r.text


def test_body_limits_are_policy_settings(tmp_path: Path, demo_upstream: Upstream) -> None:
    g = start_gateway(tmp_path, demo_upstream.url,
                      {"proof": {"difficulty": 0}, "max_json_depth": 8, "max_messages": 3})  # fmt: skip
    try:
        assert post(g, CHAT, orjson.dumps(nested(8))).status_code == 200
        r = post(g, CHAT, orjson.dumps(nested(9)))
        assert r.status_code == 400 and "at most 8 levels" in r.json()["error"]["message"]
        three = {"model": "demo-1", "messages": [{"role": "user", "content": "a"}] * 3}
        assert post(g, CHAT, orjson.dumps(three)).status_code == 200
        r = post(g, CHAT, orjson.dumps({**three, "messages": three["messages"] * 2}))
        assert r.status_code == 400 and "6 messages" in r.json()["error"]["message"]
        assert r.headers["tokenward-decision"] == "invalid"
    finally:
        g.stop()


# -- an unbelievable credential never beats no credential -----------------------------------

SECRET = "s" * 40


def test_an_expired_token_weighs_at_least_as_much_as_no_token(tmp_path: Path, demo_upstream: Upstream) -> None:
    g = start_gateway(tmp_path, demo_upstream.url, {
        "proof": {"difficulty": 0},
        "identity": {"expect_account": True, "jwt": {"algorithms": ["HS256"], "key": SECRET}},
        "weights": {"identity/no-account": 9},
    })  # fmt: skip
    now = int(time.time())

    def token(**claims: Any) -> str:
        return jwt.encode({"sub": "ada", **claims}, SECRET, algorithm="HS256")

    try:
        fresh = post(g, CHAT, chat_body(), authorization=f"Bearer {token(exp=now + 600)}")
        assert fresh.status_code == 200, fresh.text
        assert post(g, CHAT, chat_body()).status_code == 403  # no credential: blocked
        expired = post(g, CHAT, chat_body(), authorization=f"Bearer {token(exp=now - 3600)}")
        assert expired.status_code == 403, expired.text  # was 200: expiry weighed 1
        assert {"identity/no-account", "identity/expired-token"} <= signals_of(g, expired)
        early = post(g, CHAT, chat_body(), authorization=f"Bearer {token(exp=now + 7200, nbf=now + 3600)}")
        assert early.status_code == 403, early.text
        forged = post(g, CHAT, chat_body(), authorization="Bearer " + jwt.encode(
            {"sub": "ada", "exp": now + 600}, "x" * 40, algorithm="HS256"))  # fmt: skip
        assert forged.status_code == 403, forged.text
        assert {"identity/no-account", "identity/invalid-token"} <= signals_of(g, forged)
    finally:
        g.stop()


# -- device registrations per subnet ----------------------------------------------------------


def register(g: GatewayProc) -> httpx.Response:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    body = orjson.dumps({"public_key": base64.urlsafe_b64encode(spki).rstrip(b"=").decode()})
    proof = proof_header(get_challenge(g.url, "/.tokenward/device"), body)
    return httpx.post(g.url + "/.tokenward/device", content=body,
                      headers={"content-type": "application/json", "tokenward-proof": proof})  # fmt: skip


def test_registrations_beyond_the_subnet_limit_are_refused_and_signalled(
    tmp_path: Path, demo_upstream: Upstream
) -> None:
    g = start_gateway(tmp_path, demo_upstream.url, {
        "proof": {"difficulty": 0}, "devices": {"registration_difficulty": 0},
        "behaviour": {"max_registrations_per_subnet": 3},
    })  # fmt: skip
    try:
        before = post(g, CHAT, chat_body())
        assert "behaviour/registration-burst" not in signals_of(g, before)
        assert [register(g).status_code for _ in range(3)] == [200, 200, 200]
        refused = [register(g) for _ in range(5)]  # were all 200: the limit did nothing
        for r in refused:
            assert r.status_code == 429, r.text
            error = r.json()["error"]
            assert error["code"] == "throttled" and error["message"]
            assert "challenge" not in error
            assert int(r.headers["retry-after"]) >= 1
        after = post(g, CHAT, chat_body())
        assert "behaviour/registration-burst" in signals_of(g, after)
    finally:
        g.stop()
