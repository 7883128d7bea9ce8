"""Issue 14: tables broke when piped or at 80 columns (``log tail`` wrapped routes
mid-word). Piped, every row is one line, whatever COLUMNS says; on an 80-column terminal
no route, id, rule or reason is split, and every line fits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.cli.helpers import environment, record, run, run_tty, write_log

LONG = "/v1/organizations/acme-corporation/deployments/chat-completions"  # 63 characters
REASONS = ["proof/missing", "client/headless-browser", "content/off-purpose", "network/datacenter"]


@pytest.fixture(scope="module")
def log_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("tables") / "decisions.db"
    records = [record(i, path=LONG, route=LONG, reasons=REASONS) for i in range(6)]
    records.append(record(6, path="/v1/[bold]y", route=None))  # data from the network, not markup
    shadow = {"action": "allow", "shadow_action": "challenge", "status": 200, "client_ip": "2001:db8:ffff::1"}
    records.append(record(7, route=LONG, path=LONG, **shadow))
    write_log(db, records)
    return db


def rows_of(out: str, n: int) -> list[str]:
    lines = out.splitlines()
    assert lines[0] == f"last {n} decisions in {lines[0].split(' in ', 1)[1]}"
    assert lines[1].split() == ["time", "request", "client", "route", "action", "rule", "status", "reasons", "ms"]
    return lines[2:]


@pytest.mark.parametrize("columns", [None, "80", "40"])
def test_piped_log_tail_prints_each_decision_on_one_line(log_db: Path, columns: str | None) -> None:
    env = environment(**({"COLUMNS": columns} if columns else {}))
    result = run("log", "tail", "--db", log_db, "-n", "8", env=env)
    assert result.returncode == 0, result.stderr
    rows = rows_of(result.stdout, 8)
    assert len(rows) == 8, result.stdout  # nothing wrapped onto a line of its own
    assert rows[0].startswith(tuple("0123456789")) and "id0007abcd" in rows[0]
    assert f" {LONG} " in rows[0] and "allow (shadow: challenge)" in rows[0] and "2001:db8:ffff::1" in rows[0]
    assert "/v1/[bold]y" in rows[1]
    for row in rows[2:]:
        assert f" {LONG} " in row and ", ".join(REASONS) in row
    # Aligned: the route column starts at the same place on every row.
    starts = {row.index("/v1/") for row in rows}
    assert len(starts) == 1, starts


def test_log_tail_on_an_80_column_terminal_splits_no_word(log_db: Path) -> None:
    code, out = run_tty("log", "tail", "--db", log_db, "-n", "8", columns=80)
    assert code == 0, out
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    words = [LONG, *REASONS, "2001:db8:ffff::1", "/v1/[bold]y", "proof/missing", "(shadow: challenge)"]
    words += [f"id{i:04d}abcd" for i in range(8)]
    text = "\n".join(lines)
    for word in words:
        assert word in text, word
    # No line holds a piece of the route without all of it (a split word).
    for line in lines:
        if "acme-corporation" in line or "chat-completions" in line or "/deployments" in line:
            assert LONG in line, line
    # Each decision still shows its route, rule, status and reasons.
    assert text.count(LONG) == 7
    assert len(re.findall(r"\bstatus: 401\b", text)) == 7


def test_log_tail_on_a_wide_terminal_is_a_table_with_one_line_per_decision(log_db: Path) -> None:
    code, out = run_tty("log", "tail", "--db", log_db, "-n", "8", columns=250)
    assert code == 0, out
    rows = rows_of(out, 8)
    assert len(rows) == 8 and all(f" {LONG} " in r for r in rows if "[bold]" not in r)


def test_piped_spend_and_check_policy_tables_keep_rows_whole(tmp_path: Path) -> None:
    db = tmp_path / "spend.db"
    served = dict(action="allow", name="proof/ok", code=None, status=200, reasons=["proof/ok"], upstream_status=200)
    write_log(
        db,
        [record(i, route=LONG, path=LONG, model="gpt-4o-mini-2024-07-18", cost_usd=0.25, **served) for i in range(3)],
    )
    result = run("spend", "--db", db, "--since", "100000d", env=environment(COLUMNS="60"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("$0.7500 upstream spend over 3 calls in the last 100000d (3 with usage")
    row = next(line for line in lines if line.startswith(LONG))
    assert row.split() == [LONG, "3", "0.7500", "0", "0"]

    policy = tmp_path / "p.yaml"
    policy.write_text(f"routes:\n  - {{path: '{LONG}', api: openai}}\n  - {{path: /static/*, protect: false}}\n")
    result = run("check-policy", policy, env=environment(COLUMNS="60"))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith(LONG))
    assert row.split()[:3] == [LONG, "openai", "yes"]


def test_piped_keys_list_keeps_each_key_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    env = environment(COLUMNS="60")
    for client in ("backend-batch-summarizer", "partner-acme"):
        made = run("keys", "create", client, "-r", LONG, "-r", "/v1/embeddings", "--keys-file", path, env=env)
        assert made.returncode == 0, made.stderr
    result = run("keys", "list", "--keys-file", path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"keys in {path}"
    assert lines[1].split() == ["keyid", "client", "state", "created", "until", "routes"]
    assert len(lines) == 4, result.stdout
    for line, client in zip(lines[2:], ("backend-batch-summarizer", "partner-acme"), strict=True):
        assert f" {client} " in line and " active " in line and line.endswith(f"{LONG}, /v1/embeddings")
