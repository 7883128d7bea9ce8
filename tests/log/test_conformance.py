"""What every decision log must do, on SQLite and on PostgreSQL alike.

Each test runs once per backend through the ``backend`` fixture: ``sqlite`` always,
``postgres`` against the server of conftest.py (skipped when it cannot be reached). Only
the public surface is used: ``open_log(uri)``, ``start()``, ``record()``, ``close()``,
and the readers the CLI uses (``recent(uri)`` for ``log tail``, ``runner(uri)`` with
``queries.spend_report`` for ``spend``). What only one backend has (SQLite's WAL and file
paths, PostgreSQL's reconnects, at-least-once delivery and ``close_timeout``, the journal
of killed processes) stays in test_postgres.py, tests/unit/test_log_sqlite.py,
test_journal.py and test_kill.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tokenward.errors import ConfigurationError
from tokenward.log import DecisionRecord, open_log, recent, runner
from tokenward.log.base import clean
from tokenward.log.journal import RECOVERED
from tokenward.log.queries import SpendReport, spend_report
from tokenward.log.sqlite import COLUMNS

from .records import make_record


@dataclass
class Backend:
    name: str
    base: str  # the log URI without tokenward's options
    tmp: Path
    default_journal: Path  # where the journal goes when the URI names none
    execute: Callable[[str], None]  # DDL on the log's database, to play an older version

    def uri(self, **options: Any) -> str:
        """The log URI; the journal goes to a directory of the test's own unless
        ``journal=None`` (the backend's default) is passed."""
        opts = {"journal": str(self.tmp / "journal"), **options}
        query = urlencode({k: v for k, v in opts.items() if v is not None})
        return f"{self.base}{'&' if '?' in self.base else '?'}{query}" if query else self.base

    def rows(self, limit: int = 100_000) -> list[dict[str, Any]]:
        """What ``tokenward log tail`` reads, oldest first."""
        return recent(self.uri(), limit)[::-1]

    def ids(self) -> list[str]:
        return [row["request_id"] for row in self.rows()]


def _sqlite(tmp_path: Path) -> Backend:
    db = tmp_path / "log.db"

    def execute(statement: str) -> None:
        with sqlite3.connect(db) as conn:
            conn.execute(statement)
        conn.close()

    return Backend("sqlite", f"sqlite:///{db}", tmp_path, Path(f"{db}.journal.d"), execute)


def _postgres(dsn: str, tmp_path: Path) -> Backend:
    import psycopg

    def execute(statement: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement)

    return Backend("postgres", dsn, tmp_path, tmp_path / "tokenward-journal.d", execute)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    # PostgreSQL's default journal is ./tokenward-journal.d: keep it in the test's directory.
    monkeypatch.chdir(tmp_path)
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    pytest.importorskip("psycopg")
    return _postgres(request.getfixturevalue("dsn"), tmp_path)


async def write(uri: str, records: list[DecisionRecord]) -> Any:
    log = open_log(uri)
    await log.start()
    for rec in records:
        log.record(rec)
    await log.close()
    return log


def expected(rec: DecisionRecord) -> dict[str, Any]:
    """The row a reader gets back for ``rec``: every column, in the table's order."""
    data = rec.to_dict()
    return {name: data[name] for name in COLUMNS}


# Every field of DecisionRecord set, none to its default; the JSON columns nested, with
# unicode, floats, null and an empty container inside.
FULL: dict[str, Any] = {
    "ts": 1_700_000_123.456789,
    "request_id": "req-full-ü",
    "method": "PATCH",
    "path": "/v1/ü/日本/🙂?x=1&y=%20",
    "route": "/v1/ü/*",
    "client_ip": "2001:db8::1",
    "action": "allow",
    "name": "proof/missing",
    "code": "proof_required",
    "shadow_action": "challenge",
    "reasons": ["proof/missing", "client/no-sdk", "ü 🙂"],
    "signals": [
        {"name": "proof/missing", "score": 1.5, "evidence": {"nested": {"a": [1, 2.25, None, "ü", True, {}]}}},
        {"name": "client/no-sdk", "score": 0.0, "evidence": []},
    ],
    "proof": {"difficulty": 8, "kid": "0a0b0c0d", "age_ms": 12.5, "big": 2**53 + 1},
    "status": 403,
    "decision_ms": 0.125,
    "total_ms": 40.5,
    "upstream_status": 502,
    "error": "upstream: timeout — ü",
    "risk": {"score": 3.75, "parts": {"ip": 1, "account": None}, "top": ["ip"]},
    "model": "gpt-ü",
    "tokens_in": 1234,
    "tokens_out": 56,
    "usage_exact": True,
    "cost_usd": 0.015625,
    "reserved_usd": 0.5,
    "held_usd": 0.25,
    "account": "acct-ü 1",
}

# None, 0 and empty are different values and stay different.
EMPTY_A: dict[str, Any] = {
    **FULL, "request_id": "req-empty-a", "route": None, "code": None, "shadow_action": None, "reasons": [],
    "signals": [], "proof": {}, "risk": None, "status": 0, "decision_ms": 0.0, "total_ms": 0.0,
    "upstream_status": 0, "error": "", "model": None, "tokens_in": 0, "tokens_out": None, "usage_exact": False,
    "cost_usd": 0.0, "reserved_usd": None, "held_usd": 0.0, "account": "",
}  # fmt: skip
EMPTY_B: dict[str, Any] = {
    **FULL, "request_id": "req-empty-b", "route": "", "code": "", "shadow_action": "", "proof": None,
    "risk": {}, "upstream_status": None, "error": None, "model": "", "tokens_in": None, "tokens_out": 0,
    "usage_exact": None, "cost_usd": None, "reserved_usd": 0.0, "held_usd": None, "account": None,
}  # fmt: skip


def test_the_samples_cover_every_field() -> None:
    # A field added to DecisionRecord must be added to FULL (and to the table) to be tested here.
    assert list(FULL) == [f.name for f in dataclasses.fields(DecisionRecord)] == list(COLUMNS)
    assert all(FULL[f.name] != f.default for f in dataclasses.fields(DecisionRecord))


async def test_every_field_round_trips(backend: Backend) -> None:
    records = [DecisionRecord(**FULL), DecisionRecord(**EMPTY_A), DecisionRecord(**EMPTY_B)]
    log = await write(backend.uri(), records)
    assert (log.written, log.lost) == (3, 0)
    rows = backend.rows()
    assert rows == [expected(r) for r in records]
    assert all(list(row) == list(COLUMNS) for row in rows)  # same keys, same order
    # None is neither 0 nor empty.
    assert [(row["proof"], row["risk"], row["tokens_in"], row["usage_exact"]) for row in rows[1:]] == [
        ({}, None, 0, False),
        (None, {}, None, None),
    ]
    assert rows[1]["error"] == "" and rows[2]["error"] is None and rows[1]["route"] is None


@pytest.mark.parametrize(
    "backend",
    ["sqlite", "postgres"],
    indirect=True,
)
async def test_values_read_back_with_their_types(backend: Backend) -> None:
    # What `log tail --json` prints: 1 is not true.
    records = [DecisionRecord(**FULL), DecisionRecord(**EMPTY_A)]
    await write(backend.uri(), records)
    for row, rec in zip(backend.rows(), records, strict=True):
        assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in expected(rec).items()}


