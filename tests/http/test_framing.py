"""Where a request's body ends: the gateway and the upstream must never disagree.

Every shape a request smuggler uses (a body framed by both Content-Length and
Transfer-Encoding, duplicate or malformed lengths, unknown transfer codings, folded
headers, bare line feeds, chunk extensions and trailers...) goes over a raw socket to a
real gateway, followed on the same connection by an unproved call to a protected route.
Whatever the gateway makes of the bytes, (a) nothing answers 500, (b) every tokenward
answer is well-formed JSON, (c) the smuggled call never reaches the upstream, and (d)
what the upstream receives is framed by the gateway itself (one Content-Length, no
Transfer-Encoding), so it cannot read a body boundary of its own.
"""

from __future__ import annotations

import itertools
import json
import socket
import sqlite3
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import GatewayProc, start_gateway
from tests.http.test_paths import RecordingUpstream
from tests.independent_client import chat_body, get_challenge, proof_header

CHAT = "/v1/chat/completions"
POLICY = {
    "routes": [{"path": CHAT, "api": "openai"}, {"path": "/static/*", "protect": False}],
    "other_routes": "pass",
    "proof": {"difficulty": 4},
    "header_timeout": 2,
}
_probes = itertools.count()


@pytest.fixture(scope="module")
def gw(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    g = start_gateway(tmp_path_factory.mktemp("framing"), upstream.url, POLICY)
    yield g
    g.stop()


class Response:
    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes):
        self.status, self.headers, self.body = status, headers, body


def exchange(url: str, data: bytes, quiet: float = 0.4) -> list[Response]:
    """Send ``data`` on one connection; the responses read until the gateway closes it or
    stays quiet for ``quiet`` seconds after the last complete response."""
    host, port = url.removeprefix("http://").split(":")
    out: list[Response] = []
    buf = b""
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        s.settimeout(10)  # the first answer may take a moment; later ones come at once or never
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in lines[1:])}
                length = int(headers.get(b"content-length", b"0"))
                if len(rest) < length:
                    break
                out.append(Response(int(lines[0].split(b" ")[1]), headers, rest[:length]))
                buf = rest[length:]
                s.settimeout(quiet)
    return out


def _request(method: bytes, path: bytes, headers: list[bytes], body: bytes, probe: str, eol: bytes = b"\r\n") -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: gw", b"x-probe: " + probe.encode(), *headers]
    return eol.join(lines) + eol + eol + body


def _smuggled(probe: str) -> bytes:
    body = chat_body("a call nobody proved")
    return _request(
        b"POST", CHAT.encode(), [b"content-type: application/json", b"content-length: %d" % len(body)], body, probe
    )


