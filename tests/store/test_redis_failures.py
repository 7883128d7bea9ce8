"""The Redis store when Redis goes away, hangs, fills up or comes back; and its URIs.

Every test here starts its own redis-server (they get killed), on a free loopback port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.services import RedisClusterServers, RedisSentinel, RedisServer, free_port, need_redis

from tokenward.store import (
    Budget,
    Consume,
    Get,
    Op,
    Put,
    Range,
    Reserve,
    StoreFull,
    StoreUnavailable,
)

redis_mod = pytest.importorskip("redis")

from tokenward.store.redis import RedisStore, open_redis_store  # noqa: E402

TIMEOUT = 0.3
SLACK = 1.0  # scheduling delays on a busy machine; the bounds still prove "no hang"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    need_redis()
    srv = RedisServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def open_store(url: str, **query: str | float) -> RedisStore:
    options = {"timeout": TIMEOUT, **query}
    return open_redis_store(url + "?" + "&".join(f"{k}={v}" for k, v in options.items()))


async def test_killed_server_raises_store_unavailable_quickly(server: RedisServer) -> None:
    store = open_store(server.url)
    assert await store.consume_once("before", 60)
    server.kill()
    batches: list[list[Op]] = [[Consume("after", 60)], [Get("k"), Range("l")]]  # a write, then retried reads
    for batch in batches:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.execute(batch)
        assert time.monotonic() - started < TIMEOUT + SLACK
    assert await store.ping() is False
    await store.close()


async def test_restarted_server_is_used_by_the_same_store(server: RedisServer) -> None:
    store = open_store(server.url)
    assert await store.execute([Put("k", b"v", 60), Get("k")]) == [True, b"v"]
    loads = store.stats()["script_loads"]
    server.kill()
    with pytest.raises(StoreUnavailable):
        await store.execute([Get("k")])
    server.start()  # same port, empty, and without our scripts
    # The next call reconnects, meets NOSCRIPT, loads the scripts again and succeeds.
    assert await store.execute([Put("k", b"w", 60), Get("k"), Consume("c", 60)]) == [True, b"w", True]
    assert store.stats()["script_loads"] == loads + 1
    assert store.stats()["noscript"] >= 1
    assert await store.ping() is True
    await store.close()


async def test_store_recovers_while_requests_keep_coming(server: RedisServer) -> None:
    """Under steady traffic, Redis dies and returns: every call ends (no hang), failures
    are StoreUnavailable only, and traffic succeeds again soon after the restart."""
    store = open_store(server.url, timeout=1.0)
    outcomes: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                await store.execute([Consume(f"c{n}:{i}", 60), Reserve((Budget("b", 1e9, 60),), 1, f"r{n}:{i}", 5)])
                outcomes.append((time.monotonic(), "ok"))
            except StoreUnavailable:
                outcomes.append((time.monotonic(), "unavailable"))
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(client(n)) for n in range(20)]
    await asyncio.sleep(0.2)
    server.kill()
    await asyncio.sleep(0.3)
    await asyncio.to_thread(server.start)
    restarted = time.monotonic()
    await asyncio.sleep(1.6)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    kinds = {kind for _, kind in outcomes}
    assert kinds == {"ok", "unavailable"}
    ok_after = [t for t, kind in outcomes if kind == "ok" and t > restarted]
    assert ok_after and ok_after[0] - restarted < 1.0
    # Well within 2 s of Redis coming back, everything is served again.
    assert not [t for t, kind in outcomes if kind == "unavailable" and t > restarted + 1.5]
    await store.close()


async def test_hung_server_times_out_then_recovers(server: RedisServer) -> None:
    store = open_store(server.url)
    assert await store.execute([Put("k", b"v", 60)]) == [True]
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.execute([Put("k", b"lost?", 60)])
        elapsed = time.monotonic() - started
        assert TIMEOUT * 0.9 < elapsed < 3 * TIMEOUT + SLACK
        started = time.monotonic()
        assert await store.ping() is False
        assert time.monotonic() - started < 3 * TIMEOUT + SLACK
    finally:
        server.resume()
    # The timed-out connection was dropped: no late reply is read as another call's answer.
    assert await store.execute([Put("k2", b"fresh", 60), Get("k2"), Get("k")]) == [True, b"fresh", b"lost?"]
    await store.close()


async def test_flushed_scripts_are_loaded_again(server: RedisServer) -> None:
    store = open_store(server.url)
    assert await store.consume_once("a", 60)
    server.cli("SCRIPT", "FLUSH")
    assert await store.execute([Consume("a", 60), Consume("b", 60)]) == [False, True]
    assert store.stats()["noscript"] == 2
    assert store.stats()["script_loads"] == 2
    await store.close()


async def test_full_redis_raises_store_full(server: RedisServer) -> None:
    store = open_store(server.url)
    assert await store.consume_once("a", 60)
    server.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    server.cli("CONFIG", "SET", "maxmemory", "1")
    try:
        with pytest.raises(StoreFull):
            await store.consume_once("b", 60)
    finally:
        server.cli("CONFIG", "SET", "maxmemory", "0")
    assert issubclass(StoreFull, StoreUnavailable)
    assert await store.consume_once("b", 60)
    await store.close()


async def test_nothing_listening_is_unavailable_not_a_crash() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.consume_once("x", 60)
    assert await store.ping() is False
    assert time.monotonic() - started < 2 * TIMEOUT + SLACK
    await store.close()


async def test_many_waiting_calls_are_bounded_by_max_connections(server: RedisServer) -> None:
    store = open_store(server.url, max_connections=4)
    results = await asyncio.gather(*(store.consume_once(f"k{i}", 60) for i in range(300)))
    assert all(results)
    clients = int(
        next(
            line for line in server.cli("INFO", "clients").splitlines() if line.startswith("connected_clients:")
        ).split(":")[1]
    )
    assert clients <= 4 + 2 + 1  # the pool (with its slack for script loads and pings) + redis-cli
    await store.close()


# -- Cluster: one node dies --------------------------------------------------------------


async def test_cluster_node_death_is_unavailable_for_its_slots_then_recovers(tmp_path: Path) -> None:
    need_redis()
    cluster = RedisClusterServers(tmp_path, node_timeout_ms=1000)
    cluster.start()
    try:
        store = open_redis_store(cluster.url + f"?timeout={TIMEOUT}")
        keys = [f"k{i}" for i in range(30)]
        assert all(await store.execute([Consume(k, 60) for k in keys]))
        victim = cluster.nodes[0]
        victim.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.execute([Consume(f"new{k}", 60) for k in keys])  # some land on the dead node
        assert time.monotonic() - started < 3 * TIMEOUT + SLACK
        victim.start()  # same port and node config: it takes its slots back
        restarted = time.monotonic()
        deadline = time.monotonic() + 10
        for attempt in range(1000):
            try:
                # Fresh keys each time: a failed batch may have run on the healthy nodes.
                results = await store.execute([Consume(f"late{attempt}:{k}", 60) for k in keys])
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert all(results)
        # A restarted master refuses (CLUSTERDOWN) for about cluster-node-timeout before it
        # serves again; the client itself reconnects and re-reads the topology.
        assert time.monotonic() - restarted < 1.0 + 2.0
        await store.close()
    finally:
        cluster.stop()


# -- Sentinel -----------------------------------------------------------------------------


async def test_sentinel_uri_finds_the_master(server: RedisServer, tmp_path: Path) -> None:
    with RedisSentinel(tmp_path, server, service="twmaster") as sentinel:
        store = open_redis_store(sentinel.url + f"?timeout={TIMEOUT}&prefix=s:")
        assert await store.execute([Consume("a", 60), Consume("a", 60), Put("p", b"1", 60), Get("p")]) == [
            True, False, True, b"1",
        ]  # fmt: skip
        assert await store.ping()
        await store.close()
    assert server.cli("EXISTS", "s:{a}:u").strip() == "1"  # the data is on the monitored master


# -- URIs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("redis://127.0.0.1:6390", "Redis"),
        ("redis://user:secret@127.0.0.1:6390/3?prefix=gw:&timeout=0.2&max_connections=8", "Redis"),
        ("rediss://h.invalid/0?ssl_cert_reqs=none", "Redis"),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "RedisCluster"),
        ("redis+cluster://[::1]:7000", "RedisCluster"),
        ("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster", "Redis"),
        ("redis+sentinel://127.0.0.1/mymaster/2", "Redis"),
    ],
)
async def test_uris_open_without_connecting(uri: str, kind: str) -> None:
    store = open_redis_store(uri)
    assert type(store._client).__name__ == kind
    assert "secret" not in repr(store)
    await store.close()


def test_uri_options_are_applied() -> None:
    store = open_redis_store("redis://:pw@127.0.0.1:6390/3?prefix=gw:&timeout=0.2&max_connections=8")
    assert repr(store) == "RedisStore(redis://:***@127.0.0.1:6390/3, prefix='gw:')"
    assert store._timeout == 0.2
    client: Any = store._client
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "pw", 0.2)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("memcached://x", "supported schemes"),
        ("redis://h?pool=3", "unknown redis store option 'pool'"),
        ("redis://h?timeout=soon", "timeout"),
        ("redis://h?timeout=0", "timeout"),
        ("redis://h?max_connections=0", "max_connections"),
        ("redis://h?prefix=a{b}", "braces"),
        ("redis://h?ssl_cert_reqs=none", "unknown redis store option"),  # TLS options need rediss
        ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis://h1,h2", "redis\\+cluster"),
        ("redis://h/zero", "database"),
        ("redis://h:port", "port"),
        ("redis+cluster://h:7000/1", "no databases"),
        ("redis+sentinel://h:26379", "Sentinel service"),
    ],
)
def test_bad_uris_are_clear_errors(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_redis_store(uri)


def test_passwords_never_appear_in_errors() -> None:
    with pytest.raises(ValueError) as info:
        open_redis_store("redis://user:hunter2@h?bogus=1")
    assert "hunter2" not in str(info.value)
