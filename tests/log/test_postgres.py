"""PostgreSQL decision log against the local server: what only it does (reconnects,
at-least-once delivery, close_timeout, the schema in a database it shares). What every
decision log does is in test_conformance.py, which runs on PostgreSQL too.

The session creates its own database (dropped at the end); each test gets its own schema
in it through the DSN's ``options=-csearch_path=...``. The server is
``TOKENWARD_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import asyncio

import pytest

psycopg = pytest.importorskip("psycopg")

from tokenward.log.postgres import (  # noqa: E402
    PostgresLog,
    init_schema,
    mask_dsn,
    open_postgres_log,
    read_recent,
)

from .records import make_record  # noqa: E402


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])


def request_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT request_id FROM decisions ORDER BY id")]


def _terminate_writers(database: str) -> int:
    with psycopg.connect(database, autocommit=True) as admin:
        return int(
            admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'tokenward-log' AND datname = current_database()"
            ).fetchone()[0]
        )


async def test_concurrent_writers_lose_nothing(dsn: str) -> None:
    # Four gateways' logs on one table, each fed by many tasks at once.
    logs = [PostgresLog(dsn, batch=64) for _ in range(4)]
    await asyncio.gather(*(log.start() for log in logs))

    async def feed(w: int, task: int) -> None:
        for i in range(250):
            logs[w].record(make_record(i, request_id=f"w{w}-t{task}-{i}"))
            if i % 50 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(feed(w, t) for w in range(4) for t in range(5)))
    await asyncio.gather(*(log.close() for log in logs))
    ids = request_ids(dsn)
    assert len(ids) == 4 * 5 * 250
    assert len(set(ids)) == len(ids)


async def test_a_dropped_connection_is_reopened_and_nothing_is_lost(dsn: str, database: str) -> None:
    log = PostgresLog(dsn, batch=50, flush_interval=0.01)
    await log.start()
    for i in range(1_000):
        log.record(make_record(i))
    await asyncio.sleep(0.05)
    assert _terminate_writers(database) >= 1
    for i in range(1_000, 2_000):
        log.record(make_record(i))
    await log.close()
    ids = request_ids(dsn)
    assert set(ids) == {f"req-{i:05d}" for i in range(2_000)}
    assert len(ids) - 2_000 <= 50  # at least once: at most the batch in flight twice


async def test_schema_is_created_once_and_upgraded(dsn: str) -> None:
    init_schema(dsn)
    init_schema(dsn)  # idempotent
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE decisions DROP COLUMN error")  # as written by an older version
    log = PostgresLog(dsn)
    await log.start()
    log.record(make_record(1, error="boom"))
    await log.close()
    assert next(read_recent(dsn, 1))["error"] == "boom"
    with psycopg.connect(dsn) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'decisions'"
            ).fetchall()
        )
    assert types["signals"] == "jsonb" and types["ts"] == "double precision" and types["status"] == "bigint"


async def test_start_fails_clearly_when_postgres_is_unreachable() -> None:
    log = PostgresLog("postgresql://postgres:sekret@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(RuntimeError, match="cannot open decision log") as info:
        await log.start()
    assert "sekret" not in str(info.value)


async def test_the_log_uri_with_options_works_everywhere(dsn: str) -> None:
    uri = dsn.replace("postgresql://", "postgres://") + "&batch=7&flush_interval=0.5&max_queue=99"
    log = open_postgres_log(uri)
    assert (log._batch, log._interval, log._max_queue) == (7, 0.5, 99)
    assert "batch" not in log.dsn and "search_path" in log.dsn
    init_schema(uri)  # what `tokenward db init` runs with the policy's log URI
    await log.start()
    log.record(make_record(1))
    await log.close()
    assert [r["request_id"] for r in read_recent(uri, 5)] == ["req-00001"]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlite:///x.db", "not a PostgreSQL URI"),
        ("postgresql://h/db?batch=many", "batch"),
    ],
)
def test_bad_uris_are_clear_errors(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_postgres_log(uri)


def test_passwords_are_masked() -> None:
    assert mask_dsn("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_dsn("postgresql://h/db?password=pw&sslmode=require") == "postgresql://h/db?password=***&sslmode=require"
    assert "pw" not in repr(PostgresLog("postgresql://u:pw@h/db"))


async def test_a_dropped_table_is_created_again(dsn: str) -> None:
    log = PostgresLog(dsn, flush_interval=0.01)
    await log.start()
    log.record(make_record(1))
    await asyncio.sleep(0.2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE decisions")
    log.record(make_record(2))
    await log.close()
    assert request_ids(dsn) == ["req-00002"]
    assert log.lost == 0


async def test_close_gives_up_after_close_timeout_when_postgres_is_gone(dsn: str, database: str) -> None:
    log = PostgresLog(dsn, close_timeout=0.5)
    await log.start()
    log.dsn = "postgresql://postgres@127.0.0.1:1/gone?connect_timeout=1"  # the server "moved away"
    assert _terminate_writers(database) >= 1
    for i in range(10):
        log.record(make_record(i))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await log.close()
    assert loop.time() - started < 5
    assert log.lost == 10 and log.written == 0
