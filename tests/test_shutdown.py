"""SIGTERM under load: every decision the gateway answered is in SQLite afterwards."""

from __future__ import annotations

import asyncio
import signal
import sqlite3

import httpx
from tests.conftest import Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header

CHAT = "/v1/chat/completions"


async def test_sigterm_drains_the_decision_log(tmp_path, demo_upstream: Upstream) -> None:
    # The writer would flush only every 60 s: whatever reaches SQLite got there by the drain.
    db = tmp_path / "drain.db"
    gw = start_gateway(
        tmp_path, demo_upstream.url,
        {"proof": {"difficulty": 4}, "log": f"sqlite:///{db}?flush_interval=60&batch=100000"},
    )  # fmt: skip
    answered: list[str] = []
    sent_term = asyncio.Event()
    try:
        # Pre-solve proofs so the load is dense: half valid, half refused.
        proofs = []
        for i in range(200):
            body = chat_body(f"request {i}")
            proofs.append((body, proof_header(get_challenge(gw.url, CHAT), body) if i % 2 else None))

        async def worker(client: httpx.AsyncClient, k: int) -> None:
            i = k
            while i < 100_000:
                body, proof = proofs[i % len(proofs)] if i < len(proofs) else (chat_body(str(i)), None)
                headers = {"content-type": "application/json"}
                if proof:
                    headers["Tokenward-Proof"] = proof
                try:
                    r = await client.post(gw.url + CHAT, content=body, headers=headers)
                except httpx.HTTPError:
                    if sent_term.is_set():
                        return
                    raise
                answered.append(r.headers["tokenward-request-id"])
                i += 16

        async def terminator() -> None:
            while len(answered) < 400:  # noqa: ASYNC110 - polling a plain list is simplest here
                await asyncio.sleep(0.005)
            gw.proc.send_signal(signal.SIGTERM)
            sent_term.set()

        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.wait_for(asyncio.gather(terminator(), *(worker(client, k) for k in range(16))), 60)
        code = await asyncio.to_thread(gw.proc.wait, 20)
    finally:
        gw.stop()
    assert code == 0, gw.proc.stdout.read().decode() if gw.proc.stdout else code
    assert len(answered) >= 400
    with sqlite3.connect(db) as conn:
        logged = {row[0] for row in conn.execute("SELECT request_id FROM decisions")}
        actions = dict(conn.execute("SELECT action, COUNT(*) FROM decisions GROUP BY action").fetchall())
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} of {len(answered)} answered decisions are not in the log"
    assert actions.get("allow", 0) > 50 and actions.get("challenge", 0) > 50, actions
