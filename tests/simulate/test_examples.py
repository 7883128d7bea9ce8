"""The example policies' committed incident reports (examples/README.md): each is the
report of an ``incident`` run of that very policy, its goals are judged as the report
says, and the README's table quotes the support bot's figures as the report has them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenward.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("support-bot", "docs-assistant", "playground")


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_has_the_report_of_its_own_incident_run(name: str) -> None:
    folder = ROOT / "examples" / name
    load_policy(folder / "policy.yaml")  # the policy the report was made with still loads
    report = json.loads((folder / "incident" / "report.json").read_text())
    run = report["run"]
    assert run["profile"] == "incident" and run["policy"] == f"examples/{name}/policy.yaml"
    assert f"--seed {run['seed']}" in (folder / "policy.yaml").read_text()  # the command it documents
    assert (folder / "incident" / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    md = (folder / "incident" / "report.md").read_text()
    goals = {g["goal"]: g for g in report["goals"]}
    assert set(goals) == {
        "attack success rate", "legit false-refusal rate", "legit p50 added latency",
        "upstream spend during the spike / pre-spike baseline",
    }  # fmt: skip
    for g in goals.values():
        assert g["status"] == ("met" if g["value"] <= g["limit"] else "missed"), g
        assert f"| {g['goal']} |" in md and f"| {g['status'].upper()} |" in md
    attack, legit = report["attack"], report["legit"]
    assert goals["attack success rate"]["value"] == pytest.approx(attack["reached_upstream"] / attack["sent"])
    assert goals["legit false-refusal rate"]["value"] == pytest.approx(legit["refused"] / legit["calls"])


def test_the_readme_quotes_the_support_bot_report() -> None:
    report = json.loads((ROOT / "examples" / "support-bot" / "incident" / "report.json").read_text())
    lines = (ROOT / "examples" / "README.md").read_text().splitlines()
    row = next(ln for ln in lines if ln.startswith("| support-bot |"))
    a, lg = report["attack"], report["legit"]
    assert f"{100 * a['success_rate']:.2f}%" in row and f"of {a['sent']:,})" in row
    assert f"{100 * lg['false_refusal_rate']:.2f}%" in row and f"({lg['refused']} of {lg['calls']:,})" in row
    assert f"{lg['added_ms_p50']:.0f} ms" in row