async def test_values_that_are_not_json_are_stored_as_text(backend: Backend) -> None:
    await write(backend.uri(), [make_record(1, proof={"path": Path("/x")}, signals=[{"evidence": {1, 2} - {2}}])])
    (row,) = backend.rows()
    assert row["proof"] == {"path": "/x"}
    assert row["signals"] == [{"evidence": "{1}"}]


async def test_nul_characters_are_kept_or_replaced_never_lost(backend: Backend) -> None:
    # PostgreSQL's text and jsonb refuse NUL: that record is stored with it replaced
    # (docs/stores.md). SQLite stores it as it is.
    nul = make_record(2, error="nul\x00inside", path="/p\x00", signals=[{"evidence": "a\x00b"}])
    records = [make_record(1), nul, make_record(3)]
    log = await write(backend.uri(), records)
    assert log.lost == 0
    rows = backend.rows()
    want = [expected(r) for r in records]
    if backend.name == "postgres":
        want[1] = {k: clean(v) for k, v in want[1].items()}
        assert want[1]["error"] == "nul\ufffdinside"
    assert rows == want


@pytest.mark.parametrize(
    "backend",
    ["sqlite", "postgres"],
    indirect=True,
)
async def test_unpaired_surrogates_are_replaced_and_the_record_kept(backend: Backend) -> None:
    # No UTF-8 database can hold them: base.clean() replaces them, as the journal does.
    bad = make_record(2, path="/bad\udcff", error="e\ud800x", signals=[{"evidence": "s\udcffs"}])
    records = [make_record(1), bad, make_record(3)]
    log = await write(backend.uri(), records)
    assert (log.written, log.lost) == (3, 0)
    rows = backend.rows()
    assert [r["request_id"] for r in rows] == ["req-00001", "req-00002", "req-00003"]
    assert rows[1] == {k: clean(v) for k, v in expected(bad).items()}


