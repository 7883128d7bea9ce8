"""CORS on a real gateway (``tokenward serve``) in front of an upstream that sends CORS
headers of its own (docs/browser-sdk.md, "SDK on another origin"; docs/policy.md, ``cors``).

What must hold: a preflight is answered for exactly the origins a route lists, and never
reaches the guard, the decision log or the upstream; every answer on such a route (allowed,
refused, streamed) carries that exact origin for an allowed page and nothing for any other;
the upstream's own ``Access-Control-*`` headers never open a route to another site; the
challenge and device endpoints answer the union of the routes' origins.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.conftest import GatewayProc, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header

from tokenward.http.cors import route_cors
from tokenward.policy import PolicyError, parse_policy

CHAT = "/v1/chat/completions"  # cors: APP, APP_TLS (+ header X-App, max_age 300)
MESSAGES = "/v1/messages"  # cors: OTHER, with credentials
LIMITED = "/api/limited"  # cors: APP; one call per 10 minutes
PLAIN = "/v1/completions"  # protected, no cors
APP = "http://app.example:8080"
APP_TLS = "https://app.example"
OTHER = "https://other.example"
EVIL = "https://evil.example"
ALLOWED = {APP, APP_TLS, OTHER}  # on some route
CHAT_ALLOWED = {APP, APP_TLS}

POLICY: dict[str, Any] = {
    "routes": [
        {
            "path": CHAT,
            "api": "openai",
            "cors": {"origins": [APP, "HTTPS://App.Example:443"], "headers": ["X-App"], "max_age": 300},
        },
        {"path": MESSAGES, "api": "anthropic", "cors": {"origins": [OTHER], "credentials": True}},
        {"path": LIMITED, "api": "custom", "cors": {"origins": [APP]}},
        {"path": PLAIN, "api": "openai"},
        {"path": "/public/*", "protect": False},
    ],
    "limits": [{"name": "limited", "key": "route", "limit": 1, "window": 600, "routes": [LIMITED]}],
    "proof": {"difficulty": 4},
    "max_body_bytes": 8192,
    "weights": {"behaviour/*": 0},
}

UPSTREAM_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-credentials", b"true"),
    (b"access-control-expose-headers", b"x-upstream-secret"),
    (b"access-control-allow-methods", b"*"),
    (b"vary", b"Accept-Encoding"),
    (b"x-upstream-secret", b"s3cret"),
]
_COMPLETION = (
    b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":'
    b'{"role":"assistant","content":"served"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)
_CHUNK = b'data: {"id":"x","object":"chat.completion.chunk","model":"m","choices":[%s]}\n\n'
_STREAM = [
    _CHUNK % b'{"index":0,"delta":{"content":"stre"}}',
    _CHUNK % b'{"index":0,"delta":{"content":"amed"}}',
    b'data: {"id":"x","object":"chat.completion.chunk","model":"m","choices":[],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n',
    b"data: [DONE]\n\n",
]


class CorsUpstream:
    """An upstream (uvicorn, real socket) that answers everything with permissive CORS
    headers of its own, and records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off", interface="asgi3"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.append((scope["method"], scope["path"], headers))
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": UPSTREAM_CORS})
            await send({"type": "http.response.body", "body": b""})
        elif b'"stream":true' in body.replace(b" ", b""):
            start = [(b"content-type", b"text/event-stream"), *UPSTREAM_CORS]
            await send({"type": "http.response.start", "status": 200, "headers": start})
            for chunk in _STREAM:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b""})
        else:
            start = [(b"content-type", b"application/json"), *UPSTREAM_CORS]
            await send({"type": "http.response.start", "status": 200, "headers": start})
            await send({"type": "http.response.body", "body": _COMPLETION})

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def cors_upstream() -> Iterator[CorsUpstream]:
    up = CorsUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(cors_upstream: CorsUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    g = start_gateway(tmp_path_factory.mktemp("cors"), cors_upstream.url, POLICY)
    yield g
    g.stop()


def preflight(
    gw: GatewayProc, path: str, origin: str | None, headers: str = "content-type,tokenward-proof"
) -> httpx.Response:
    h = {"access-control-request-method": "POST", "access-control-request-headers": headers}
    if origin is not None:
        h["origin"] = origin
    return httpx.request("OPTIONS", gw.url + path, headers=h)


def cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def proved(gw: GatewayProc, path: str, origin: str | None, body: bytes | None = None) -> httpx.Response:
    body = body or chat_body("hello")
    headers = {"content-type": "application/json", "tokenward-proof": proof_header(get_challenge(gw.url, path), body)}
    if origin is not None:
        headers["origin"] = origin
    return httpx.post(gw.url + path, content=body, headers=headers)


def logged(gw: GatewayProc) -> int:
    time.sleep(0.5)  # the log is written in batches
    with sqlite3.connect(gw.db) as db:
        return int(db.execute("SELECT count(*) FROM decisions").fetchone()[0])


# -- preflights ----------------------------------------------------------------------------


def test_an_allowed_origin_gets_its_preflight_answered_without_reaching_anything(
    gw: GatewayProc, cors_upstream: CorsUpstream
) -> None:
    before_up, before_log = len(cors_upstream.seen), logged(gw)
    for origin in (APP, APP_TLS):
        r = preflight(gw, CHAT, origin)
        assert r.status_code == 204, r.text
        assert r.content == b""
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-methods"] == "POST"
        allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
        # What tokenward.js sends (src/tokenward/sdk/tokenward.js), and the route's extra header.
        assert {"content-type", "tokenward-proof", "tokenward-signals", "tokenward-device", "x-app"} <= allowed
        assert r.headers["access-control-max-age"] == "300"
        assert r.headers["vary"] == "Origin"
        assert "access-control-allow-credentials" not in r.headers
    # Case and a trailing slash in the route path match the route, as for calls.
    assert preflight(gw, CHAT.upper() + "/", APP).headers["access-control-allow-origin"] == APP
    assert len(cors_upstream.seen) == before_up  # never forwarded
    assert logged(gw) == before_log  # never a decision


def test_credentials_are_allowed_only_where_the_route_says_so(gw: GatewayProc) -> None:
    r = preflight(gw, MESSAGES, OTHER, "content-type,tokenward-proof,x-api-key")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == OTHER
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-max-age"] == "600"  # the default
    # Origins are per route: the chat route's pages may not call this one.
    r = preflight(gw, MESSAGES, APP_TLS)
    assert r.status_code == 403 and cors_headers(r) == {}


@pytest.mark.parametrize(
    "origin",
    [EVIL, None, "null", "http://app.example", "https://app.example:8443", "https://app.example.evil.example",
     "https://evil.example/https://app.example", f"{APP}, {EVIL}", "*", APP.upper(), APP + "/"],
)  # fmt: skip
def test_any_other_origin_gets_a_clear_403_and_no_cors_header(
    gw: GatewayProc, cors_upstream: CorsUpstream, origin: str | None
) -> None:
    before = len(cors_upstream.seen)
    r = preflight(gw, CHAT, origin)
    assert r.status_code == 403
    assert cors_headers(r) == {}
    error = r.json()["error"]
    assert error["code"] == "origin_not_allowed" and "cors.origins" in error["message"]
    assert len(cors_upstream.seen) == before


def test_two_origin_headers_are_no_origin(gw: GatewayProc) -> None:
    r = httpx.request(
        "OPTIONS", gw.url + CHAT,
        headers=[("origin", APP), ("origin", APP), ("access-control-request-method", "POST")],
    )  # fmt: skip
    assert r.status_code == 403 and cors_headers(r) == {}


def test_routes_without_cors_answer_no_preflight(gw: GatewayProc, cors_upstream: CorsUpstream) -> None:
    # A protected route that lists no origins: OPTIONS is not one of its methods.
    r = preflight(gw, PLAIN, APP)
    assert r.status_code == 405 and cors_headers(r) == {}
    # A path no route names (other_routes: refuse).
    r = preflight(gw, "/v1/unknown", APP)
    assert r.status_code == 404 and cors_headers(r) == {}
    # An unprotected route is forwarded as it is: its upstream answers its own CORS.
    before = len(cors_upstream.seen)
    r = preflight(gw, "/public/page", APP)
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
    assert cors_upstream.seen[before][:2] == ("OPTIONS", "/public/page")


def test_an_options_request_that_is_not_a_preflight_is_not_answered_as_one(gw: GatewayProc) -> None:
    r = httpx.request("OPTIONS", gw.url + CHAT, headers={"origin": APP})
    assert r.status_code == 405  # not a method of the route
    assert r.headers["access-control-allow-origin"] == APP  # readable by the page all the same
    assert "access-control-allow-methods" not in r.headers


def test_challenge_and_device_endpoints_answer_the_union_of_the_routes_origins(
    gw: GatewayProc, cors_upstream: CorsUpstream
) -> None:
    before = len(cors_upstream.seen)
    for path in ("/.tokenward/challenge", "/.tokenward/device"):
        for origin in ALLOWED:
            r = preflight(gw, path, origin)
            assert r.status_code == 204, (path, origin)
            assert r.headers["access-control-allow-origin"] == origin
            assert r.headers["access-control-allow-methods"] == "POST"
            allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
            assert allowed == {"content-type", "tokenward-proof"}
            assert r.headers["access-control-max-age"] == "300"  # the smallest of the routes'
            assert "access-control-allow-credentials" not in r.headers  # the SDK sends none there
        r = preflight(gw, path, EVIL)
        assert r.status_code == 403 and cors_headers(r) == {}
    assert len(cors_upstream.seen) == before

    r = httpx.post(gw.url + "/.tokenward/challenge", json={"route": CHAT}, headers={"origin": OTHER})
    assert r.status_code == 200 and r.json()["challenge"]
    assert r.headers["access-control-allow-origin"] == OTHER and r.headers["vary"] == "Origin"
    r = httpx.post(gw.url + "/.tokenward/challenge", json={"route": CHAT}, headers={"origin": EVIL})
    assert r.status_code == 200 and cors_headers(r) == {} and r.headers["vary"] == "Origin"
    # The SDK learns that a route is unprotected from the 400: readable cross-origin too.
    r = httpx.post(gw.url + "/.tokenward/challenge", json={"route": "/public/x"}, headers={"origin": APP})
    assert r.status_code == 400 and r.headers["access-control-allow-origin"] == APP
    r = httpx.get(gw.url + "/.tokenward/sdk.js", headers={"origin": APP_TLS})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP_TLS
    # Health and metrics are not for pages.
    r = httpx.get(gw.url + "/.tokenward/health", headers={"origin": APP})
    assert cors_headers(r) == {}


# -- answers ------------------------------------------------------------------------------


def assert_cors_answer(r: httpx.Response, origin: str) -> None:
    assert r.headers["access-control-allow-origin"] == origin
    assert "Origin" in r.headers.get_list("vary")
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"tokenward-request-id", "tokenward-decision", "tokenward-device", "retry-after"} <= exposed