# (headers, body) pairs as a smuggler writes them; "hello" is what a careless reading sees.
SHAPES: dict[str, tuple[list[bytes], bytes]] = {
    "cl+te, body not chunked": ([b"Content-Length: 5", b"Transfer-Encoding: chunked"], b"hello"),
    "cl+te, chunked body": ([b"Content-Length: 3", b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    "te+cl, cl covers more": ([b"Transfer-Encoding: chunked", b"Content-Length: 60"], b"0\r\n\r\n"),
    "two lengths, different": ([b"Content-Length: 5", b"Content-Length: 6"], b"hello!"),
    "two lengths, same": ([b"Content-Length: 5", b"Content-Length: 5"], b"hello"),
    "length list": ([b"Content-Length: 5, 5"], b"hello"),
    "length +5": ([b"Content-Length: +5"], b"hello"),
    "length -5": ([b"Content-Length: -5"], b"hello"),
    "length hex": ([b"Content-Length: 0x5"], b"hello"),
    "length space-padded": ([b"Content-Length:  5 "], b"hello"),
    "space before colon": ([b"Content-Length : 5"], b"hello"),
    "obs-fold": ([b"X-A: b", b" c", b"Content-Length: 5"], b"hello"),
    "obs-fold te": ([b"Content-Length: 5", b"Transfer-Encoding:", b" chunked"], b"hello"),
    "te gzip, chunked": ([b"Transfer-Encoding: gzip, chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    "te chunked, chunked": ([b"Transfer-Encoding: chunked, chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    "te xchunked": ([b"Transfer-Encoding: xchunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    "te identity": ([b"Transfer-Encoding: identity", b"Content-Length: 5"], b"hello"),
    "te twice": ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"], b"5\r\nhello\r\n0\r\n\r\n"),
    "te upper case": ([b"Transfer-Encoding: CHUNKED"], b"5\r\nhello\r\n0\r\n\r\n"),
    "te tab": ([b"Transfer-Encoding:\tchunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    "chunk extension": ([b"Transfer-Encoding: chunked"], b"5;a=b\r\nhello\r\n0\r\n\r\n"),
    "chunk trailer": ([b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
    "chunk size not hex": ([b"Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk size too long": ([b"Transfer-Encoding: chunked"], b"3\r\nhello\r\n0\r\n\r\n"),
    "chunk size overflow": ([b"Transfer-Encoding: chunked"], b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "chunk bare lf": ([b"Transfer-Encoding: chunked"], b"5\nhello\n0\n\n"),
    "two hosts": ([b"Host: other", b"Content-Length: 5"], b"hello"),
    "nul in header": ([b"X-A: a\x00b", b"Content-Length: 5"], b"hello"),
    "cr in header": ([b"X-A: a\rb", b"Content-Length: 5"], b"hello"),
}


def check(gw: GatewayProc, upstream: RecordingUpstream, data: bytes, probes: list[str], smuggled: str) -> None:
    responses = exchange(gw.url, data)
    assert responses, "no answer at all"
    for r in responses:
        assert r.status < 500, (r.status, r.body)
        if r.body:  # the server's own refusals (431, 400 before any app code) have no body
            payload = json.loads(r.body)
            if r.status >= 400:
                assert payload["error"]["code"] and payload["error"]["message"], payload
    # The smuggled call never reaches the upstream: it is either part of a refused
    # request's bytes, or read by the gateway as a request of its own (and judged: 401).
    assert smuggled not in upstream.seen
    for probe in probes:
        if probe in upstream.seen:  # the upstream hears framing the gateway chose
            headers = upstream.headers[probe]
            assert b"transfer-encoding" not in headers
            assert int(headers[b"content-length"]) == len(upstream.bodies[probe])


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("path", [b"/static/x", CHAT.encode()])
def test_smuggling_shapes_are_refused_or_framed_by_the_gateway(
    gw: GatewayProc, upstream: RecordingUpstream, shape: str, path: bytes
) -> None:
    headers, body = SHAPES[shape]
    n = next(_probes)
    probe, smuggled = f"f{n}", f"smuggled{n}"
    data = _request(b"POST", path, headers, body, probe) + _smuggled(smuggled)
    check(gw, upstream, data, [probe], smuggled)


def test_a_body_framed_two_ways_gets_a_well_formed_400_and_is_logged(
    gw: GatewayProc, upstream: RecordingUpstream
) -> None:
    """Found: Transfer-Encoding: chunked with a Content-Length and a body that is not chunked
    was a 500 from the server (the gateway answered nothing)."""
    for path in (b"/static/x", CHAT.encode()):
        probe = f"f{next(_probes)}"
        data = _request(b"POST", path, [b"Content-Length: 5", b"Transfer-Encoding: chunked"], b"hello", probe)
        [r] = exchange(gw.url, data)
        assert r.status == 400, (path, r.status, r.body)
        assert r.headers[b"connection"] == b"close"
        assert json.loads(r.body)["error"]["code"] == "bad_request"
        assert probe not in upstream.seen
    rid = r.headers[b"tokenward-request-id"].decode()  # the protected route's refusal is a decision
    assert _decision(gw, rid) == "request/abandoned"


def test_unknown_transfer_codings_and_two_hosts_are_refused_with_reasons(gw: GatewayProc) -> None:
    cases = [
        ([b"Transfer-Encoding: gzip, chunked"], "Transfer-Encoding"),
        ([b"Transfer-Encoding: chunked, chunked"], "Transfer-Encoding"),
        ([b"Host: other", b"Transfer-Encoding: chunked"], "Host"),
    ]
    for headers, word in cases:
        data = _request(b"POST", CHAT.encode(), headers, b"5\r\nhello\r\n0\r\n\r\n", f"f{next(_probes)}")
        [r] = exchange(gw.url, data)
        assert r.status == 400 and r.headers[b"connection"] == b"close", (headers, r.status)
        error = json.loads(r.body)["error"]
        assert error["code"] == "bad_request" and word in error["message"], error
        assert _decision(gw, r.headers[b"tokenward-request-id"].decode()) == "request/malformed"


def test_a_proved_call_in_any_accepted_framing_reaches_the_upstream_as_judged(
    gw: GatewayProc, upstream: RecordingUpstream
) -> None:
    """The proof binds the bytes the gateway read; the upstream must get those bytes."""
    body = chat_body("framed in pieces")
    framings = {
        "length": ([b"Content-Length: %d" % len(body)], body),
        "chunked": ([b"Transfer-Encoding: chunked"], b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)),
        "chunked in pieces, extensions, trailer": (
            [b"Transfer-Encoding: Chunked"],
            b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7))
            + b"0\r\nX-Trailer: t\r\n\r\n",
        ),
    }
    for name, (headers, payload) in framings.items():
        probe = f"f{next(_probes)}"
        proof = proof_header(get_challenge(gw.url, CHAT), body)
        data = _request(
            b"POST", CHAT.encode(), [b"content-type: application/json", b"tokenward-proof: " + proof.encode(),
                                    *headers, b"connection: close"], payload, probe,
        )  # fmt: skip
        [r] = exchange(gw.url, data)
        assert r.status == 200, (name, r.status, r.body)
        assert upstream.bodies[probe] == body, name


# -- generated framings ----------------------------------------------------------------

_length_values = st.sampled_from([b"5", b"0", b"4", b"6", b"05", b" 5", b"5 ", b"+5", b"-1", b"5,5", b"1e1", b""])
_coding_values = st.sampled_from(
    [b"chunked", b"Chunked", b"chunked ", b" chunked", b"identity", b"gzip", b"gzip, chunked", b"chunked, gzip",
     b"chunked,chunked", b"\tchunked", b"x-chunked", b""]
)  # fmt: skip
_header = st.one_of(
    st.builds(lambda v: b"Content-Length: " + v, _length_values),
    st.builds(lambda v: b"Transfer-Encoding: " + v, _coding_values),
    st.builds(
        lambda n, v: n + b": " + v,
        st.sampled_from([b"Content-length", b"TRANSFER-ENCODING", b"content-length "]),
        st.sampled_from([b"5", b"chunked"]),
    ),
    st.sampled_from([b" chunked", b"\tx", b"X-Pad: y", b"Connection: keep-alive", b"Connection: close"]),
)
_body = st.sampled_from(
    [b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"", b"hel", b"hellohello", b"5\nhello\n0\n\n",
     b"5;x\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n", b"g\r\nhello\r\n0\r\n\r\n"]
)  # fmt: skip


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    headers=st.lists(_header, max_size=4),
    body=_body,
    path=st.sampled_from([b"/static/x", CHAT.encode()]),
    eol=st.sampled_from([b"\r\n", b"\n"]),
)
def test_generated_framings_never_smuggle_a_call(
    gw: GatewayProc, upstream: RecordingUpstream, headers: list[bytes], body: bytes, path: bytes, eol: bytes
) -> None:
    n = next(_probes)
    probe, smuggled = f"g{n}", f"smuggled{n}"
    data = _request(b"POST", path, headers, body, probe, eol) + _smuggled(smuggled)
    check(gw, upstream, data, [probe], smuggled)


def _decision(gw: GatewayProc, request_id: str) -> str | None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conn = sqlite3.connect(gw.db)
        try:
            row = conn.execute("SELECT name FROM decisions WHERE request_id = ?", (request_id,)).fetchone()
        finally:
            conn.close()
        if row is not None:
            return str(row[0])
        time.sleep(0.1)
    return None
