"""What a client learns when things go wrong: a well-formed error, never a traceback, a
path or a secret (docs/operations.md)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import GatewayProc
from tests.independent_client import chat_body, get_challenge, proof_header

from tokenward.facts import RequestFacts
from tokenward.guard import Guard
from tokenward.http.middleware import TokenwardMiddleware
from tokenward.log import open_log
from tokenward.policy import parse_policy
from tokenward.proof import KeyRing, issue_challenge, solve
from tokenward.store import open_store


class FaultyGuard(Guard):
    """Fault injection: a bug in judging (no real input is known to cause one)."""

    async def check(self, facts: RequestFacts) -> Any:
        raise RuntimeError("secret-internal-detail /etc/tokenward/keys")


async def _call(app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": headers, "client": ("127.0.0.1", 5000), "scheme": "http", "http_version": "1.1",
    }  # fmt: skip
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_a_bug_in_judging_is_a_logged_well_formed_500_and_nothing_is_forwarded(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    policy = parse_policy({"log": f"sqlite:///{db}", "routes": [{"path": "/v1/messages", "api": "anthropic"}]})
    guard = FaultyGuard(policy, store=open_store(policy.store), keys=KeyRing.generate(), log=open_log(policy.log))
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    mw = TokenwardMiddleware(app, guard=guard)
    # A request with its work done: one without is refused before any judging (guard/unproved.py).
    body = chat_body()
    challenge = issue_challenge(guard.keys, "/v1/messages", policy.proof.difficulty, 60, time.time())
    proof = f"v1.{challenge.token}.{solve(challenge.token, body, challenge.difficulty)}"
    headers = [(b"content-type", b"application/json"), (b"tokenward-proof", proof.encode())]
    status, body = await _call(mw, "/v1/messages", body, headers)
    assert status == 500
    error = orjson.loads(body)
    assert error["type"] == "error" and error["error"]["type"] == "internal_error"  # Anthropic's shape
    assert b"secret-internal-detail" not in body and b"/etc/" not in body and b"Traceback" not in body
    assert reached == []
    await guard.close()
    for _ in range(50):
        rows = sqlite3.connect(db).execute("SELECT name, error FROM decisions").fetchall()
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows == [("gateway/error", "RuntimeError: secret-internal-detail /etc/tokenward/keys")]


def test_health_says_ok_and_nothing_else(gateway: GatewayProc) -> None:
    r = httpx.get(gateway.url + "/.tokenward/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/.tokenward/", "/.tokenward/admin", "/.tokenward/../etc/passwd",
                                  "/.tokenward/sdk.js.map", "/.tokenward/%2e%2e/keys"])  # fmt: skip
def test_our_endpoints_reveal_nothing(gateway: GatewayProc, path: str) -> None:
    r = httpx.get(gateway.url + path)
    assert r.status_code in (400, 404)
    text = r.text
    assert r.json()["error"]["code"] in ("not_found", "bad_request")
    for leak in ("Traceback", "/work/", "site-packages", ".py", "tokenward.db", gateway.key.hex()):
        assert leak not in text


def test_refusals_never_carry_internals(gateway: GatewayProc) -> None:
    body = chat_body()
    proof = proof_header(get_challenge(gateway.url, "/v1/chat/completions"), body)
    r1 = httpx.post(gateway.url + "/v1/chat/completions", content=body,
                    headers={"content-type": "application/json", "Tokenward-Proof": proof})  # fmt: skip
    r2 = httpx.post(gateway.url + "/v1/chat/completions", content=body,
                    headers={"content-type": "application/json", "Tokenward-Proof": proof})  # fmt: skip
    assert r1.status_code == 200 and r2.status_code == 401
    for leak in ("Traceback", "/work/", "site-packages", '.py"', "sqlite", "redis"):
        assert leak not in r2.text


async def test_a_bug_in_the_refusal_of_a_request_without_work_leaves_it_to_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection in the shortcut (guard/unproved.py): the request is still answered
    and logged, by the pipeline, as the same refusal."""
    import tokenward.http.gate as gate

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the shortcut")

    monkeypatch.setattr(gate, "answer_unproved", broken)
    db = tmp_path / "log.db"
    policy = parse_policy({"log": f"sqlite:///{db}", "routes": [{"path": "/v1/messages", "api": "anthropic"}]})
    guard = Guard(policy, store=open_store(policy.store), keys=KeyRing.generate(), log=open_log(policy.log))
    await guard.start()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("nothing without a proof reaches the app")

    status, body = await _call(TokenwardMiddleware(app, guard=guard), "/v1/messages", chat_body(),
                               [(b"content-type", b"application/json")])  # fmt: skip
    assert status == 401 and orjson.loads(body)["error"]["type"] == "proof_required"
    await guard.close()
    rows = sqlite3.connect(db).execute("SELECT name, code FROM decisions").fetchall()
    assert rows == [("proof/missing", "proof_required")]
