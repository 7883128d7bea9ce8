"""Wire protocol v1 (DESIGN.md §3), spoken by a client that imports nothing of ours."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from tests.conftest import GatewayProc
from tests.independent_client import chat_body, get_challenge, proof_header

CHAT = "/v1/chat/completions"


def post(gw: GatewayProc, path: str, body: bytes, proof: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if proof is not None:
        headers["Tokenward-Proof"] = proof
    return httpx.post(gw.url + path, content=body, headers=headers)


def assert_refused(r: httpx.Response, code: str, status: int = 401) -> dict:
    assert r.status_code == status, r.text
    data = r.json()
    assert data["error"]["type"] == "tokenward"
    assert data["error"]["code"] == code
    assert data["error"]["message"]
    assert r.headers["tokenward-request-id"]
    assert r.headers["tokenward-decision"] in ("challenge", "block", "throttle")
    return data


def test_challenge_shape(gateway: GatewayProc) -> None:
    c = get_challenge(gateway.url, CHAT)
    assert set(c) == {"v", "challenge", "difficulty", "expires_at"}
    assert c["v"] == 1 and "." not in c["challenge"] and "=" not in c["challenge"]
    assert c["difficulty"] == 8
    assert time.time() < c["expires_at"] <= time.time() + 121


def test_solved_proof_is_allowed_once(gateway: GatewayProc) -> None:
    body = chat_body("hello from an independent client")
    proof = proof_header(get_challenge(gateway.url, CHAT), body)
    r = post(gateway, CHAT, body, proof)
    assert r.status_code == 200, r.text
    assert r.headers["tokenward-decision"] == "allow"
    assert r.headers["tokenward-request-id"]
    assert "hello from an independent client" in r.json()["choices"][0]["message"]["content"]
    assert_refused(post(gateway, CHAT, body, proof), "proof_replayed")


def test_missing_proof_gets_a_usable_fresh_challenge(gateway: GatewayProc) -> None:
    body = chat_body()
    data = assert_refused(post(gateway, CHAT, body), "proof_required")
    challenge = data["error"]["challenge"]
    assert set(challenge) == {"v", "challenge", "difficulty", "expires_at"}
    r = post(gateway, CHAT, body, proof_header(challenge, body))
    assert r.status_code == 200, r.text


def test_every_refusal_carries_a_fresh_challenge(gateway: GatewayProc) -> None:
    body = chat_body()
    proof = proof_header(get_challenge(gateway.url, CHAT), body)
    assert post(gateway, CHAT, body, proof).status_code == 200
    replay = assert_refused(post(gateway, CHAT, body, proof), "proof_replayed")
    fresh = replay["error"]["challenge"]
    assert fresh["challenge"] not in proof
    assert post(gateway, CHAT, body, proof_header(fresh, body)).status_code == 200


def test_body_mismatch(gateway: GatewayProc) -> None:
    other = chat_body("another body")
    proof = proof_header(get_challenge(gateway.url, CHAT), chat_body("the body I solved for"), fails_for=(other, b""))
    assert_refused(post(gateway, CHAT, other, proof), "body_mismatch")


def test_signals_header_is_bound(gateway: GatewayProc) -> None:
    body = chat_body()
    challenge = get_challenge(gateway.url, CHAT)
    proof = proof_header(
        challenge, body, signals=b"eyJ3ZWJkcml2ZXIiOmZhbHNlfQ", fails_for=(body, b"eyJ3ZWJkcml2ZXIiOnRydWV9")
    )
    headers = {"content-type": "application/json", "Tokenward-Proof": proof,
               "Tokenward-Signals": "eyJ3ZWJkcml2ZXIiOnRydWV9"}  # fmt: skip
    assert_refused(httpx.post(gateway.url + CHAT, content=body, headers=headers), "body_mismatch")
    headers["Tokenward-Signals"] = "eyJ3ZWJkcml2ZXIiOmZhbHNlfQ"
    assert httpx.post(gateway.url + CHAT, content=body, headers=headers).status_code == 200


def test_route_mismatch(gateway: GatewayProc) -> None:
    body = chat_body()
    proof = proof_header(get_challenge(gateway.url, "/v1/completions"), body)
    assert_refused(post(gateway, CHAT, body, proof), "route_mismatch")


def test_tampered_challenge_is_invalid(gateway: GatewayProc) -> None:
    body = chat_body()
    c = get_challenge(gateway.url, CHAT)
    token = c["challenge"]
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    proof = proof_header({**c, "challenge": tampered}, body)
    assert_refused(post(gateway, CHAT, body, proof), "proof_invalid")


def test_expired_challenge(gateway: GatewayProc) -> None:
    # Mint a challenge with the gateway's key as if issued three minutes ago.
    from tokenward.proof import KeyRing, issue_challenge
    from tokenward.proof.keys import Key

    ring = KeyRing([Key.from_secret(gateway.key)])
    old = issue_challenge(ring, CHAT, 8, 120, now=time.time() - 180).to_wire()
    body = chat_body()
    assert_refused(post(gateway, CHAT, body, proof_header(old, body)), "proof_expired")
    # On the memory store a gateway accepts only challenges it signed itself: one made
    # with its key elsewhere (or by its previous run) is refused the same way. On a shared
    # store the same key, issued now, is accepted (tests/proof/test_restart_replay.py).
    fresh = issue_challenge(ring, CHAT, 8, 120, now=time.time()).to_wire()
    assert_refused(post(gateway, CHAT, body, proof_header(fresh, body)), "proof_expired")
    own = get_challenge(gateway.url, CHAT)
    assert post(gateway, CHAT, body, proof_header(own, body)).status_code == 200


def test_anthropic_route_refuses_in_anthropic_shape(gateway: GatewayProc) -> None:
    body = json.dumps({"model": "demo-1", "max_tokens": 50,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip
    r = post(gateway, "/v1/messages", body)
    assert r.status_code == 401
    data = r.json()
    assert data["type"] == "error"
    assert data["error"]["type"] == "proof_required"
    assert data["error"]["challenge"]["v"] == 1
    ok = post(gateway, "/v1/messages", body, proof_header(data["error"]["challenge"], body))
    assert ok.status_code == 200 and ok.json()["type"] == "message"


def test_custom_route_is_protected(gateway: GatewayProc) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "widget question"}]}).encode()
    assert_refused(post(gateway, "/api/chat", body), "proof_required")
    proof = proof_header(get_challenge(gateway.url, "/api/chat"), body)
    r = post(gateway, "/api/chat", body, proof)
    assert r.status_code == 200 and "widget question" in r.text


async def test_fifty_concurrent_copies_of_one_proof_allow_exactly_one(gateway: GatewayProc) -> None:
    body = chat_body("one proof, fifty senders")
    proof = proof_header(get_challenge(gateway.url, CHAT), body)
    headers = {"content-type": "application/json", "Tokenward-Proof": proof}
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        # Open the connections first so the copies really arrive together.
        await asyncio.gather(*(client.get(gateway.url + "/.tokenward/health") for _ in range(50)))
        replies = await asyncio.gather(
            *(client.post(gateway.url + CHAT, content=body, headers=headers) for _ in range(50))
        )
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(401) == 49
    assert {r.json()["error"]["code"] for r in replies if r.status_code == 401} == {"proof_replayed"}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/api/chat"])
def test_protected_responses_carry_tokenward_headers(gateway: GatewayProc, path: str) -> None:
    r = httpx.post(gateway.url + path, content=b"{}", headers={"content-type": "application/json"})
    assert r.headers["tokenward-request-id"] and r.headers["tokenward-decision"] == "challenge"