def test_a_refusal_with_its_challenge_is_readable_by_an_allowed_page(gw: GatewayProc) -> None:
    r = httpx.post(gw.url + CHAT, content=chat_body(), headers={"content-type": "application/json", "origin": APP})
    assert r.status_code == 401
    assert_cors_answer(r, APP)
    assert r.json()["error"]["challenge"]["challenge"]  # what the SDK retries with
    assert "access-control-allow-credentials" not in r.headers
    # Anthropic's route: its shape, and the credentials it allows.
    r = httpx.post(gw.url + MESSAGES, content=b"{}", headers={"content-type": "application/json", "origin": OTHER})
    assert r.status_code == 401 and r.json()["type"] == "error"
    assert_cors_answer(r, OTHER)
    assert r.headers["access-control-allow-credentials"] == "true"


def test_throttled_and_oversized_refusals_carry_the_headers(gw: GatewayProc) -> None:
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    first = proved(gw, LIMITED, APP, body)
    assert first.status_code == 200, first.text
    assert_cors_answer(first, APP)
    second = proved(gw, LIMITED, APP, body)
    assert second.status_code == 429, second.text
    assert_cors_answer(second, APP)
    assert int(second.headers["retry-after"]) > 0
    r = httpx.post(gw.url + CHAT, content=b"x" * 9000, headers={"origin": APP_TLS})
    assert r.status_code == 413
    assert_cors_answer(r, APP_TLS)


