"""The operator evaluation set of issue 15 (src/tokenward/content/eval_sets/) is well formed:
labels and categories, enough held-out items, at least 10 languages of in-purpose turns per
route, a split fixed by the hash, no item equal to a configured example, and nothing shared
with (or nearly the same as) the sets the scorer was tuned on (tests/data/content)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tokenward.content.evaluate import main
from tokenward.content.operator_eval import (
    EVAL_SETS_DIR,
    eval_split,
    item_id,
    load_operator_routes,
    threshold_at_fpr,
    threshold_at_recall,
)
from tokenward.content.operator_eval import _auc as auc

OLD = Path(__file__).resolve().parents[1] / "data" / "content"
IN_CATEGORIES = {"direct", "short", "follow-up", "pasted", "other-language"}
OFF_CATEGORIES = {
    "general",
    "other-language",
    "extraction",
    "encoded",
    "near-domain",
    "greeting-wrapped",
    "topic-change",
}
LANGS = {"en", "fr", "es", "de", "it", "pt", "nl", "tl", "zh", "ja", "ar", "hi", "pl", "tr"}


def _rows() -> list[dict]:
    spec = yaml.safe_load((EVAL_SETS_DIR / "routes.yaml").read_text(encoding="utf-8"))
    rows = []
    for cfg in spec.values():
        for line in (EVAL_SETS_DIR / cfg["file"]).read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            rows.append(json.loads(line))
    return rows


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


def test_items_are_labelled_and_the_split_is_the_hash() -> None:
    rows = _rows()
    assert len(rows) > 1200
    for r in rows:
        assert set(r) <= {"id", "route", "label", "category", "lang", "text", "context", "split"}
        assert r["label"] in ("in", "off")
        assert r["category"] in (IN_CATEGORIES if r["label"] == "in" else OFF_CATEGORIES), r
        assert r["lang"] in LANGS
        assert r["text"].strip() == r["text"] and r["text"]
        assert r["id"] == item_id(r)  # nothing was edited after the build
        assert r["split"] == eval_split(r)
        if r["category"] in ("follow-up", "topic-change"):
            assert [m["role"] for m in r["context"]] == ["user", "assistant"]
        else:
            assert "context" not in r
        if r["category"] == "other-language":
            assert r["lang"] != "en"
    assert len({r["id"] for r in rows}) == len(rows)
    # the split does not depend on the order or the file: the same content, the same split
    r = rows[0]
    assert eval_split(dict(reversed(list(r.items())))) == r["split"]


def test_every_route_has_enough_held_out_items_languages_and_categories() -> None:
    routes = load_operator_routes()
    assert len(routes) >= 4
    for route in routes:
        held = Counter(i.label for i in route.items if i.split == "heldout")
        assert held["in"] >= 120 and held["off"] >= 120, (route.name, held)
        share_dev = sum(1 for i in route.items if i.split == "dev") / len(route.items)
        assert 0.22 < share_dev < 0.38
        langs = {i.lang for i in route.items if i.label == "in" and i.lang != "en"}
        assert len(langs) >= 10, (route.name, langs)
        assert {i.category for i in route.items if i.label == "in"} == IN_CATEGORIES
        assert {i.category for i in route.items if i.label == "off"} == OFF_CATEGORIES
        # the operator's configuration: a description and 5 + 5 examples
        assert len(route.purpose.in_purpose) == 5 and len(route.purpose.out_of_purpose) == 5


def test_no_item_is_a_configured_example_or_an_old_set_item() -> None:
    routes = load_operator_routes()
    examples = {t for r in routes for t in (*r.purpose.in_purpose, *r.purpose.out_of_purpose)}
    old: list[str] = []
    for name in ("in_support.txt", "in_docs.txt", "off_written.txt"):
        old += [ln.strip() for ln in (OLD / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    old += [json.loads(ln)["text"] for ln in (OLD / "off_corpora.jsonl").read_text().split("\n") if ln.strip()]
    old_words = [w for w in (_words(t) for t in old) if len(w) >= 3]
    texts = {r["text"] for r in _rows()}
    assert not texts & examples
    assert not texts & set(old)
    near = []
    for text in texts:
        a = _words(text)
        if len(a) < 4:
            continue  # "lost card", "why": short turns may coincide
        for b in old_words:
            if len(a & b) / len(a | b) >= 0.6:
                near.append(text)
                break
    assert not near, near[:5]


def test_the_metrics_on_known_numbers() -> None:
    np = pytest.importorskip("numpy")
    fit_in = np.array([0.6, 0.7, 0.8, 0.9])
    fit_off = np.array([0.1, 0.2, 0.65, 0.3])
    assert auc(fit_in, fit_off) == pytest.approx(15 / 16)  # one off item beats one in item
    assert auc(np.array([0.5]), np.array([0.5])) == pytest.approx(0.5)
    t = threshold_at_fpr(np.linspace(0.4, 0.9, 200), 0.01)
    assert np.mean(np.linspace(0.4, 0.9, 200) < t) <= 0.01
    t90 = threshold_at_recall(np.linspace(0, 1, 10), 0.9)
    assert np.mean(np.linspace(0, 1, 10) < t90) >= 0.9


def test_operator_protocol_runs_lexical_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--set", "operator", "--lexical-only", "--route", "clinic", "--bootstrap", "50", "--json"]) == 0
    (rep,) = json.loads(capsys.readouterr().out)
    assert rep["route"] == "clinic" and rep["method"] == "lexical"
    assert rep["n_in"] >= 120 and rep["n_off"] >= 120
    for key in ("auc", "recall_at_1pct_fpr", "recall", "in_flagged"):
        lo, hi = rep["ci95"][key]
        assert lo <= rep["headline"][key] <= hi
    assert "in/other-language" in rep["by_category"] and "in/ja" in rep["by_language"]


def test_the_built_in_anchors_are_not_eval_items() -> None:
    """The scorer's built-in anchors (GENERIC_OFF, GENERIC_IN, written for tokenward) are
    neither items of the operator set nor nearly the same as one: tuning them on the set
    would make its figures meaningless."""
    from tokenward.content.purpose import GENERIC_IN, GENERIC_OFF

    anchors = [*GENERIC_IN, *(a for texts in GENERIC_OFF.values() for a in texts)]
    texts = [r["text"] for r in _rows()] + [m["content"] for r in _rows() for m in r.get("context") or ()]
    assert not set(anchors) & set(texts)
    item_words = [w for w in (_words(t) for t in texts) if len(w) >= 4]
    near = []
    for anchor in anchors:
        a = _words(anchor)
        if len(a) < 4:
            continue  # "Thanks!", "OK": small talk may coincide
        if any(len(a & b) / len(a | b) >= 0.5 for b in item_words):
            near.append(anchor)
    assert not near, near
