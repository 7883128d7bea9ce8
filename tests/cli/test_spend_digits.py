"""Issue 14: ``spend`` printed ``$0.0000`` for 8 calls of $0.000006 each. Amounts keep
three significant digits (and four decimals at least, as before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli.helpers import record, run, write_log

from tokenward.cli_output import usd


def test_spend_shows_small_amounts_with_significant_digits(tmp_path: Path) -> None:
    db = tmp_path / "decisions.db"
    served = {"action": "allow", "name": "proof/ok", "code": None, "status": 200, "reasons": ["proof/ok"]}
    write_log(
        db,
        [
            record(i, **served, model="tiny", tokens_in=3, tokens_out=1, usage_exact=True, cost_usd=0.000006,
                   upstream_status=200)
            for i in range(8)
        ]
        + [record(8, action="throttle", name="budget/day", code="budget_exhausted", status=429,
                  reserved_usd=0.0000125)],
    )  # fmt: skip
    result = run("spend", "--db", db, "--since", "100000d", "--by", "model")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("$0.000048 upstream spend over 8 calls"), lines[0]
    assert next(line for line in lines if line.startswith("tiny")).split() == ["tiny", "8", "0.000048", "24", "8"]
    assert next(line for line in lines if line.startswith("budget/day")).split() == ["budget/day", "1", "0.0000125"]
    assert "0.0000 " not in result.stdout and "$0.0000\n" not in result.stdout
    doc = json.loads(run("spend", "--db", db, "--since", "100000d", "--json").stdout)
    assert doc["usd"] == pytest.approx(0.000048)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"), (0.000048, "0.000048"), (4.7999999999999996e-05, "0.000048"), (0.00123456, "0.00123"),
        (0.0125, "0.0125"), (0.5, "0.5000"), (12.34, "12.3400"), (1234567.891, "1,234,567.8910"),
        (0.000000123, "0.000000123"),
    ],
)  # fmt: skip
def test_usd_keeps_three_significant_digits(value: float, text: str) -> None:
    assert usd(value) == text
