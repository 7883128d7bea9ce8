"""kill -9 of a gateway under load: every decision it answered is logged, exactly once.

A real gateway (granian and its worker process) in front of the demo upstream, loaded by
async clients with proved calls (allowed) and calls without a proof (401 challenges, also
decisions); the whole process tree is SIGKILLed mid-load, a new gateway starts on the
same log (and replays the journal the dead one left), and again. At the end every request
id that got a response is in the log once (docs/operations.md, "Durability of the
decision log"). The long flush interval keeps a batch in memory at every instant: what
the journal has to save.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway, stop
from tests.independent_client import chat_body, get_challenge, proof_header

CHAT = "/v1/chat/completions"
ROUNDS = 3  # gateways started; all but the last are killed
KILL_AFTER = 1000  # answers per gateway before the kill


def _descendants(pid: int) -> list[int]:
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found.extend([child, *_descendants(child)])
    return found


def kill_tree(gw: GatewayProc) -> None:
    """SIGKILL the gateway and its worker processes at once: no shutdown, no drain."""
    for pid in [*_descendants(gw.proc.pid), gw.proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    gw.proc.wait(10)


async def load(gw: GatewayProc, answered: list[str], stop_after: int | None) -> None:
    """Proved and unproved calls from 12 clients until the gateway dies (kill after
    ``stop_after`` answers) or, with None, for a fixed number of calls."""
    proofs = []
    for i in range(40):  # challenges are per gateway (memory store): solve them for this one
        body = chat_body(f"proved {i}")
        proofs.append((body, proof_header(get_challenge(gw.url, CHAT), body)))
    killed = asyncio.Event()
    mine: list[str] = []

    async def client(http: httpx.AsyncClient, k: int) -> None:
        i = k
        while not killed.is_set() and (stop_after is not None or i < 600):
            headers = {"content-type": "application/json"}
            if i < len(proofs):
                body, headers["Tokenward-Proof"] = proofs[i]
            else:
                body = chat_body(f"unproved {i}")
            try:
                r = await http.post(gw.url + CHAT, content=body, headers=headers)
            except httpx.HTTPError:
                if stop_after is not None:  # the gateway is gone
                    return
                raise
            mine.append(r.headers["tokenward-request-id"])
            i += 12

    async def killer() -> None:
        if stop_after is None:
            return
        while len(mine) < stop_after:  # noqa: ASYNC110 - polling a plain list is simplest here
            await asyncio.sleep(0.002)
        await asyncio.to_thread(kill_tree, gw)
        killed.set()

    limits = httpx.Limits(max_connections=12)
    async with httpx.AsyncClient(timeout=10, limits=limits) as http:
        await asyncio.wait_for(asyncio.gather(killer(), *(client(http, k) for k in range(12))), 60)
    answered.extend(mine)


def files(directory: Path) -> list[str]:
    return os.listdir(directory) if directory.exists() else []


def logged(count_rows: Callable[[], list[tuple[str, int, str]]], answered: list[str]) -> None:
    rows = count_rows()
    counts = {rid: n for rid, n, _ in rows}
    missing = [rid for rid in answered if rid not in counts]
    assert not missing, f"{len(missing)} of {len(answered)} answered decisions are not in the log"
    twice = {rid: n for rid, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} decisions logged more than once"
    actions = {}
    for _, n, action in rows:
        actions[action] = actions.get(action, 0) + n
    assert actions.get("allow", 0) >= 40 and actions.get("challenge", 0) > 1000, actions


async def run_rounds(tmp_path: Path, upstream: Upstream, log_uri: str, journal: Path) -> tuple[list[str], list[str]]:
    """-> (request ids answered, the journal files each killed gateway left)."""
    policy = {"proof": {"difficulty": 4}, "log": log_uri}
    answered: list[str] = []
    left: list[str] = []
    for round_ in range(ROUNDS):
        gw = start_gateway(tmp_path, upstream.url, policy)
        try:
            last = round_ == ROUNDS - 1
            await load(gw, answered, None if last else KILL_AFTER)
            if not last:
                assert gw.proc.poll() is not None
                left.append(" ".join(n for n in files(journal) if n.endswith(".lock")))
        finally:
            if gw.proc.poll() is None:
                assert stop(gw.proc) == 0
    left.append(" ".join(files(journal)))
    return answered, left


def journals_as_expected(left: list[str]) -> None:
    """Each killed gateway left its journal; the next start replayed it; the clean stop
    removed everything."""
    assert all(left[:-1]) and len(set(left[:-1])) == ROUNDS - 1, left
    assert left[-1] == "", f"journal files left after a clean stop: {left[-1]}"


async def test_kill_9_under_load_loses_no_answered_decision_sqlite(tmp_path: Path, demo_upstream: Upstream) -> None:
    db = tmp_path / "killed.db"
    answered, left = await run_rounds(
        tmp_path, demo_upstream, f"sqlite:///{db}?flush_interval=0.5&batch=100000", Path(f"{db}.journal.d")
    )

    def rows() -> list[tuple[str, int, str]]:
        with sqlite3.connect(db) as conn:
            return conn.execute(
                "SELECT request_id, COUNT(*), MIN(action) FROM decisions GROUP BY request_id"
            ).fetchall()

    logged(rows, answered)
    journals_as_expected(left)


async def test_kill_9_under_load_loses_no_answered_decision_postgres(
    tmp_path: Path, demo_upstream: Upstream, dsn: str
) -> None:
    psycopg = pytest.importorskip("psycopg")
    # The default journal of a PostgreSQL log: in the gateway's working directory (tmp_path).
    answered, left = await run_rounds(
        tmp_path, demo_upstream, f"{dsn}&flush_interval=0.5&batch=100000", tmp_path / "tokenward-journal.d"
    )

    def rows() -> list[tuple[str, int, str]]:
        with psycopg.connect(dsn) as conn:
            return conn.execute(
                "SELECT request_id, COUNT(*), MIN(action) FROM decisions GROUP BY request_id"
            ).fetchall()

    logged(rows, answered)
    journals_as_expected(left)
