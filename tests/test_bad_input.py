"""Malformed input gets a well-formed 4xx; the gateway never answers 500 to client input."""

from __future__ import annotations

import random
import socket
import time

import httpx
import pytest
from tests.conftest import GatewayProc
from tests.independent_client import chat_body, get_challenge, proof_header

from tokenward.log import find

CHAT = "/v1/chat/completions"


def error_code(r: httpx.Response) -> str:
    data = r.json()
    return data["error"]["code"] if "code" in data["error"] else data["error"]["type"]


@pytest.mark.parametrize(
    "header",
    [
        "garbage", "v1", "v1..", "v2.abc.1", "v1.abc.1", "v1.abc.-1", "v1.abc.1.2",
        "v1." + "A" * 110 + ".1", "v1." + "A" * 110 + ".99999999999999999999999",
        "v1." + "*" * 110 + ".1", "v1." + "A" * 110 + ".１２", "v1.\u00e9\u00e9.1", "",
        "v1." + "A" * 5000 + ".1",
    ],
)  # fmt: skip
def test_garbage_proof_headers(gateway: GatewayProc, header: str) -> None:
    headers = {"content-type": "application/json", "Tokenward-Proof": header.encode()}
    r = httpx.post(gateway.url + CHAT, content=chat_body(), headers=headers)
    assert r.status_code == 401, r.text
    assert error_code(r) == "proof_invalid"
    assert r.json()["error"]["challenge"]["v"] == 1


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"", b"\xff\xfe", b'{"model": '])
def test_non_json_body_is_bad_request(gateway: GatewayProc, body: bytes) -> None:
    # Without work done, the body is not read as JSON at all: the answer is the challenge
    # (docs/protocol.md, "Refusals"), so a flood of big bodies costs no parsing.
    r = httpx.post(gateway.url + CHAT, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401 and error_code(r) == "proof_required", r.text
    proof = proof_header(get_challenge(gateway.url, CHAT), body)
    r = httpx.post(gateway.url + CHAT, content=body,
                   headers={"content-type": "application/json", "Tokenward-Proof": proof})  # fmt: skip
    assert r.status_code == 400, r.text
    assert error_code(r) == "bad_request"
    assert r.headers["tokenward-decision"] == "invalid"
    # Logged as what it is: an invalid request, not a verdict on the client.
    deadline = time.monotonic() + 10
    while (row := find(f"sqlite:///{gateway.db}", r.headers["tokenward-request-id"])) is None:
        assert time.monotonic() < deadline, "the refusal was not logged"
        time.sleep(0.1)
    assert row["action"] == "invalid" and row["code"] == "bad_request" and row["name"].startswith("request/")


def test_bad_json_is_refused_even_with_a_valid_proof(gateway: GatewayProc) -> None:
    body = b"{nope"
    proof = proof_header(get_challenge(gateway.url, CHAT), body)
    r = httpx.post(gateway.url + CHAT, content=body,
                   headers={"content-type": "application/json", "Tokenward-Proof": proof})  # fmt: skip
    assert r.status_code == 400 and error_code(r) == "bad_request"


def test_ten_megabyte_body_is_413(gateway: GatewayProc) -> None:
    body = b'{"x": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    r = httpx.post(gateway.url + CHAT, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413
    assert error_code(r) == "payload_too_large"


def test_large_chunked_body_without_length_is_413(gateway: GatewayProc) -> None:
    def chunks():
        for _ in range(40):
            yield b"a" * 65536

    r = httpx.post(gateway.url + CHAT, content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and error_code(r) == "payload_too_large"


def test_unknown_route_is_404(gateway: GatewayProc) -> None:
    for method in ("GET", "POST", "DELETE"):
        r = httpx.request(method, gateway.url + "/v1/secret-admin")
        assert r.status_code == 404 and error_code(r) == "not_found"


def test_wrong_method_on_protected_route_is_405(gateway: GatewayProc) -> None:
    r = httpx.get(gateway.url + CHAT)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "payload",
    [b'{"route": "/v1/not-protected"}', b'{"route": "/demo"}', b"nonsense", b"{}",
     b'{"route": 5}', b"[]", b'{"route": "' + b"x" * 5000 + b'"}'],
)  # fmt: skip
def test_challenge_for_a_wrong_route(gateway: GatewayProc, payload: bytes) -> None:
    r = httpx.post(gateway.url + "/.tokenward/challenge", content=payload)
    assert r.status_code in (400, 413), r.text
    assert error_code(r) in ("bad_request", "payload_too_large")


def test_challenge_endpoint_wants_post(gateway: GatewayProc) -> None:
    r = httpx.get(gateway.url + "/.tokenward/challenge")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"
    assert httpx.get(gateway.url + "/.tokenward/nope").status_code == 404


def test_raw_socket_garbage_does_not_kill_the_gateway(gateway: GatewayProc) -> None:
    rng = random.Random(7)
    port = int(gateway.url.rsplit(":", 1)[1])
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))))
            try:
                s.recv(4096)
            except OSError:
                pass
    assert httpx.get(gateway.url + "/.tokenward/health").status_code == 200


