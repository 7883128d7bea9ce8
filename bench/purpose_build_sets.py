"""Build the operator evaluation set of issue 15 (src/tokenward/content/eval_sets/).

    .venv/bin/python bench/purpose_build_sets.py        # rewrites the JSONL files and routes.yaml

The texts are in bench/purpose_sets_*.py, written for tokenward for this set and never
used to tune the scorer. This script only lays them out: one JSONL file per route, each
line one labelled turn (``route``, ``label`` in/off, ``category``, ``lang``, ``text``,
optional ``context`` of earlier turns, ``split`` dev/heldout), plus ``routes.yaml`` with
what an operator would configure (description, 5 in-purpose and 5 off-purpose examples,
the built-in categories kept). Encoded items are encoded here (base64, hex, rot13).

The split is fixed by a hash (:func:`tokenward.content.operator_eval.eval_split`): about 30%
``dev`` (for tuning) and 70% ``heldout`` (for the figures).
"""

from __future__ import annotations

import base64
import codecs
import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import purpose_sets_analytics
import purpose_sets_card
import purpose_sets_clinic
import purpose_sets_shared as shared
import purpose_sets_tutor
from tokenward.content.operator_eval import EVAL_SETS_DIR, eval_split, item_id

MODULES = (purpose_sets_card, purpose_sets_clinic, purpose_sets_tutor, purpose_sets_analytics)
Turn = tuple[tuple[str, str], str]


def _encode(task: str, i: int, offset: int) -> str:
    kinds = ("base64", "hex", "rot13")
    kind = kinds[(i + offset) % 3]
    if kind == "base64":
        payload = base64.b64encode(task.encode()).decode()
    elif kind == "hex":
        payload = task.encode().hex()
    else:
        payload = codecs.encode(task, "rot13")
    wrappers = shared.ENCODE_WRAPPERS[kind]
    return wrappers[(i // 3 + offset) % len(wrappers)].format(payload)


def _context(prior: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": prior[0]}, {"role": "assistant", "content": prior[1]}]


def build_route(mod: Any, offset: int) -> list[dict[str, Any]]:
    route = mod.ROUTE["name"]
    rows: list[dict[str, Any]] = []

    def add(label: str, category: str, lang: str, text: str, context: list[dict[str, str]] | None = None) -> None:
        row: dict[str, Any] = {"route": route, "label": label, "category": category, "lang": lang, "text": text}
        if context:
            row["context"] = context
        row["id"] = item_id(row)
        row["split"] = eval_split(row)
        rows.append(row)

    for text in mod.DIRECT:
        add("in", "direct", "en", text)
    for text in mod.SHORT:
        add("in", "short", "en", text)
    follow: tuple[Turn, ...] = mod.FOLLOW_UPS
    for prior, text in follow:
        add("in", "follow-up", "en", text, _context(prior))
    for text in mod.PASTED:
        add("in", "pasted", "en", text)
    for lang, text in mod.OTHER_LANG:
        add("in", "other-language", lang, text)

    for text in shared.GENERAL_EN:
        add("off", "general", "en", text)
    for lang, text in shared.GENERAL_OTHER:
        add("off", "other-language", lang, text)
    for text in shared.EXTRACTION:
        add("off", "extraction", "en", text)
    for i, task in enumerate(shared.ENCODE_TASKS):
        add("off", "encoded", "en", _encode(task, i, offset))
    for text in mod.NEAR_DOMAIN:
        add("off", "near-domain", "en", text)
    openings = mod.OPENINGS
    for i in range(25):
        task = shared.WRAP_TASKS[(i + offset * 7) % len(shared.WRAP_TASKS)]
        add("off", "greeting-wrapped", "en", f"{openings[i % len(openings)]} {task}")
    changes: tuple[Turn, ...] = mod.TOPIC_CHANGES
    for prior, text in changes:
        add("off", "topic-change", "en", text, _context(prior))
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        raise SystemExit(f"{route}: duplicate items")
    return rows


def main() -> int:
    EVAL_SETS_DIR.mkdir(parents=True, exist_ok=True)
    routes: dict[str, Any] = {}
    for offset, mod in enumerate(MODULES):
        cfg = mod.ROUTE
        rows = build_route(mod, offset)
        path = EVAL_SETS_DIR / f"{cfg['name']}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        purpose: dict[str, Any] = {
            "description": cfg["description"],
            "in_purpose": list(cfg["in_examples"]),
            "out_of_purpose": list(cfg["out_examples"]),
        }
        if cfg.get("generic") is not None:
            purpose["generic"] = list(cfg["generic"])
        routes[cfg["name"]] = {"file": path.name, "purpose": purpose}
        n = {
            (lab, sp): sum(1 for r in rows if r["label"] == lab and r["split"] == sp)
            for lab in ("in", "off")
            for sp in ("dev", "heldout")
        }
        print(f"{cfg['name']:16} {len(rows)} items  " + "  ".join(f"{k[0]}/{k[1]} {v}" for k, v in n.items()))
    header = (
        "# The routes of the operator evaluation set (issue 15): what an operator configures, as docs/content.md\n"
        "# suggests: a description and 5 + 5 examples (never items of the set). Built by bench/purpose_build_sets.py.\n"
    )
    (EVAL_SETS_DIR / "routes.yaml").write_text(
        header + yaml.safe_dump(routes, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
