"""SQLite decision log: WAL, batched writer thread, nothing lost on close."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tokenward.log import DecisionRecord, SQLiteLog, open_log, read_recent
from tokenward.log.sqlite import sqlite_path


def make_record(i: int, **overrides: Any) -> DecisionRecord:
    fields: dict[str, Any] = {
        "ts": 1_700_000_000.0 + i,
        "request_id": f"req-{i:05d}",
        "method": "POST",
        "path": "/v1/chat/completions",
        "route": "/v1/chat/completions",
        "client_ip": "203.0.113.7",
        "action": "allow",
        "name": "proof/ok",
        "reasons": ["proof/ok"],
        "signals": [{"name": "proof/ok", "score": 0.0, "evidence": {"difficulty": 8, "i": i}}],
        "proof": {"difficulty": 8, "kid": "0a0b0c0d", "age_ms": 12.5},
        "status": 200,
        "decision_ms": 0.25,
        "total_ms": 40.5,
        "upstream_status": 200,
    }
    fields.update(overrides)
    return DecisionRecord(**fields)


def count_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])


async def test_every_record_is_written_by_close(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = SQLiteLog(db)
    await log.start()
    for i in range(10_000):
        log.record(make_record(i))
    await log.close()
    assert log.written == 10_000
    assert count_rows(db) == 10_000
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT request_id FROM decisions ORDER BY id")]
    assert ids == [f"req-{i:05d}" for i in range(10_000)]  # in order, no duplicates


async def test_small_queue_applies_backpressure_without_losing_records(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = SQLiteLog(db, batch=16, max_queue=32)
    await log.start()
    for i in range(2_000):
        log.record(make_record(i))
    await log.close()
    assert count_rows(db) == 2_000


async def test_read_recent_round_trips_every_column(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = SQLiteLog(db)
    await log.start()
    plain = make_record(1)
    shadow = make_record(
        2,
        action="allow",
        name="proof/missing",
        code="proof_required",
        shadow_action="challenge",
        reasons=["proof/missing", "client/no-sdk"],
        signals=[{"name": "proof/missing", "score": 1.5, "evidence": {"nested": {"a": [1, 2]}}}],
        proof=None,
        status=200,
        upstream_status=None,
        error="client disconnected",
        route=None,
    )
    log.record(plain)
    log.record(shadow)
    await log.close()
    newest, older = list(read_recent(db, 10))
    assert newest == shadow.to_dict()
    assert older == plain.to_dict()


async def test_read_recent_is_newest_first_and_limited(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = SQLiteLog(db)
    await log.start()
    for i in range(30):
        log.record(make_record(i))
    await log.close()
    rows = list(read_recent(db, 5))
    assert [r["request_id"] for r in rows] == [f"req-{i:05d}" for i in (29, 28, 27, 26, 25)]


async def test_non_json_evidence_is_stored_as_text(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = SQLiteLog(db)
    await log.start()
    log.record(make_record(1, proof={"path": Path("/x")}, signals=[{"evidence": {1, 2} - {2}}]))
    await log.close()
    (row,) = read_recent(db, 1)
    assert row["proof"] == {"path": "/x"}
    assert row["signals"] == [{"evidence": "{1}"}]


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = SQLiteLog(db)
    await log.start()
    log.record(make_record(0))
    await log.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_start_creates_missing_directories(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "log.db"
    log = SQLiteLog(db)
    await log.start()
    log.record(make_record(0))
    await log.close()
    assert count_rows(db) == 1


async def test_start_and_close_are_idempotent(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db")
    await log.start()
    await log.start()
    log.record(make_record(0))
    await log.close()
    await log.close()
    assert count_rows(tmp_path / "log.db") == 1


async def test_start_fails_clearly_when_the_file_cannot_be_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    log = SQLiteLog(blocker / "log.db")
    with pytest.raises(RuntimeError, match="cannot open decision log"):
        await log.start()


async def test_one_unwritable_record_does_not_stop_the_writer(tmp_path: Path) -> None:
    """The log "slows the gateway down rather than lose a decision": a record the
    database refuses must not kill the writer thread (after which every later record is
    lost and, once the queue is full, ``record`` blocks the event loop forever)."""
    db = tmp_path / "log.db"
    log = SQLiteLog(db)
    await log.start()
    log.record(make_record(0, client_ip=None))  # NOT NULL column: sqlite3.IntegrityError
    log.record(make_record(1))
    await log.close()
    assert [r["request_id"] for r in read_recent(db, 10)] == ["req-00001"]


def test_read_recent_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no decision log"):
        list(read_recent(tmp_path / "absent.db"))
    assert not (tmp_path / "absent.db").exists()  # reading never creates the file


@pytest.mark.parametrize("dirname", ["with space", "hash#dir", "query?dir", "pct%41dir"])
async def test_read_recent_accepts_any_file_name(tmp_path: Path, dirname: str) -> None:
    db = tmp_path / dirname / "log.db"
    log = SQLiteLog(db)
    await log.start()
    log.record(make_record(7))
    await log.close()
    assert [r["request_id"] for r in read_recent(db, 1)] == ["req-00007"]


def test_open_log_sqlite(tmp_path: Path) -> None:
    log = open_log(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(log, SQLiteLog)
    assert log.path == tmp_path / "x.db"
    relative = open_log("sqlite:///x.db")
    assert isinstance(relative, SQLiteLog)
    assert relative.path == Path("x.db")


@pytest.mark.parametrize(
    "uri", ["x.db", "file:///x.db", "sqlite://x.db", "sqlite:x.db", ""]
)
def test_open_log_refuses_other_uris(uri: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_log(uri)


def test_sqlite_path_forms() -> None:
    assert sqlite_path("sqlite:///rel/x.db") == Path("rel/x.db")
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
