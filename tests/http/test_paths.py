"""One canonical path: a differential test between what the gateway judges and what the
upstream receives.

An upstream written on raw sockets logs every request target it receives, byte for byte.
A generated corpus of path spellings (hypothesis) goes through a real gateway, unproved.
Every spelling must be either refused by the gateway, or reach the upstream (a) as
exactly the bytes that were sent and judged and (b) such that no reading an upstream
framework might make of those bytes (decoding once or twice, resolving dot segments,
backslashes as slashes, collapsing slashes, dropping ``;`` parameters, ignoring case or a
trailing slash) names a protected route: an unproved call there would be a stolen call.
"""

from __future__ import annotations

import itertools
import re
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_to_bytes

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.conftest import GatewayProc, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header

from tokenward.http.paths import canonical_path

PROTECTED_EXACT = ("/v1/chat/completions", "/v1/messages", "/api/chat")
PROTECTED_PREFIX = "/api/private/"
POLICY = {
    "routes": [
        {"path": "/v1/chat/completions", "api": "openai"},
        {"path": "/v1/messages", "api": "anthropic"},
        {"path": "/api/chat", "api": "custom"},
        {"path": "/api/private/*", "api": "custom"},
        {"path": "/static/*", "protect": False},
    ],
    "other_routes": "pass",
    "proof": {"difficulty": 4},
}
ISSUE_SPELLINGS = (
    b"/static/../v1/chat/completions",
    b"/static/%2e%2e/v1/chat/completions",
    b"/v1/./chat/completions",
    b"/v1/chat/../chat/completions",
)