def test_random_headers_and_bodies_never_500(gateway: GatewayProc) -> None:
    rng = random.Random(11)
    token = get_challenge(gateway.url, CHAT)["challenge"]
    with httpx.Client() as client:
        for i in range(150):
            cut = rng.randrange(len(token))
            header = rng.choice([
                f"v1.{token}.{rng.randrange(10**6)}",
                f"v1.{token[:cut]}.{rng.randrange(10)}",
                f"v1.{token[:cut]}{chr(rng.randrange(33, 127))}{token[cut + 1:]}.1",
                "v1." + "".join(chr(rng.randrange(33, 127)) for _ in range(rng.randrange(200))),
            ])  # fmt: skip
            body = rng.choice([chat_body(str(i)), bytes(rng.randrange(256) for _ in range(50)), b"{}"])
            r = client.post(gateway.url + CHAT, content=body, headers={"Tokenward-Proof": header})
            if r.status_code == 200:
                # A random nonce meets 8 bits one time in 256: then it must really be valid.
                assert header.startswith(f"v1.{token}.") and _meets(token, body, header, 8)
                continue
            assert 400 <= r.status_code < 500, (header, body, r.status_code, r.text)
            assert r.json()["error"]["message"]


def _meets(token: str, body: bytes, header: str, bits: int) -> bool:
    import hashlib

    nonce = int(header.rsplit(".", 1)[1])
    digest = hashlib.sha256(
        token.encode() + b"\x00" + hashlib.sha256(body).digest() + hashlib.sha256(b"").digest()
        + nonce.to_bytes(8, "big")
    ).digest()  # fmt: skip
    return int.from_bytes(digest, "big") >> (256 - bits) == 0


@pytest.fixture
def echo_upstream():
    """A real upstream on a socket that answers with the headers it received."""
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from tests.conftest import free_port

    async def echo(request):
        return JSONResponse({"headers": request.headers.items(), "body": (await request.body()).decode()})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        Starlette(routes=[Route("/v1/chat/completions", echo, methods=["POST"])]),
        host="127.0.0.1", port=port, log_level="warning",
    ))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_credentials_and_protocol_headers_never_reach_the_upstream(tmp_path, echo_upstream: str) -> None:
    from tests.conftest import start_gateway

    gw = start_gateway(
        tmp_path, echo_upstream,
        {"upstream": {"url": echo_upstream, "headers": {"Authorization": "Bearer sk-owner-secret"}}},
    )  # fmt: skip
    try:
        body = chat_body("whose key is it")
        proof = proof_header(get_challenge(gw.url, CHAT), body)
        r = httpx.post(gw.url + CHAT, content=body, headers={
            "content-type": "application/json", "Tokenward-Proof": proof,
            "Authorization": "Bearer sk-client-stolen", "x-api-key": "client-key",
            "Connection": "keep-alive, x-hop", "x-hop": "1", "Tokenward-Signals": "",
            "x-custom": "kept",
        })  # fmt: skip
        assert r.status_code == 200, r.text
        echoed = r.json()
        seen = dict(echoed["headers"])
        assert echoed["body"] == body.decode()
        assert [v for k, v in echoed["headers"] if k == "authorization"] == ["Bearer sk-owner-secret"]
        assert "x-api-key" not in seen and "tokenward-proof" not in seen
        assert "tokenward-signals" not in seen and "x-hop" not in seen
        assert seen["x-custom"] == "kept"
        assert seen["x-forwarded-for"] == "127.0.0.1"
        # The upstream's own date/server headers are not doubled with the gateway's.
        assert len(r.headers.get_list("date")) == 1 and len(r.headers.get_list("server")) == 1
    finally:
        gw.stop()
