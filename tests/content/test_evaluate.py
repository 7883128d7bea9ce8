"""The evaluation command: a fast lexical-only run by default; the full semantic run
(tens of seconds) with TOKENWARD_CONTENT_EVAL=1."""

from __future__ import annotations

import json
import os

import pytest

from tokenward.content.evaluate import load_routes, main, split_of


def test_splits_are_disjoint_and_examples_come_from_tuning(capsys: pytest.CaptureFixture[str]) -> None:
    routes = load_routes(__import__("tokenward.content.evaluate", fromlist=["x"]).default_data_dir())
    assert {r.name for r in routes} == {"support-bot", "docs"}
    for route in routes:
        held = {i.text for i in route.items if i.split == "heldout"}
        assert held and not held & (set(route.purpose.in_purpose) | set(route.purpose.out_of_purpose))
        assert {i.split for i in route.items} == {"tune", "heldout"}
        share = sum(1 for i in route.items if i.split == "heldout") / len(route.items)
        assert 0.4 < share < 0.6
    assert split_of("x") == split_of("x")


def test_lexical_only_evaluation_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lexical-only", "--route", "support-bot", "--json"]) == 0
    (rep,) = json.loads(capsys.readouterr().out)
    rows = rep["rows"]
    assert "combined, lexical only" in rows and "off-purpose (lexical)" in rows
    for m in rows.values():
        assert set(m) >= {"precision", "recall", "fpr", "tp", "fp"}
    assert rep["latency"]["lexical_ms"]["p50"] < 20


@pytest.mark.skipif(os.environ.get("TOKENWARD_CONTENT_EVAL") != "1", reason="set TOKENWARD_CONTENT_EVAL=1")
def test_full_semantic_evaluation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "acceptance (support-bot, semantic)" in out
