"""`tokenward explain REQUEST_ID`: one logged decision in words (docs/operations.md)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
from tests.conftest import TOKENWARD, GatewayProc, Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header

CHAT = "/v1/chat/completions"


def explain(gw: GatewayProc, request_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 10
    while True:  # the log is written in batches
        done = subprocess.run(
            [*TOKENWARD, "explain", request_id, "--policy", str(gw.db.with_suffix(".yaml")), *extra],
            capture_output=True, text=True, timeout=60, cwd=gw.db.parent,
        )  # fmt: skip
        if done.returncode == 0 or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


def row_of(gw: GatewayProc, request_id: str) -> dict:
    done = explain(gw, request_id, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_explain_prints_every_signal_of_a_refused_and_an_allowed_request(
    tmp_path: Path, demo_upstream: Upstream
) -> None:
    gw = start_gateway(tmp_path, demo_upstream.url, {"proof": {"difficulty": 4}})
    try:
        body = chat_body("explain me")
        refused = httpx.post(gw.url + CHAT, content=body, headers={"content-type": "application/json"})
        assert refused.status_code == 401
        proof = proof_header(get_challenge(gw.url, CHAT), body)
        allowed = httpx.post(gw.url + CHAT, content=body,
                             headers={"content-type": "application/json", "tokenward-proof": proof})  # fmt: skip
        assert allowed.status_code == 200
        for response, action, code in ((refused, "challenge", "proof_required"), (allowed, "allow", None)):
            rid = response.headers["tokenward-request-id"]
            row = row_of(gw, rid)
            assert row["request_id"] == rid and row["action"] == action and row["code"] == code
            assert row["signals"], "the log row has signals to explain"
            done = explain(gw, rid[:12])  # the first characters are enough
            assert done.returncode == 0, done.stderr
            text = done.stdout
            assert f"request {rid}" in text and f"outcome: {action}" in text
            if code:
                assert code in text and "a fresh proof" in text
            for signal in row["signals"]:
                assert signal["name"] in text, signal["name"]
            if code:  # refused for want of work: not judged (guard/unproved.py)
                assert "risk: not weighed" in text and "risk score" not in text
            else:
                assert "risk score" in text and "thresholds of the route" in text
            assert "what would have changed the outcome:" in text
        missing = explain(gw, "0123456789abcdef")
        assert missing.returncode == 1 and "no decision" in missing.stderr
        assert explain(gw, "not-hex%").returncode == 1
    finally:
        gw.stop()