def test_the_upstreams_cors_headers_are_replaced_on_a_cors_route(gw: GatewayProc) -> None:
    r = proved(gw, CHAT, APP)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "served"
    assert_cors_answer(r, APP)
    # The upstream said "*", credentials and its own exposed header: none of it survives.
    assert r.headers.get_list("access-control-allow-origin") == [APP]
    assert "access-control-allow-credentials" not in r.headers
    assert "access-control-allow-methods" not in r.headers
    assert "x-upstream-secret" not in r.headers["access-control-expose-headers"]
    assert "Accept-Encoding" in r.headers.get_list("vary")  # other headers are left alone

    # Another site's page gets no CORS header at all: the upstream's "*" is dropped too.
    # (The call itself is served: CORS binds browsers; the proof binds everyone.)
    r = proved(gw, CHAT, EVIL)
    assert r.status_code == 200
    assert cors_headers(r) == {} and "Origin" in r.headers.get_list("vary")
    r = proved(gw, CHAT, None)
    assert r.status_code == 200 and cors_headers(r) == {}


def test_a_route_without_cors_leaves_the_upstreams_headers_alone(gw: GatewayProc) -> None:
    # Documented: there the gateway refuses every preflight (405), so no page on another
    # origin can send a proved call whose answer these headers would expose.
    r = proved(gw, PLAIN, EVIL, chat_body("plain"))
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"


