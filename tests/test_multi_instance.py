"""Issue 6 end to end: several gateways, one truth (Redis and Redis Cluster), failure
behaviour when Redis goes away, and the PostgreSQL decision log."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header
from tests.services import RedisClusterServers, RedisServer, need_redis

from tokenward.sdk.device import DeviceKey

CHAT = "/v1/chat/completions"
PRICES = {"demo-1": {"input": 0, "output": 10_000}, "default": {"input": 0, "output": 10_000}}


@pytest.fixture(scope="module", params=["redis", "cluster"])
def shared_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_redis()
    workdir = tmp_path_factory.mktemp(request.param)
    service = RedisServer(workdir) if request.param == "redis" else RedisClusterServers(workdir)
    with service:
        scheme = "redis+cluster" if request.param == "cluster" else "redis"
        yield f"{scheme}://{service.url.split('://', 1)[1]}"


def pair(tmp_path: Path, upstream: Upstream, store: str, extra: dict | None = None) -> tuple[GatewayProc, GatewayProc]:
    """Two gateway processes with one key ring and one store (a fresh prefix per test)."""
    key = secrets.token_bytes(32)
    prefix = f"t{secrets.token_hex(4)}:"
    # A generous timeout: this checks agreement between instances, not latency on a loaded machine.
    policy = {"store": f"{store}?prefix={prefix}&timeout=5", "proof": {"difficulty": 0}, "weights": {"behaviour/*": 0}}
    policy.update(extra or {})
    a = start_gateway(tmp_path, upstream.url, policy, name="a", key=key)
    try:
        b = start_gateway(tmp_path, upstream.url, policy, name="b", key=key)
    except BaseException:
        a.stop()
        raise
    return a, b


async def test_one_proof_200_copies_over_two_instances(tmp_path, demo_upstream: Upstream, shared_store: str) -> None:
    a, b = pair(tmp_path, demo_upstream, shared_store)
    try:
        body = chat_body("one proof, two gateways")
        proof = proof_header(get_challenge(a.url, CHAT), body)
        headers = {"content-type": "application/json", "Tokenward-Proof": proof}
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:
            replies = await asyncio.gather(
                *(client.post((a if i % 2 else b).url + CHAT, content=body, headers=headers) for i in range(200))
            )
        statuses = [r.status_code for r in replies]
        assert statuses.count(200) == 1, sorted(set(statuses))
        assert {r.json()["error"]["code"] for r in replies if r.status_code != 200} == {"proof_replayed"}
    finally:
        a.stop()
        b.stop()


async def test_budget_for_50_holds_over_two_instances(tmp_path, demo_upstream: Upstream, shared_store: str) -> None:
    a, b = pair(
        tmp_path, demo_upstream, shared_store,
        {"prices": PRICES, "limits": [],
         "budgets": [{"name": "global-day", "key": "global", "usd": 50, "window": 86400}]},
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
            jobs = []
            for i in range(200):
                gw = a if i % 2 else b
                body = json.dumps({"model": "demo-1", "max_tokens": 100, "stream": True,
                                   "messages": [{"role": "user", "content": f"call {i}"}]}).encode()  # fmt: skip
                c = (await client.post(f"{gw.url}/.tokenward/challenge", json={"route": CHAT})).json()
                jobs.append((gw, body, proof_header(c, body)))

            async def call(gw: GatewayProc, body: bytes, proof: str) -> int:
                headers = {"content-type": "application/json", "Tokenward-Proof": proof, "x-demo-chunk-delay": "0.3"}
                async with client.stream("POST", gw.url + CHAT, content=body, headers=headers) as r:
                    await r.aread()
                    return r.status_code

            statuses = await asyncio.gather(*(call(*job) for job in jobs))
        assert statuses.count(200) == 50, sorted(set(statuses))
        assert statuses.count(429) == 150
    finally:
        a.stop()
        b.stop()


def test_device_limit_holds_over_two_instances(tmp_path, demo_upstream: Upstream, shared_store: str) -> None:
    a, b = pair(
        tmp_path, demo_upstream, shared_store,
        {"limits": [{"name": "per-device", "key": "device", "limit": 10, "window": 600}],
         "devices": {"registration_difficulty": 0}},
    )  # fmt: skip
    try:
        device = DeviceKey()
        statuses = []
        with httpx.Client(timeout=10) as client:
            device.register(client, a.url)  # registered on one instance, known to both
            for i in range(16):
                gw = a if i % 2 else b
                body = chat_body(f"device call {i}")
                proof = proof_header(get_challenge(gw.url, CHAT, client), body)
                r = client.post(gw.url + CHAT, content=body, headers={
                    "content-type": "application/json", "Tokenward-Proof": proof,
                    "Tokenward-Device": device.header(proof, body)})  # fmt: skip
                statuses.append(r.status_code)
        # The 11th request is refused, whichever instance it reaches.
        assert statuses == [200] * 10 + [429] * 6, statuses
    finally:
        a.stop()
        b.stop()


def test_key_rotation_keeps_challenges_of_the_previous_key(tmp_path, demo_upstream: Upstream) -> None:
    # Across a restart only on a shared store: a memory store's challenges end with it
    # (tests/proof/test_restart_replay.py; rotation without a restart: tests/proof/test_key_files.py).
    need_redis()
    redis = RedisServer(tmp_path / "redis").start()
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    store = {"store": redis.url}
    gw = start_gateway(tmp_path, demo_upstream.url, {**store, "proof": {"difficulty": 0}}, name="old", key=old)
    body = chat_body("issued before the rotation")
    try:
        challenge = get_challenge(gw.url, CHAT)
    finally:
        gw.stop()
    import base64

    keys_file = tmp_path / "keys"
    keys_file.write_text("\n".join(base64.urlsafe_b64encode(k).rstrip(b"=").decode() for k in (new, old)) + "\n")
    keys_file.chmod(0o600)
    try:
        rotated = start_gateway(
            tmp_path, demo_upstream.url, {**store, "proof": {"difficulty": 0, "keys_file": str(keys_file)}},
            name="rotated",
        )  # fmt: skip
    except BaseException:
        redis.stop()
        raise
    try:
        headers = {"content-type": "application/json", "Tokenward-Proof": proof_header(challenge, body)}
        ok = httpx.post(rotated.url + CHAT, content=body, headers=headers)
        assert ok.status_code == 200, ok.text
        fresh = get_challenge(rotated.url, CHAT)
        assert fresh["challenge"][:8] != challenge["challenge"][:8]  # signed by the new key (another key id)
    finally:
        rotated.stop()
        redis.stop()


def test_redis_outage_fail_closed_and_fail_open_then_recovery(tmp_path, demo_upstream: Upstream) -> None:
    need_redis()
    with RedisServer(tmp_path / "redis") as redis:
        gw = start_gateway(
            tmp_path, demo_upstream.url,
            {"store": f"{redis.url}?timeout=0.3", "proof": {"difficulty": 0},
             "emergency": {"limit": 5, "window": 600}, "weights": {"behaviour/*": 0},
             "routes": [{"path": CHAT, "api": "openai"},
                        {"path": "/v1/completions", "api": "openai", "store_failure": "fail_open"}]},
        )  # fmt: skip
        try:
            with httpx.Client(timeout=10) as client:

                def call(path: str) -> httpx.Response:
                    body = chat_body("outage") if path == CHAT else json.dumps(
                        {"model": "demo-1", "prompt": "outage"}).encode()  # fmt: skip
                    proof = proof_header(get_challenge(gw.url, path, client), body)
                    headers = {"content-type": "application/json", "Tokenward-Proof": proof}
                    return client.post(gw.url + path, content=body, headers=headers)

                assert call(CHAT).status_code == 200
                redis.kill()
                closed = [call(CHAT) for _ in range(5)]
                opened = [call("/v1/completions").status_code for _ in range(8)]
                health = client.get(gw.url + "/.tokenward/health")
                assert {r.status_code for r in closed} == {503}
                assert {r.json()["error"]["code"] for r in closed} == {"store_unavailable"}
                assert opened == [200] * 5 + [429] * 3  # the emergency limit, this instance only
                assert health.status_code == 503 and health.json() == {"status": "unavailable"}
                redis.restart()
                back = time.monotonic()
                while call(CHAT).status_code != 200:
                    assert time.monotonic() - back < 2.0, "not serving within 2 s of Redis coming back"
                    time.sleep(0.05)
                assert client.get(gw.url + "/.tokenward/health").status_code == 200
            assert gw.proc.poll() is None
        finally:
            gw.stop()


@pytest.fixture
def pg_log() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    admin_dsn = os.environ.get("TOKENWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        admin = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable: {exc}")
        pytest.skip("PostgreSQL is not reachable")
    name = f"tokenward_gw_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_dsn.rpartition('/')[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


async def test_postgres_log_loses_nothing_across_graceful_shutdown(
    tmp_path: Path, demo_upstream: Upstream, pg_log: str
) -> None:
    import psycopg

    gw = start_gateway(
        tmp_path, demo_upstream.url,
        {"log": f"{pg_log}?flush_interval=60&batch=100000", "proof": {"difficulty": 0},
         "limits": [], "weights": {"behaviour/*": 0}},
    )  # fmt: skip
    answered: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def worker(k: int) -> None:
                for i in range(1000):
                    body = chat_body(f"{k}-{i}")
                    try:
                        c = (await client.post(f"{gw.url}/.tokenward/challenge", json={"route": CHAT})).json()
                        r = await client.post(gw.url + CHAT, content=body, headers={
                            "content-type": "application/json", "Tokenward-Proof": proof_header(c, body)})  # fmt: skip
                    except (httpx.HTTPError, json.JSONDecodeError, ValueError):
                        return
                    answered.append(r.headers["tokenward-request-id"])

            async def terminate() -> None:
                while len(answered) < 300:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                gw.proc.send_signal(signal.SIGTERM)

            await asyncio.wait_for(asyncio.gather(terminate(), *(worker(k) for k in range(8))), 60)
        assert await asyncio.to_thread(gw.proc.wait, 30) == 0
    finally:
        gw.stop()
    with psycopg.connect(pg_log) as conn:
        logged = {row[0] for row in conn.execute("SELECT request_id FROM decisions")}
    missing = set(answered) - logged
    assert len(answered) >= 300 and not missing, f"{len(missing)} of {len(answered)} decisions lost"
