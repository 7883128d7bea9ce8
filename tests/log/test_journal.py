"""The decision journal on its own: replayed once, kept when the database is gone.

The killed writers are real processes (``kill -9`` of themselves); the databases are
real SQLite files and the local PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tokenward.log.journal import RECOVERED
from tokenward.log.sqlite import SQLiteLog

from .records import make_record

# A process that logs 100 decisions, waits until they are committed, then logs 50 more
# and one whose response started but which never finished, and kills itself: the journal
# holds 100 decisions already in the database and 51 that are not.
_CHILD = """
import asyncio, os, signal, sys, time
from tokenward.log.sqlite import SQLiteLog
from tests.log.records import make_record

async def main():
    log = SQLiteLog(sys.argv[1], journal=sys.argv[2], flush_interval=0.05, batch=100_000)
    await log.start()
    for i in range(100):
        log.record(make_record(i))
    while log.written < 100:
        await asyncio.sleep(0.01)
    log._interval = 3600  # the next batch stays in memory:
    await asyncio.sleep(0.2)  # once the writer is in its next (long) wait
    for i in range(100, 150):
        log.record(make_record(i))
    with log.ahead():
        log.record(make_record(150, status=200, error=None))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def _rows(db: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT request_id, error FROM decisions ORDER BY request_id").fetchall()


async def test_a_killed_process_journal_is_replayed_once(tmp_path: Path) -> None:
    db, journal = tmp_path / "log.db", tmp_path / "journal"
    child = subprocess.run(  # noqa: ASYNC221 - the test waits for it and nothing else
        [sys.executable, "-c", _CHILD, str(db), str(journal)],
        cwd=Path(__file__).parents[2], capture_output=True, timeout=60,
    )  # fmt: skip
    assert child.returncode == -9, child.stderr.decode()
    assert len(_rows(db)) == 100
    assert any(name.endswith(".lock") for name in os.listdir(journal))

    log = SQLiteLog(db, journal=journal)
    await log.start()  # replays the dead process's journal
    await log.close()
    rows = _rows(db)
    assert [rid for rid, _ in rows] == [f"req-{i:05d}" for i in range(151)]  # each once
    assert dict(rows)["req-00150"] == RECOVERED and dict(rows)["req-00149"] is None
    assert log.replayed == 51
    assert os.listdir(journal) == []


async def test_postgres_gone_at_close_keeps_the_decisions_in_the_journal(
    dsn: str, database: str, tmp_path: Path
) -> None:
    from tokenward.log.postgres import PostgresLog

    from .test_postgres import _terminate_writers, request_ids

    journal = tmp_path / "journal"
    log = PostgresLog(dsn, close_timeout=0.5, journal=journal)
    await log.start()
    log.dsn = "postgresql://postgres@127.0.0.1:1/gone?connect_timeout=1"  # the server "moved away"
    assert _terminate_writers(database) >= 1
    for i in range(10):
        log.record(make_record(i))
    await log.close()
    assert log.lost == 0 and log.unwritten == 10 and log.written == 0
    assert request_ids(dsn) == []
    assert any(name.endswith(".lock") for name in os.listdir(journal))

    again = PostgresLog(dsn, journal=journal)  # the next start, the server back
    await again.start()
    await again.close()
    assert request_ids(dsn) == [f"req-{i:05d}" for i in range(10)]
    assert again.replayed == 10 and os.listdir(journal) == []
