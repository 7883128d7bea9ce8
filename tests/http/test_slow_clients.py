"""Slow and idle clients are cut off after documented timeouts and never crowd out real
calls (docs/operations.md, "Slow and idle clients"; docs/policy.md: header_timeout,
body_timeout)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.conftest import GatewayProc, Upstream, free_port, start_gateway
from tests.http.test_framing import _decision
from tests.independent_client import chat_body, get_challenge, proof_header

from tokenward import TokenwardMiddleware
from tokenward.policy import parse_policy

CHAT = "/v1/chat/completions"
HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2


@pytest.fixture(scope="module")
def gw(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    g = start_gateway(tmp_path_factory.mktemp("slow"), demo_upstream.url, {
        "header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT, "proof": {"difficulty": 4},
    })  # fmt: skip
    yield g
    g.stop()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _closed_after(s: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the gateway answers or closes the connection, and what it sent."""
    start = time.monotonic()
    s.settimeout(limit)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := s.recv(65536):
            data += chunk
    return time.monotonic() - start, data


def test_a_connection_that_never_sends_a_byte_is_closed(gw: GatewayProc) -> None:
    """Found: idle connections without a byte stayed open for 90 s and more."""
    with _connect(gw.url) as s:
        waited, data = _closed_after(s, 30)
    assert data == b"" and waited < HEADER_TIMEOUT + 5, waited


def test_an_idle_keep_alive_connection_is_closed(gw: GatewayProc) -> None:
    with _connect(gw.url) as s:
        s.sendall(b"GET /.tokenward/health HTTP/1.1\r\nHost: gw\r\n\r\n")
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        waited, data = _closed_after(s, 30)
    assert data == b"" and waited < HEADER_TIMEOUT + 5, waited


def test_headers_trickled_a_byte_at_a_time_are_cut_off(gw: GatewayProc) -> None:
    request = b"GET /.tokenward/health HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"a" * 100
    start = time.monotonic()
    with _connect(gw.url) as s:
        s.settimeout(0.5)
        closed = False
        for byte in request:
            try:
                s.sendall(bytes([byte]))
                if s.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
    assert closed and time.monotonic() - start < HEADER_TIMEOUT + 5


def _trickle_body(url: str, path: str) -> tuple[float, bytes]:
    body = chat_body("slow")
    with _connect(url) as s:
        s.sendall(
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10]
        )  # fmt: skip
        return _closed_after(s, 30)


@pytest.mark.parametrize("path", [CHAT, "/demo", "/.tokenward/challenge"])
def test_a_body_that_does_not_arrive_in_time_gets_a_408(gw: GatewayProc, path: str) -> None:
    waited, data = _trickle_body(gw.url, path)
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"connection: close" in head.lower()
    assert b'"request_timeout"' in payload and str(BODY_TIMEOUT).encode() in payload
    assert waited < BODY_TIMEOUT + 5, waited
    if path == CHAT:  # a protected route's refusal is a logged decision
        rid = next(line.split(b": ")[1] for line in head.split(b"\r\n") if line.startswith(b"tokenward-request-id"))
        assert _decision(gw, rid.decode()) == "request/slow"


def test_hundreds_of_idle_and_slow_clients_do_not_stop_proved_calls(gw: GatewayProc) -> None:
    idle = [_connect(gw.url) for _ in range(300)]
    slow = []
    for _ in range(50):
        s = _connect(gw.url)
        s.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: gw\r\ncontent-length: 1000\r\n\r\n{")
        slow.append(s)
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            for i in range(10):
                body = chat_body(f"still served {i}")
                proof = proof_header(get_challenge(gw.url, CHAT, client), body)
                headers = {"content-type": "application/json", "tokenward-proof": proof}
                r = client.post(CHAT, content=body, headers=headers)
                assert r.status_code == 200, r.text
    finally:
        for s in idle + slow:
            s.close()


# -- the middleware: the same body deadline under another server ------------------------


async def _chat(request: Request) -> JSONResponse:
    return JSONResponse({"ok": len(await request.body())})


@pytest.fixture
def middleware_url(tmp_path) -> Iterator[str]:
    policy = parse_policy({
        "log": f"sqlite:///{tmp_path / 'mw.db'}", "proof": {"difficulty": 4}, "body_timeout": 1,
        "routes": [{"path": "/api/chat", "api": "openai"}],
    })  # fmt: skip
    app = TokenwardMiddleware(Starlette(routes=[Route("/api/chat", _chat, methods=["POST"])]), policy)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_the_middleware_cuts_off_a_slow_body_too(middleware_url: str) -> None:
    waited, data = _trickle_body(middleware_url, "/api/chat")
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b'"request_timeout"' in data and waited < 1 + 5
