"""The CLI: the main paths as a user runs them (``python -m tokenward.cli`` in a
subprocess), the many variations in-process through typer's CliRunner (fast)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tokenward import cli
from tokenward.log import DecisionRecord, SQLiteLog
from tokenward.policy import PolicyError, load_policy
from tokenward.proof import KeyRing

POLICIES = Path(__file__).resolve().parent.parent / "policies"
BAD = sorted((POLICIES / "bad").glob("*.yaml"))
UNSET_VAR = "TOKENWARD_TEST_SURELY_UNSET_VAR"


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    env["TOKENWARD_TEST_UPSTREAM_KEY"] = "sk-test"
    env.pop(UNSET_VAR, None)
    return subprocess.run(
        [sys.executable, "-m", "tokenward.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def invoke(*args: str | Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """In-process run; rich's consoles get a wide line so nothing is wrapped."""
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    monkeypatch.delenv(UNSET_VAR, raising=False)
    monkeypatch.setenv("TOKENWARD_TEST_UPSTREAM_KEY", "sk-test")
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def write_log(db: Path, records: list[DecisionRecord]) -> None:
    async def main() -> None:
        log = SQLiteLog(db)
        await log.start()
        for rec in records:
            log.record(rec)
        await log.close()

    asyncio.run(main())


def record(i: int, **overrides: object) -> DecisionRecord:
    fields: dict[str, object] = {
        "ts": 1_700_000_000.0 + i,
        "request_id": f"id{i:04d}abcdefgh",
        "method": "POST",
        "path": "/v1/chat/completions",
        "route": "/v1/chat/completions",
        "client_ip": f"198.51.100.{i % 250}",
        "action": "challenge",
        "name": "proof/missing",
        "code": "proof_required",
        "reasons": ["proof/missing"],
        "status": 401,
        "decision_ms": 0.5,
    }
    fields.update(overrides)
    return DecisionRecord(**fields)  # type: ignore[arg-type]


# -- check-policy ---------------------------------------------------------------------------


def test_check_policy_on_a_good_file_lists_the_routes() -> None:
    result = run_cli("check-policy", POLICIES / "good" / "custom_routes.yaml")
    assert result.returncode == 0, result.stderr
    for path in ("/api/chat", "/api/assistant/*", "/api/assistant/health", "/static/*"):
        assert path in result.stdout
    assert "valid" in result.stdout
    assert "refused" in result.stdout  # other_routes: refuse


def test_check_policy_on_the_full_file_shows_settings_but_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # check-policy reads the key file the policy names: give it one (0600, as keygen --out writes).
    keys = tmp_path / "keys"
    assert invoke("keygen", "--out", keys, monkeypatch=monkeypatch).exit_code == 0
    full = tmp_path / "full.yaml"
    full.write_text((POLICIES / "good" / "full.yaml").read_text().replace("/etc/tokenward/keys", str(keys)))
    result = invoke("check-policy", full, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.stderr
    assert "https://llm.example.com" in result.stdout
    assert "10.0.0.0/8" in result.stdout
    assert "shadow" in result.stdout
    assert "sk-test" not in result.stdout + result.stderr


def test_check_policy_on_a_bad_file_prints_every_problem_with_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mode: audit\n"
        "proof: {difficulty: 99}\n"
        "routes:\n"
        "  - {path: /ok, api: openai}\n"
        "  - {path: no-slash, api: gemini}\n"
    )
    result = run_cli("check-policy", bad)
    assert result.returncode == 2
    assert "4 problem(s)" in result.stderr
    for where in ("mode", "proof.difficulty", "routes[1].path", "routes[1].api"):
        assert re.search(rf"^\s*- {re.escape(where)}: ", result.stderr, re.M), where
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_check_policy_on_each_golden_bad_file_exits_2(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET_VAR, raising=False)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    result = invoke("check-policy", path, monkeypatch=monkeypatch)
    assert result.exit_code == 2, f"{result.exception!r}\n{result.stderr[-2000:]}"
    # The printed problem is the library's, word for word (no markup eaten).
    printed = " ".join(result.stderr.split())
    assert " ".join(str(info.value.problems[0]).split()) in printed


def test_check_policy_on_a_missing_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("check-policy", tmp_path / "absent.yaml", monkeypatch=monkeypatch)
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


# -- keygen -------------------------------------------------------------------------------------


def test_keygen_prints_a_usable_key() -> None:
    result = run_cli("keygen")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert result.stdout == key + "\n"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key), key
    ring = KeyRing.from_strings([key])
    assert len(ring.signing.secret) == 32


def test_keygen_prints_a_new_key_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {invoke("keygen", monkeypatch=monkeypatch).stdout for _ in range(5)}
    assert len(keys) == 5


# -- log tail -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("cli-log") / "decisions.db"
    records = [record(i) for i in range(12)]
    records.append(
        record(
            12,
            action="allow",
            name="proof/ok",
            code=None,
            reasons=["proof/ok"],
            status=200,
            proof={"difficulty": 8},
        )
    )
    records.append(record(13, action="allow", shadow_action="challenge", status=200))
    write_log(db, records)
    return db


def test_log_tail_shows_the_newest_rows(log_db: Path) -> None:
    result = run_cli("log", "tail", "--db", log_db, "-n", "5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "last 5 decisions" in out
    for i in (13, 12, 11, 10, 9):
        assert f"id{i:04d}abcd" in out  # the table shows 10 characters of the id
    assert "id0008abcd" not in out
    assert "proof/ok" in out and "proof/missing" in out
    assert "shadow: challenge" in out


def test_log_tail_json_prints_one_object_per_line(log_db: Path) -> None:
    result = run_cli("log", "tail", "--db", log_db, "-n", "5", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["request_id"] for r in rows] == [f"id{i:04d}abcdefgh" for i in range(13, 8, -1)]
    assert rows[1]["proof"] == {"difficulty": 8}
    assert rows[1]["reasons"] == ["proof/ok"]
    assert rows[0]["shadow_action"] == "challenge"
    assert rows[0]["proof"] is None


def test_log_tail_of_a_missing_db_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("log", "tail", "--db", tmp_path / "absent.db", monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert "no decision log" in result.stderr


def test_log_tail_reads_the_policy_log_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_log(tmp_path / "from-policy.db", [record(1)])
    policy = tmp_path / "p.yaml"
    policy.write_text("log: sqlite:///from-policy.db\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("log", "tail", "--policy", policy, "--json", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["request_id"] == "id0001abcdefgh"


def test_log_tail_shows_request_paths_literally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths come from the network: they are data, not rich markup.
    db = tmp_path / "hostile.db"
    write_log(db, [record(1, path="/v1/[/x]", route=None), record(2, path="/v1/[bold]y", route=None)])
    result = invoke("log", "tail", "--db", db, monkeypatch=monkeypatch)
    assert result.exit_code == 0, repr(result.exception)
    assert "/v1/[/x]" in result.stdout
    assert "/v1/[bold]y" in result.stdout
