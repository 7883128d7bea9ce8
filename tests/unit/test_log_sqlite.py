"""SQLite decision log: what only it does (WAL, file paths, sqlite:/// URIs). What every
decision log does is in tests/log/test_conformance.py, which runs on SQLite too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.log.records import make_record

from tokenward.log import SQLiteLog, open_log, read_recent
from tokenward.log.sqlite import sqlite_path


def count_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])


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


async def test_start_fails_clearly_when_the_file_cannot_be_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    log = SQLiteLog(blocker / "log.db")
    with pytest.raises(RuntimeError, match="cannot open decision log"):
        await log.start()


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


@pytest.mark.parametrize("uri", ["x.db", "file:///x.db", "sqlite://x.db", "sqlite:x.db", ""])
def test_open_log_refuses_other_uris(uri: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_log(uri)


def test_sqlite_path_forms() -> None:
    assert sqlite_path("sqlite:///rel/x.db") == Path("rel/x.db")
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