def test_a_streamed_answer_carries_the_headers(gw: GatewayProc) -> None:
    body = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "stream it"}]})
    proof = proof_header(get_challenge(gw.url, CHAT), body)
    headers = {"content-type": "application/json", "tokenward-proof": proof, "origin": APP_TLS}
    with httpx.stream("POST", gw.url + CHAT, content=body, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert_cors_answer(r, APP_TLS)
        assert r.headers.get_list("access-control-allow-origin") == [APP_TLS]
        text = b"".join(r.iter_bytes()).decode()
    assert '"stre"' in text and '"amed"' in text and "[DONE]" in text


# -- origin spellings ------------------------------------------------------------------------


def _variants() -> st.SearchStrategy[str]:
    base = st.sampled_from(sorted(ALLOWED))

    def case(s: str, flips: list[bool]) -> str:
        return "".join(c.swapcase() if f else c for c, f in zip(s, flips + [False] * len(s), strict=False))

    return st.one_of(
        base,
        st.builds(case, base, st.lists(st.booleans(), max_size=30)),
        st.builds(
            lambda b, suffix: b + suffix,
            base,
            st.sampled_from(["/", ":443", ":80", ":8080", ":0", ".", " ", "\t", "#", "?", "/x", ":08080"]),
        ),
        st.builds(lambda prefix, b: prefix + b, st.sampled_from([" ", "x", "https://a.", "\t", "null"]), base),
        st.builds(lambda b, c: b.replace("a", c, 1), base, st.sampled_from(["а", "ɑ", "A", "á", "\u200ba"])),
        st.builds(lambda a, b: f"{a}, {b}", base, base),
        st.sampled_from(["null", "*", "", "file://", "https://app.example.", "https://xn--pp-..example"]),
        st.text(max_size=40),
    )


@settings(max_examples=400, deadline=None)
@given(spelling=_variants())
@example(spelling=APP_TLS.upper())
@example(spelling=APP_TLS + ":443")
def test_only_an_exact_allowed_origin_is_ever_reflected_in_process(spelling: str) -> None:
    policy = parse_policy(POLICY)
    route = policy.route_for(CHAT)
    assert route is not None
    raw = spelling.encode("utf-8")
    for preflight_ in (True, False):
        headers = [(b"origin", raw)] + ([(b"access-control-request-method", b"POST")] if preflight_ else [])
        scope = {"type": "http", "method": "OPTIONS" if preflight_ else "POST", "path": CHAT, "headers": headers}
        start = asyncio.run(_answer(scope, route))
        reflected = [v for k, v in start["headers"] if k == b"access-control-allow-origin"]
        if spelling in CHAT_ALLOWED:
            assert reflected == [raw]
        else:
            assert reflected == [], spelling
            assert not any(k.startswith(b"access-control-") for k, _ in start["headers"])


async def _answer(scope: dict[str, Any], route: Any) -> dict[str, Any]:
    """The response start a route's CORS gives: its preflight answer, or an upstream's
    permissive answer passed through the CORS ``send``."""
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    wrapped = await route_cors(scope, send, route)
    if wrapped is not None:
        await wrapped({"type": "http.response.start", "status": 200, "headers": UPSTREAM_CORS})
    return sent[0]


@settings(max_examples=120, deadline=None)
@given(spelling=_variants().filter(lambda s: s.isprintable() and s == s.strip()))
def test_only_an_exact_allowed_origin_is_ever_reflected_by_the_gateway(gw: GatewayProc, spelling: str) -> None:
    r = httpx.request(
        "OPTIONS", gw.url + CHAT,
        headers=[(b"origin", spelling.encode("utf-8")), (b"access-control-request-method", b"POST")],
    )  # fmt: skip
    if spelling in CHAT_ALLOWED:
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == spelling
    else:
        assert r.status_code in (400, 403) and cors_headers(r) == {}, spelling


# -- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "says"),
    [
        ("*", "list the exact origins"),
        ("null", "list the exact origins"),
        ("https://app.example/", "write 'https://app.example'"),
        ("https://app.example/chat", "write 'https://app.example'"),
        ("https://*.example", "wildcards"),
        ("ftp://app.example", "http:// and https://"),
        ("app.example", "scheme://host[:port]"),
        ("https://bücher.example", "xn--bcher-kva.example"),
        ("https://user@app.example", "user name"),
        ("https://app.example:99999", "not a port"),
    ],
)
def test_the_policy_refuses_anything_but_exact_origins(origin: str, says: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy({"routes": [{"path": CHAT, "cors": {"origins": [origin]}}]})
    assert "routes[0].cors.origins" in str(err.value) and says in str(err.value)


def test_the_policy_normalizes_origins_as_browsers_send_them() -> None:
    policy = parse_policy({"routes": [{"path": CHAT, "cors": {"origins": [
        "HTTPS://App.Example:443", "http://LOCALHOST:80", "http://127.0.0.1:5173", "https://[::1]:8443",
    ]}}]})  # fmt: skip
    cors = policy.routes[0].cors
    assert cors is not None
    assert cors.origins == ("https://app.example", "http://localhost", "http://127.0.0.1:5173", "https://[::1]:8443")


def test_cors_is_refused_on_unprotected_routes_and_header_wildcards_are_refused() -> None:
    with pytest.raises(PolicyError, match="cors is for protected routes"):
        parse_policy({"routes": [{"path": "/p", "protect": False, "cors": {"origins": [APP]}}]})
    with pytest.raises(PolicyError, match="not a header name"):
        parse_policy({"routes": [{"path": CHAT, "cors": {"origins": [APP], "headers": ["*"]}}]})
    with pytest.raises(PolicyError, match="at least 1"):
        parse_policy({"routes": [{"path": CHAT, "cors": {"origins": []}}]})


# -- the ASGI middleware ------------------------------------------------------------------------


def test_the_middleware_answers_cors_for_the_wrapped_app(tmp_path: Any) -> None:
    """Same rules inside an app (TokenwardMiddleware): the app's own CORS headers on a cors
    route are replaced, its preflights on that route never reach it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from tests.conftest import free_port
    from tests.test_middleware import serve

    from tokenward import TokenwardMiddleware

    reached: list[str] = []

    async def chat(request: Request) -> JSONResponse:
        reached.append(request.method)
        return JSONResponse({"ok": True}, headers={"access-control-allow-origin": "*"})

    policy = parse_policy({
        "log": f"sqlite:///{tmp_path / 'mw.db'}", "proof": {"difficulty": 4},
        "routes": [{"path": "/api/chat", "api": "custom", "cors": {"origins": [APP_TLS]}}],
    })  # fmt: skip
    inner = Starlette(routes=[Route("/api/chat", chat, methods=["POST", "OPTIONS"])])
    for url in serve(TokenwardMiddleware(inner, policy), free_port()):
        h = {"access-control-request-method": "POST", "origin": APP_TLS}
        r = httpx.request("OPTIONS", url + "/api/chat", headers=h)
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == APP_TLS
        r = httpx.request("OPTIONS", url + "/api/chat", headers={**h, "origin": EVIL})
        assert r.status_code == 403 and cors_headers(r) == {}
        r = httpx.request("OPTIONS", url + "/.tokenward/challenge", headers=h)
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == APP_TLS
        assert reached == []
        body = b'{"messages": [{"role": "user", "content": "hi"}]}'
        for origin, expected in ((APP_TLS, [APP_TLS]), (EVIL, [])):
            proof = proof_header(get_challenge(url, "/api/chat"), body)
            r = httpx.post(url + "/api/chat", content=body, headers={"tokenward-proof": proof, "origin": origin})
            assert r.status_code == 200 and r.json() == {"ok": True}
            assert r.headers.get_list("access-control-allow-origin") == expected  # never the app's "*"
        assert_cors_answer(httpx.post(url + "/api/chat", content=body, headers={"origin": APP_TLS}), APP_TLS)  # 401
        assert reached == ["POST", "POST"]
