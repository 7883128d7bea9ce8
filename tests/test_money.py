"""Issue 5 end to end: budgets hold under concurrency, usage is committed exactly."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time

import httpx
import openai
from tests.conftest import Upstream, start_gateway
from tests.independent_client import get_challenge, proof_header

from tokenward.sdk.client import http_client

CHAT = "/v1/chat/completions"
# Output tokens cost $0.01 each and input is free, so a call allowed 100 output tokens
# reserves exactly $1 and a budget of $50 fits 50 calls in flight.
PRICES = {"demo-1": {"input": 0, "output": 10_000}, "default": {"input": 0, "output": 10_000}}


def body(text: str, *, stream: bool = False, usage: bool | None = None, max_tokens: int = 100) -> bytes:
    data: dict = {"model": "demo-1", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}
    if stream:
        data["stream"] = True
    if usage is not None:
        data["stream_options"] = {"include_usage": usage}
    return json.dumps(data).encode()


def rows(db, request_ids) -> dict[str, dict]:
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            found = {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM decisions")}
        if set(request_ids) <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


async def test_200_concurrent_calls_against_a_budget_that_fits_50(tmp_path, demo_upstream: Upstream) -> None:
    gw = start_gateway(
        tmp_path, demo_upstream.url,
        {"prices": PRICES, "budgets": [{"name": "global-day", "key": "global", "usd": 50, "window": 86400}],
         "proof": {"difficulty": 0}, "limits": [], "weights": {"behaviour/*": 0}},
    )  # fmt: skip
    try:
        proofs = []
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
            for i in range(200):
                b = body(f"call {i}", stream=True)
                c = (await client.post(f"{gw.url}/.tokenward/challenge", json={"route": CHAT})).json()
                proofs.append((b, proof_header(c, b)))

            async def call(b: bytes, proof: str) -> tuple[int, str, str]:
                # A slow stream keeps every admitted call in flight while the others arrive.
                headers = {"content-type": "application/json", "Tokenward-Proof": proof, "x-demo-chunk-delay": "0.3"}
                async with client.stream("POST", gw.url + CHAT, content=b, headers=headers) as r:
                    text = (await r.aread()).decode()
                    return r.status_code, r.headers["tokenward-request-id"], text

            results = await asyncio.gather(*(call(b, p) for b, p in proofs))
        statuses = [s for s, _, _ in results]
        admitted = statuses.count(200)
        assert admitted == 50, sorted(set(statuses))
        assert statuses.count(429) == 150
        refused = next(t for s, _, t in results if s == 429)
        assert json.loads(refused)["error"]["code"] == "budget_exhausted"
        found = rows(gw.db, [rid for _, rid, _ in results])
        committed = sum(r["cost_usd"] or 0 for r in found.values())
        assert 0 < committed <= 50
        for _, rid, _ in results:
            row = found[rid]
            if row["status"] == 200:
                assert row["reserved_usd"] == 1.0 and row["usage_exact"] == 1
                assert row["cost_usd"] == row["tokens_out"] * 0.01
            else:
                assert row["name"] == "budget/global-day" and row["cost_usd"] is None
        out = subprocess.run(  # noqa: ASYNC221 - the gateway runs in its own process
            [sys.executable, "-m", "tokenward.cli", "spend", "--db", str(gw.db), "--by", "model"],
            capture_output=True, text=True, check=True, env={"COLUMNS": "200", "PATH": ""},
        ).stdout  # fmt: skip
        assert f"${committed:,.4f} upstream spend over 50 calls" in out
        assert "budget/global-day" in out and "150" in out and "demo-1" in out
    finally:
        gw.stop()


def test_streaming_usage_is_committed_exactly(tmp_path, demo_upstream: Upstream) -> None:
    gw = start_gateway(tmp_path, demo_upstream.url, {"prices": PRICES, "proof": {"difficulty": 0}})
    try:
        ids = {}
        with httpx.Client(timeout=30) as client:
            for name, b in {
                "json": body("plain json please"),
                "asked": body("stream with usage", stream=True, usage=True),
                "not-asked": body("stream without usage", stream=True),
            }.items():
                demo_upstream.reset()
                proof = proof_header(get_challenge(gw.url, CHAT, client), b)
                headers = {"content-type": "application/json", "Tokenward-Proof": proof}
                r = client.post(gw.url + CHAT, content=b, headers=headers)
                assert r.status_code == 200
                upstream = demo_upstream.stats()["last_usage"]
                ids[name] = (r.headers["tokenward-request-id"], upstream, r.text)
        found = rows(gw.db, [rid for rid, _, _ in ids.values()])
        for name, (rid, upstream, _) in ids.items():
            row = found[rid]
            assert row["usage_exact"] == 1, name
            assert (row["tokens_in"], row["tokens_out"]) == (upstream["input_tokens"], upstream["output_tokens"]), name
            assert row["cost_usd"] == upstream["output_tokens"] * 0.01
        # The gateway asked the upstream for usage on the client's behalf...
        assert demo_upstream.stats()["last_request"]["body"]["stream_options"] == {"include_usage": True}
        # ...and the client that did not ask never sees that chunk; the one that asked does.
        assert '"usage":' not in ids["not-asked"][2].replace('"usage":null', "")
        assert ids["not-asked"][2].rstrip().endswith("data: [DONE]")
        assert '"choices":[]' in ids["asked"][2]
    finally:
        gw.stop()


def test_openai_sdk_stream_without_usage_parses_and_is_charged(tmp_path, demo_upstream: Upstream) -> None:
    gw = start_gateway(tmp_path, demo_upstream.url, {"prices": PRICES, "proof": {"difficulty": 0}})
    try:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", http_client=http_client())
        demo_upstream.reset()
        chunks = list(client.chat.completions.create(
            model="demo-1", messages=[{"role": "user", "content": "sdk stream"}], stream=True
        ))  # fmt: skip
        assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
        upstream = demo_upstream.stats()["last_usage"]
        with sqlite3.connect(gw.db) as conn:
            deadline = time.monotonic() + 5
            row = None
            while row is None and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT tokens_out, usage_exact FROM decisions WHERE status = 200 ORDER BY id DESC LIMIT 1"
                ).fetchone()
                time.sleep(0.05)
        assert row == (upstream["output_tokens"], 1)
    finally:
        gw.stop()


def test_client_disconnect_is_charged_for_what_was_produced(tmp_path, demo_upstream: Upstream) -> None:
    gw = start_gateway(
        tmp_path, demo_upstream.url,
        {"prices": PRICES, "proof": {"difficulty": 0},
         "budgets": [{"name": "global-day", "key": "global", "usd": 1000, "window": 86400}]},
    )  # fmt: skip
    try:
        b = body("leave halfway", stream=True)
        demo_upstream.reset()
        headers = {"content-type": "application/json", "x-demo-chunk-delay": "0.1",
                   "Tokenward-Proof": proof_header(get_challenge(gw.url, CHAT), b)}  # fmt: skip
        with httpx.stream("POST", gw.url + CHAT, content=b, headers=headers, timeout=30) as r:
            rid = r.headers["tokenward-request-id"]
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                if seen == 6:
                    break
        deadline = time.monotonic() + 10
        while demo_upstream.stats()["streams_aborted"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        upstream = demo_upstream.stats()["last_usage"]
        assert upstream["aborted"]
        row = rows(gw.db, [rid])[rid]
        assert row["usage_exact"] == 0  # no usage chunk ever came: the streamed text was counted
        # The estimate counts with a real tokenizer; the demo counts words and punctuation.
        assert upstream["output_tokens"] * 0.5 <= row["tokens_out"] <= upstream["output_tokens"] * 2 + 4
        assert row["cost_usd"] == row["tokens_out"] * 0.01 and row["cost_usd"] < row["reserved_usd"]
    finally:
        gw.stop()