@pytest.mark.parametrize("journal", [None, "off"])
async def test_close_writes_everything_in_order(backend: Backend, journal: str | None) -> None:
    # Small batches and a long flush interval: most of it is still queued when close() is called.
    n = 5_000
    log = await write(backend.uri(batch=64, flush_interval=5, journal=journal), [make_record(i) for i in range(n)])
    assert (log.written, log.lost) == (n, 0)
    assert backend.ids() == [f"req-{i:05d}" for i in range(n)]  # in order, each once


@pytest.mark.parametrize("journal", [None, "off"])
async def test_a_small_queue_applies_backpressure_without_losing_records(backend: Backend, journal: str | None) -> None:
    uri = backend.uri(batch=16, max_queue=32, journal_max=4096, journal=journal)
    log = await write(uri, [make_record(i) for i in range(1_000)])
    assert (log.written, log.lost) == (1_000, 0)
    assert backend.ids() == [f"req-{i:05d}" for i in range(1_000)]


@pytest.mark.parametrize("journal", [None, "off"])
async def test_records_from_many_tasks_and_threads_are_all_written(backend: Backend, journal: str | None) -> None:
    log = open_log(backend.uri(batch=64, flush_interval=0.01, journal=journal))
    await log.start()

    async def task(t: int) -> None:
        for i in range(100):
            log.record(make_record(i, request_id=f"task{t}-{i}"))
            if i % 10 == 0:
                await asyncio.sleep(0)

    def thread(t: int) -> None:
        for i in range(250):
            log.record(make_record(i, request_id=f"thread{t}-{i}"))

    threads = [threading.Thread(target=thread, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    await asyncio.gather(*(task(t) for t in range(40)))
    for th in threads:
        await asyncio.to_thread(th.join)
    await log.close()
    want = {f"task{t}-{i}" for t in range(40) for i in range(100)} | {
        f"thread{t}-{i}" for t in range(4) for i in range(250)
    }
    ids = backend.ids()
    assert len(ids) == len(want) == log.written and set(ids) == want


async def test_one_record_the_database_refuses_does_not_stop_the_writer(backend: Backend) -> None:
    log = await write(backend.uri(), [make_record(0, client_ip=None), make_record(1)])  # NOT NULL column
    assert (log.written, log.lost) == (1, 1)
    assert backend.ids() == ["req-00001"]
    log = await write(backend.uri(), [make_record(2)])  # and the log still works
    assert backend.ids() == ["req-00001", "req-00002"]


async def test_start_and_close_are_idempotent(backend: Backend) -> None:
    log = open_log(backend.uri())
    await log.start()
    await log.start()
    log.record(make_record(0))
    await log.close()
    await log.close()
    assert backend.ids() == ["req-00000"]


@pytest.mark.parametrize("journal", [None, "off"])
async def test_a_record_after_close_is_kept_for_the_next_start(backend: Backend, journal: str | None) -> None:
    # Never an exception (the request is answered); the record stays queued in memory and
    # the next start writes it. A log that is never started again does not write it.
    log = open_log(backend.uri(journal=journal))
    await log.start()
    log.record(make_record(0))
    await log.close()
    log.record(make_record(1))
    assert backend.ids() == ["req-00000"]
    await log.start()
    await log.close()
    assert backend.ids() == ["req-00000", "req-00001"]


@pytest.mark.parametrize("journal", ["default", "dir", "off"])
async def test_the_journal_option(backend: Backend, journal: str) -> None:
    """With a journal (the default directory, or ``journal=DIR``) a decision journaled
    just before its response started and never finished is written at close, marked
    recovered, and the journal is left empty; with ``journal=off`` there is no journal
    and no such record. Either way the finished request is written once, as it ended."""
    directory = {"default": backend.default_journal, "dir": backend.tmp / "journal", "off": None}[journal]
    log = open_log(backend.uri(journal={"default": None, "dir": str(directory), "off": "off"}[journal]))
    assert log.journaled is (directory is not None)
    await log.start()
    log.record(make_record(0))
    with log.ahead():
        log.record(make_record(1, status=0, total_ms=1.0))
    finished = make_record(1, status=200, total_ms=99.0, tokens_in=5)
    log.record(finished)
    with log.ahead():
        log.record(make_record(2, status=200))  # its response started; it never ended
    if directory is not None:
        assert any(p.name.endswith(".lock") for p in directory.iterdir())
    await log.close()
    rows = backend.rows()
    if directory is not None:
        assert [r["request_id"] for r in rows] == ["req-00000", "req-00001", "req-00002"]
        assert rows[2] == expected(make_record(2, status=200, error=RECOVERED))
        assert list(directory.iterdir()) == []  # a clean close leaves no journal
    else:
        assert [r["request_id"] for r in rows] == ["req-00000", "req-00001"]
    assert rows[1] == expected(finished)
    for other in {backend.default_journal, backend.tmp / "journal"} - {directory}:
        assert not other.exists()


async def test_batching_options_are_taken_from_the_uri(backend: Backend) -> None:
    log = open_log(backend.uri(batch=7, flush_interval=0.5, max_queue=99, journal_max=4096, journal="off"))
    assert (log._batch, log._interval, log._max_queue, log.journaled) == (7, 0.5, 99, False)
    assert open_log(backend.uri(journal_max=4096))._journal.max_bytes == 4096
    await write(backend.uri(batch=1, flush_interval=0.01), [make_record(i) for i in range(3)])
    assert backend.ids() == ["req-00000", "req-00001", "req-00002"]


@pytest.mark.parametrize(
    "option",
    [
        "batch=many", "batch=0", "batch=-1", "batch=1.5", "flush_interval=0", "flush_interval=soon",
        "flush_interval=-0.1", "max_queue=0", "max_queue=lots", "journal_max=0", "journal_max=lots", "journal=",
        "bogus=1",
    ],
)  # fmt: skip
def test_bad_options_are_clear_errors(backend: Backend, option: str) -> None:
    # A ConfigurationError (also a ValueError) that names the option, before anything starts.
    name = option.partition("=")[0]
    with pytest.raises(ConfigurationError, match=name):
        open_log(f"{backend.base}{'&' if '?' in backend.base else '?'}{option}")


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_flush_interval_that_is_not_finite_is_refused(backend: Backend, value: str) -> None:
    with pytest.raises(ConfigurationError, match="flush_interval"):
        open_log(backend.uri(flush_interval=value))


async def test_recent_is_newest_first_and_limited(backend: Backend) -> None:
    await write(backend.uri(), [make_record(i) for i in range(30)])
    rows = recent(backend.uri(), 5)
    assert [r["request_id"] for r in rows] == [f"req-{i:05d}" for i in (29, 28, 27, 26, 25)]
    assert rows[0] == expected(make_record(29))
    assert recent(backend.uri(), 1) == rows[:1]


async def test_a_log_never_written_reads_as_not_found(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError):
        recent(backend.uri(), 5)
    with pytest.raises(FileNotFoundError):
        spend_report(runner(backend.uri()), 0.0)


# Spend as `tokenward spend` reports it: calls with a cost, refusals, degraded calls.
SPEND = [
    make_record(0, ts=10.0, cost_usd=100.0, model="old"),  # before `since`
    make_record(1, route="/a", model="m1", cost_usd=0.5, tokens_in=10, tokens_out=20, usage_exact=True),
    make_record(2, route=None, path="/b", cost_usd=0.25, tokens_in=5, usage_exact=False),
    make_record(3, route="/a", action="degrade", model="m2", cost_usd=0.125, tokens_out=4, usage_exact=True),
    make_record(4, name="budget/over", action="block", status=429, upstream_status=None, reserved_usd=1.0),
    make_record(5, name="budget/over", action="block", status=429, upstream_status=None, reserved_usd=0.5),
    make_record(6, name="proof/missing", action="challenge", status=401, upstream_status=None),
]


@pytest.mark.parametrize(
    "backend",
    ["sqlite", "postgres"],
    indirect=True,
)
async def test_spend_report_over_the_log(backend: Backend) -> None:
    await write(backend.uri(), SPEND)
    run = runner(backend.uri())
    by_route = spend_report(run, 1_000.0, "route")
    assert by_route == SpendReport(
        since=1_000.0,
        spent=0.875,
        calls=3,
        estimated_calls=1,
        by=[("/a", 2, 0.625, 10, 24), ("/b", 1, 0.25, 5, 0)],
        refused=[("budget/over", 2, 1.5), ("proof/missing", 1, 0.0)],
        degraded=(1, 0.125),
    )
    assert spend_report(run, 1_000.0, "model").by == [
        ("m1", 1, 0.5, 10, 20),
        ("-", 1, 0.25, 5, 0),
        ("m2", 1, 0.125, 0, 4),
    ]


@pytest.mark.parametrize(
    "backend",
    ["sqlite", "postgres"],
    indirect=True,
)
async def test_a_log_from_an_older_version_gains_the_new_columns(backend: Backend) -> None:
    await write(backend.uri(), [make_record(0)])
    for column in ("tokens_in", "cost_usd", "risk"):  # as written by a version without them
        backend.execute(f"ALTER TABLE decisions DROP COLUMN {column}")
    full = DecisionRecord(**FULL)
    await write(backend.uri(), [full])
    rows = backend.rows()
    assert [r["request_id"] for r in rows] == ["req-00000", "req-full-ü"]
    assert rows[1] == expected(full)
    assert rows[0]["tokens_in"] is None and rows[0]["risk"] is None


async def test_sqlite_and_postgres_read_back_the_same_rows(tmp_path: Path, dsn: str) -> None:
    lite, pg = _sqlite(tmp_path / "lite"), _postgres(dsn, tmp_path / "pg")
    records = [DecisionRecord(**FULL), DecisionRecord(**EMPTY_A), DecisionRecord(**EMPTY_B), *SPEND]
    for b in (lite, pg):
        await write(b.uri(), records)
    assert lite.rows() == pg.rows() == [expected(r) for r in records]
