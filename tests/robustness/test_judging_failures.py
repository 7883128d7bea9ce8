"""A bug in judging (fault injection: no real input is known to cause one any more) must
not let one proof replay the failure for free: the proof is used up, what the request
counted is given back, and its replays are refused as replays.

Requests go through the real gate (the ASGI middleware) to a real guard and memory store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.independent_client import chat_body, solve

from tokenward.guard import Guard
from tokenward.http.middleware import TokenwardMiddleware
from tokenward.log import open_log
from tokenward.policy import parse_policy
from tokenward.proof import KeyRing, issue_challenge
from tokenward.store import Budget, Commit, Inflight, MemoryStore, Reserve

CHAT = "/v1/chat/completions"


class Broken(Exception):
    pass


class FaultyGuard(Guard):
    """Fails at one stage of judging: before its plan, before its store batch, or after."""

    stage = "before-batch"

    def _plan(self, *args: Any, **kwargs: Any) -> Any:
        if self.stage == "before-plan":
            raise Broken("before the plan")
        return super()._plan(*args, **kwargs)

    def _conversation(self, *args: Any, **kwargs: Any) -> Any:
        if self.stage == "before-batch":
            raise Broken("before the store batch")
        return super()._conversation(*args, **kwargs)

    def _decide(self, *args: Any, **kwargs: Any) -> Any:
        if self.stage == "after-batch":
            raise Broken("after the store batch")
        return super()._decide(*args, **kwargs)


async def call(app: Any, body: bytes, proof: str) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"tokenward-proof", proof.encode())]
    scope = {
        "type": "http", "method": "POST", "path": CHAT, "raw_path": CHAT.encode(), "query_string": b"",
        "headers": headers, "client": ("203.0.113.9", 5000), "scheme": "http", "http_version": "1.1",
    }  # fmt: skip
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, orjson.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


@pytest.mark.parametrize("stage", ["before-plan", "before-batch", "after-batch"])
async def test_a_request_that_cannot_be_judged_uses_up_its_proof(tmp_path: Path, stage: str) -> None:
    db = tmp_path / "log.db"
    policy = parse_policy({
        "log": f"sqlite:///{db}", "proof": {"difficulty": 0}, "routes": [{"path": CHAT, "api": "openai"}],
        "budgets": [{"name": "global", "key": "global", "usd": 100, "window": 86400}],
    })  # fmt: skip
    store = MemoryStore()
    guard = FaultyGuard(policy, store=store, keys=KeyRing.generate(), log=open_log(policy.log))
    guard.stage = stage
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    mw = TokenwardMiddleware(app, guard=guard)
    await guard.start()
    body = chat_body()
    challenge = issue_challenge(guard.keys, CHAT, 0, 60, guard.clock())
    proof = f"v1.{challenge.token}.{solve(challenge.token, body, 0)}"

    status, error = await call(mw, body, proof)
    assert status == 500 and error["error"]["code"] == "internal_error"
    for _ in range(3):  # each replay fails the same way, but is answered as a replay
        status, error = await call(mw, body, proof)
        assert status == 401, error
        assert error["error"]["code"] == "proof_replayed" and error["error"]["challenge"]["v"] == 1
    assert reached == []
    # Nothing the failed request counted is left held: its concurrency slot, its budget.
    assert store.execute_now([Inflight("inflight:ip:203.0.113.9", 0, 600)]) == [0]
    whole = Reserve((Budget("bud:global:global", 100, 86400),), 100.0, "probe", 60)
    (held,) = store.execute_now([whole, Commit("probe", 0.0)])[:1]
    assert held.ok, "the failed request's reservation is still held"
    guard.stage = "none"
    fresh = issue_challenge(guard.keys, CHAT, 0, 60, guard.clock())
    status, _ = await call(mw, body, f"v1.{fresh.token}.{solve(fresh.token, body, 0)}")
    assert status == 200 and reached == [CHAT]
    await guard.close()
    for _ in range(50):
        rows = sqlite3.connect(db).execute("SELECT name, code, error, reserved_usd FROM decisions").fetchall()
        if len(rows) == 5:
            break
        await asyncio.sleep(0.05)
    replayed = [("proof/replayed", "proof_replayed")] * 3
    assert [r[:2] for r in rows] == [("gateway/error", "internal_error"), *replayed, ("proof/ok", None)]
    assert rows[0][2].startswith("Broken: ")
