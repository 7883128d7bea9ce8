"""The decision log names the account a request was judged as (the dashboard's top
accounts read it), whether the account is new or old."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import jwt
from tests.conftest import GatewayProc, Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header

from tokenward.log import find

CHAT = "/v1/chat/completions"


def logged(gw: GatewayProc, request_id: str) -> dict:
    deadline = time.monotonic() + 10
    while (row := find(f"sqlite:///{gw.db}", request_id)) is None:
        assert time.monotonic() < deadline, "not logged"
        time.sleep(0.1)
    return row


def test_every_judged_account_is_logged(tmp_path: Path, demo_upstream: Upstream) -> None:
    key = secrets.token_hex(32)
    policy = {
        "proof": {"difficulty": 4},
        "identity": {"jwt": {"algorithms": ["HS256"], "key": key, "created_at_claim": "created_at"}},
    }
    gw = start_gateway(tmp_path, demo_upstream.url, policy)
    try:
        accounts = {}
        for name, created in (("acct-old", time.time() - 400 * 86400), ("acct-new", time.time() - 60), (None, None)):
            body = chat_body(f"who am I {name}")
            headers = {
                "content-type": "application/json",
                "tokenward-proof": proof_header(get_challenge(gw.url, CHAT), body),
            }
            if name is not None:
                claims = {"sub": name, "exp": int(time.time()) + 600, "created_at": int(created)}
                headers["authorization"] = "Bearer " + jwt.encode(claims, key, algorithm="HS256")
            r = httpx.post(gw.url + CHAT, content=body, headers=headers)
            assert r.status_code == 200, r.text
            accounts[name] = logged(gw, r.headers["tokenward-request-id"])["account"]
        assert accounts == {"acct-old": "acct-old", "acct-new": "acct-new", None: None}
        # Refused before its proof was checked: judged as nobody yet.
        refused = httpx.post(gw.url + CHAT, content=chat_body(), headers={"content-type": "application/json"})
        assert refused.status_code == 401 and logged(gw, refused.headers["tokenward-request-id"])["account"] is None
    finally:
        gw.stop()