class RecordingUpstream(socketserver.ThreadingTCPServer):
    """HTTP/1.1 on raw sockets: records (probe id -> request target) and answers a chat
    completion, so a forwarded call is visibly a served call."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: dict[str, bytes] = {}
        self.headers: dict[str, dict[bytes, bytes]] = {}
        self.bodies: dict[str, bytes] = {}
        self.lines: list[bytes] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


_ANSWER = (
    b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":'
    b'{"role":"assistant","content":"served"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


class _Handler(socketserver.StreamRequestHandler):
    server: RecordingUpstream

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return
            headers: dict[bytes, bytes] = {}
            while (h := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                k, _, v = h.partition(b":")
                headers[k.strip().lower()] = v.strip()
            body = self.rfile.read(int(headers.get(b"content-length", b"0")))
            target = line.split(b" ")[1]
            probe = headers.get(b"x-probe", b"").decode()
            self.server.lines.append(line)
            self.server.seen[probe] = target
            self.server.headers[probe] = headers
            self.server.bodies[probe] = body
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(_ANSWER)).encode() + b"\r\n\r\n" + _ANSWER
            )  # fmt: skip


# -- how an upstream might read a path ----------------------------------------------------


def _remove_dots(p: str) -> str:
    out: list[str] = []
    for s in p.split("/")[1:]:
        if s == "..":
            if out:
                out.pop()
        elif s != ".":
            out.append(s)
    return "/" + "/".join(out)


_READINGS = (
    lambda p: unquote_to_bytes(p).decode("latin-1"),
    lambda p: p.replace("\\", "/"),
    lambda p: re.sub(r"/+", "/", p),
    _remove_dots,
    lambda p: re.sub(r";[^/]*", "", p),
    lambda p: p.lower(),
    lambda p: p.rstrip("/") or "/",
    lambda p: p.replace("\x00", ""),
)


def readings(path: bytes) -> set[str]:
    """Every path an upstream could arrive at by combining the readings above."""
    seen = {path.decode("latin-1")}
    frontier = set(seen)
    for _ in range(6):
        frontier = {f(p) for p in frontier for f in _READINGS} - seen
        if not frontier:
            break
        seen |= frontier
    return seen


def protected(path: str) -> bool:
    return path in PROTECTED_EXACT or path.startswith(PROTECTED_PREFIX) or path == PROTECTED_PREFIX[:-1]


# -- the corpus ----------------------------------------------------------------------------

SEGMENTS = [
    "v1", "V1", "chat", "Chat", "completions", "COMPLETIONS", "complet%69ons", "messages", "api",
    "private", "static", "x", "", ".", "..", "%2e", "%2E%2e", ".%2e", "%2e.", "%2f", "%2F", "\\",
    "%5c", "..\\", ";x", "completions;x", "%3b", "%00", "%09", "%0a", "%25", "%252e%252e", "%c0%ae",
    "caf%C3%A9", "%20", "..;", "%2e%2e%2f", "~", "!", "%7e", "a%2fb", "%ff", "%g1", "%", "\xe9",
]  # fmt: skip
segment = st.sampled_from(SEGMENTS)
paths = st.builds(
    lambda lead, segs, trail, query: (lead + "/".join(segs) + trail + query).encode("latin-1"),
    st.sampled_from(["/", "//", "/static/", "/api/", "\\", "http://upstream.example/", ""]),
    st.lists(segment, min_size=1, max_size=6),
    st.sampled_from(["", "/", "//", "/.", "/.."]),
    st.sampled_from(["", "?a=1", "?x=%2F..%2F", "?q=/v1/chat/completions"]),
)


def send_raw(url: str, target: bytes, probe: str) -> int:
    """One unproved POST with ``target`` as the request target; the status (0: no answer)."""
    host, port = url.removeprefix("http://").split(":")
    body = chat_body("steal me")
    request = (
        b"POST " + target + b" HTTP/1.1\r\nHost: gw\r\ncontent-type: application/json\r\n"
        b"x-probe: " + probe.encode() + b"\r\ncontent-length: " + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n" + body
    )  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = data.split(b"\r\n", 1)[0].split(b" ")
    return int(status[1]) if len(status) > 1 and status[1].isdigit() else 0


def _path_of(target: bytes) -> bytes:
    """The path of a request target (servers take the path of an absolute-form target)."""
    path = target.split(b"?", 1)[0]
    if path.startswith(b"http://"):
        path = b"/" + path.split(b"/", 3)[3]
    return path


@pytest.fixture(scope="module")
def refusing(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("paths"), upstream.url, POLICY)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def canonicalizing(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("paths-c"), upstream.url, {**POLICY, "ambiguous_paths": "canonicalize"})
    yield gw
    gw.stop()


_probes = itertools.count()


def _check_one(gw: GatewayProc, upstream: RecordingUpstream, target: bytes, *, exact: bool) -> None:
    probe = f"p{next(_probes)}"
    status = send_raw(gw.url, target, probe)
    assert status != 0 and status < 500, (target, status)
    received = upstream.seen.get(probe)
    if received is None:
        assert 400 <= status < 500, (target, status)
        return
    assert status == 200, (target, status)
    sent_path = _path_of(target)
    if exact:  # what the upstream received is byte for byte what was sent
        assert received.split(b"?", 1)[0] == sent_path, (target, received)
    assert received.partition(b"?")[2] == target.partition(b"?")[2], (target, received)
    path = received.split(b"?", 1)[0]
    bad = sorted(r for r in readings(path) if protected(r))
    assert not bad, f"{target!r} reached the upstream as {received!r}, which reads as {bad}"


@settings(max_examples=600, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(target=paths)
@example(target=ISSUE_SPELLINGS[0])
@example(target=ISSUE_SPELLINGS[1])
@example(target=ISSUE_SPELLINGS[2])
@example(target=ISSUE_SPELLINGS[3])
@example(target=b"/api/private/../../v1/chat/completions")
@example(target=b"/V1/Chat/Completions/")
@example(target=b"/static/..%2fv1/chat/completions")
@example(target=b"/static/%252e%252e/v1/chat/completions")
@example(target=b"/v1/chat/completions;.css")
def test_no_spelling_reaches_the_upstream_unjudged(
    refusing: GatewayProc, upstream: RecordingUpstream, target: bytes
) -> None:
    _check_one(refusing, upstream, target, exact=True)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(target=paths)
@example(target=ISSUE_SPELLINGS[0])
@example(target=ISSUE_SPELLINGS[1])
@example(target=b"/static\\..\\v1/chat/completions")
def test_canonicalize_mode_forwards_what_it_judged(
    canonicalizing: GatewayProc, upstream: RecordingUpstream, target: bytes
) -> None:
    _check_one(canonicalizing, upstream, target, exact=False)


@pytest.mark.parametrize("target", ISSUE_SPELLINGS)
def test_the_reported_spellings_are_refused_and_logged(refusing: GatewayProc, upstream: RecordingUpstream,
                                                       target: bytes) -> None:  # fmt: skip
    probe = f"issue{next(_probes)}"
    assert send_raw(refusing.url, target, probe) == 400
    assert probe not in upstream.seen
    # Through a client library that resolves dots itself it is plainly the protected route.
    r = httpx.post(refusing.url + target.decode(), content=b"{}")
    assert r.status_code in (400, 401)


def test_a_refused_spelling_answers_in_the_routes_dialect_and_is_logged(refusing: GatewayProc) -> None:
    host, port = refusing.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/chat/../messages HTTP/1.1\r\nHost: gw\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b'"type":"error"' in body and b'"bad_request"' in body  # Anthropic's error shape: /v1/messages
    request_id = re.search(rb"tokenward-request-id: (\w+)", head, re.I)
    assert request_id is not None
    assert _logged(refusing.db, request_id.group(1).decode()) == ("request/malformed", "/v1/chat/../messages")


def _logged(db: Path, request_id: str) -> tuple[str, str] | None:
    import sqlite3
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT name, path FROM decisions WHERE request_id = ?", (request_id,)).fetchone()
        if row is not None:
            return row[0], row[1]
        time.sleep(0.1)
    return None


def test_proved_calls_in_plain_spellings_are_served_as_their_route(refusing: GatewayProc,
                                                                   upstream: RecordingUpstream) -> None:  # fmt: skip
    """Case, a trailing slash and encoded unreserved letters do not change the route: a
    proof for /v1/chat/completions is accepted on these, and they are forwarded verbatim."""
    for spelling in ("/V1/chat/completions", "/v1/chat/completions/", "/v1/chat/complet%69ons"):
        body = chat_body("hello")
        proof = proof_header(get_challenge(refusing.url, "/v1/chat/completions"), body)
        probe = f"ok{next(_probes)}"
        r = httpx.post(refusing.url + spelling, content=body, headers={
            "content-type": "application/json", "Tokenward-Proof": proof, "x-probe": probe,
        })  # fmt: skip
        assert r.status_code == 200, (spelling, r.text)
        assert r.headers["tokenward-decision"] == "allow"
        assert upstream.seen[probe] == spelling.encode()


def test_the_query_string_reaches_the_upstream_verbatim(refusing: GatewayProc, upstream: RecordingUpstream) -> None:
    probe = f"q{next(_probes)}"
    target = b"/static/app.js?a=%2F..%2F&b=%zz&c=/v1/chat/completions&d"
    assert send_raw(refusing.url, target, probe) == 200
    assert upstream.seen[probe] == target


def test_canonical_path_unit_cases() -> None:
    """The pure function, on the spellings above, in both modes."""
    for target in ISSUE_SPELLINGS:
        assert isinstance(canonical_path(target), str)
        resolved = canonical_path(target, canonicalize=True)
        assert not isinstance(resolved, str) and resolved.raw == b"/v1/chat/completions"
    for raw in (b"/a%2Fb", b"/a%25b", b"/a;b", b"/a%3Bb", b"/%00", b"/caf%C3%A9", b"/%zz", b"*", b"/a%5cb"):
        assert isinstance(canonical_path(raw), str) and isinstance(canonical_path(raw, canonicalize=True), str)
    assert canonical_path(b"/..", canonicalize=True) == "The request path climbs above the root."


# -- the middleware: the wrapped app routes on scope["path"] ----------------------------


@pytest.fixture(scope="module")
def middleware_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tokenward import TokenwardMiddleware
    from tokenward.policy import parse_policy

    served: list[str] = []

    async def chat(request: Request) -> JSONResponse:
        served.append(request.scope["path"])
        return JSONResponse({"served": True})

    async def static(request: Request) -> JSONResponse:
        return JSONResponse({"static": request.scope["path"]})

    db = tmp_path_factory.mktemp("mw-paths") / "log.db"
    policy = parse_policy({**POLICY, "log": f"sqlite:///{db}"})
    inner = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/static/{rest:path}", static, methods=["GET", "POST"]),
    ])  # fmt: skip
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(TokenwardMiddleware(inner, policy), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{port}", served
    server.should_exit = True
    thread.join(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(target=paths)
@example(target=ISSUE_SPELLINGS[0])
@example(target=ISSUE_SPELLINGS[1])
@example(target=b"/static/..%2f..%2fv1/chat/completions")
def test_middleware_never_lets_an_unproved_call_reach_a_protected_handler(
    middleware_app: tuple[str, list[str]], target: bytes
) -> None:
    url, served = middleware_app
    before = len(served)
    status = send_raw(url, target, "mw")
    assert status != 0 and status < 500, (target, status)
    assert len(served) == before, f"{target!r} reached a protected handler unproved as {served[before:]}"
    # The same rule as the proxy's: an ambiguous spelling never reaches the app at all.
    if isinstance(canonical_path(_path_of(target)), str):
        assert status == 400, (target, status)
