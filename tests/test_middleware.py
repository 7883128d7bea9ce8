"""TokenwardMiddleware inside an ordinary Starlette app, served by uvicorn on a socket."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from tests.conftest import free_port
from tests.independent_client import get_challenge, proof_header

from tokenward import TokenwardMiddleware
from tokenward.policy import parse_policy


async def chat(request: Request) -> JSONResponse:
    data = await request.json()
    return JSONResponse({"echo": data["messages"][-1]["content"], "raw": (await request.body()).decode()})


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("public page")


def serve(app, port: int) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def app_url(tmp_path) -> Iterator[tuple[str, str]]:
    db = tmp_path / "mw.db"
    policy = parse_policy({
        "log": f"sqlite:///{db}", "proof": {"difficulty": 6},
        "routes": [{"path": "/api/chat", "api": "openai"}],
    })  # fmt: skip
    inner = Starlette(routes=[Route("/api/chat", chat, methods=["POST"]), Route("/", home)])
    yield from ((url, str(db)) for url in serve(TokenwardMiddleware(inner, policy), free_port()))


def test_middleware_protects_routes_and_replays_the_exact_body(app_url: tuple[str, str]) -> None:
    url, _ = app_url
    assert httpx.get(url + "/").text == "public page"  # unprotected: untouched
    body = b'{"messages": [{"role": "user", "content": "caf\xc3\xa9 \xe2\x98\x95"}]}'
    refused = httpx.post(url + "/api/chat", content=body)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "proof_required"
    proof = proof_header(get_challenge(url, "/api/chat"), body)
    ok = httpx.post(url + "/api/chat", content=body, headers={"Tokenward-Proof": proof})
    assert ok.status_code == 200, ok.text
    assert ok.json()["raw"].encode() == body  # the app read exactly the proved bytes
    assert ok.headers["tokenward-decision"] == "allow" and ok.headers["tokenward-request-id"]
    again = httpx.post(url + "/api/chat", content=body, headers={"Tokenward-Proof": proof})
    assert again.json()["error"]["code"] == "proof_replayed"


def test_middleware_logs_decisions_and_drains_on_shutdown(tmp_path) -> None:
    db = tmp_path / "mw2.db"
    policy = parse_policy({
        "log": f"sqlite:///{db}?flush_interval=60&batch=100000", "proof": {"difficulty": 4},
        "routes": [{"path": "/api/chat", "api": "openai"}],
    })  # fmt: skip
    inner = Starlette(routes=[Route("/api/chat", chat, methods=["POST"])])
    ids = []
    for url in serve(TokenwardMiddleware(inner, policy), free_port()):
        for i in range(5):
            body = f'{{"messages": [{{"role": "user", "content": "{i}"}}]}}'.encode()
            proof = proof_header(get_challenge(url, "/api/chat"), body)
            r = httpx.post(url + "/api/chat", content=body, headers={"Tokenward-Proof": proof})
            ids.append(r.headers["tokenward-request-id"])
        ids.append(httpx.post(url + "/api/chat", content=b"{}").headers["tokenward-request-id"])
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT request_id, action FROM decisions").fetchall())
    assert set(ids) <= set(rows)
    assert sorted(rows[i] for i in ids) == ["allow"] * 5 + ["challenge"]


def test_type_checkers_see_the_middleware_and_its_attributes(tmp_path) -> None:
    """``from tokenward import TokenwardMiddleware`` is imported lazily at run time; a type
    checker must still see the class, its constructor and its attributes (not ``object``)."""
    from mypy import api

    (tmp_path / "use_middleware.py").write_text(
        "import tokenward\n"
        "from tokenward import Guard, TokenwardMiddleware\n"
        "from tokenward.http.common import ASGIApp, Receive, Scope, Send\n"
        "async def inner(scope: Scope, receive: Receive, send: Send) -> None: ...\n"
        "mw: TokenwardMiddleware = tokenward.TokenwardMiddleware(inner, policy='tokenward.yaml')\n"
        "guard: Guard = mw.guard\n"
        "app: ASGIApp = mw.app\n"
        "mw.not_an_attribute\n"
    )
    out, err, _ = api.run([
        "--strict", "--no-incremental", "--ignore-missing-imports", "--follow-imports=silent",
        str(tmp_path / "use_middleware.py"),
    ])  # fmt: skip
    errors = [line for line in out.splitlines() if ": error:" in line]
    # Exactly one error: the attribute that does not exist (a class hiding its attributes
    # behind __getattr__, or a module attribute typed as object, gives others or none).
    assert len(errors) == 1 and '"not_an_attribute"' in errors[0], out + err
