"""The operator protocol of ``tokenward eval-content --set operator``: a labelled set
written for routes the purpose scorer was never tuned on (``content/eval_sets``, see the
README there), each route configured the way an operator would (its description and 5 + 5
examples); figures per route with bootstrap intervals, per category and per language.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..decision import Flavour
from ..facts import LLMCall
from ..signals.prompt import ContentSettings, content_signals
from ..transcript import transcript
from .embedding import EmbeddingRuntime, EmbeddingUnavailable
from .purpose import PurposeScorer, PurposeSettings, conversation_context


def _call(body: dict[str, Any]) -> LLMCall:
    if "system" in body or ("messages" in body and "max_tokens" in body and "anthropic" in str(body.get("model"))):
        flavour = Flavour.ANTHROPIC
    else:
        flavour = Flavour.OPENAI
    mt = body.get("max_tokens", body.get("max_completion_tokens", body.get("max_output_tokens")))
    return LLMCall(flavour, body.get("model"), body.get("stream") is True, mt if isinstance(mt, int) else None, body)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (small held-out sets are uncertain)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


# --------------------------------------------------------------------------------------
# The operator protocol (issue 15): a set written for routes the scorer was never tuned
# on (src/tokenward/content/eval_sets/), each route configured the way an operator would
# (its description and 5 + 5 examples), figures per route with bootstrap intervals, per
# category and per language.
# --------------------------------------------------------------------------------------
EVAL_SETS_DIR = Path(__file__).resolve().with_name("eval_sets")
DEV_SHARE = 0.30  # the share of each route's items in the dev (tuning) split


def _item_key(row: dict[str, Any]) -> bytes:
    context = "\n".join(f"{m['role']}: {m['content']}" for m in row.get("context") or ())
    return f"{row['route']}\n{row['label']}\n{context}\n{row['text']}".encode()


def item_id(row: dict[str, Any]) -> str:
    """A stable id of an operator-set item: route and 12 hex digits of a hash of its content."""
    return f"{row['route']}:{hashlib.sha256(_item_key(row)).hexdigest()[:12]}"


def eval_split(row: dict[str, Any]) -> str:
    """``dev`` (about 30%, for tuning) or ``heldout`` (for the figures), fixed by a hash."""
    h = hashlib.sha256(b"split:" + _item_key(row)).digest()
    return "dev" if int.from_bytes(h[:2], "big") < DEV_SHARE * 65536 else "heldout"


@dataclass(frozen=True)
class OperatorItem:
    id: str
    route: str
    label: str  # "in" | "off"
    category: str
    lang: str
    text: str
    context: tuple[tuple[str, str], ...]  # earlier turns (role, content), oldest first
    split: str

    def body(self, model: str = "gpt-4o-mini") -> dict[str, Any]:
        """The request the route's own chat page sends for this turn."""
        messages = [{"role": r, "content": c} for r, c in self.context]
        messages.append({"role": "user", "content": self.text})
        return {"model": model, "messages": messages, "stream": True}


@dataclass
class OperatorRoute:
    name: str
    purpose: PurposeSettings
    items: list[OperatorItem]


def load_operator_routes(data: Path | None = None, only: str | None = None) -> list[OperatorRoute]:
    """The routes of the operator set with their items (``routes.yaml`` + one JSONL per route)."""
    data = data or EVAL_SETS_DIR
    spec = yaml.safe_load((data / "routes.yaml").read_text(encoding="utf-8"))
    routes = []
    for name, cfg in spec.items():
        if only is not None and name != only:
            continue
        items = []
        for line in (data / cfg["file"]).read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            row = json.loads(line)
            ctx = tuple((m["role"], m["content"]) for m in row.get("context") or ())
            items.append(
                OperatorItem(
                    row["id"], row["route"], row["label"], row["category"], row["lang"], row["text"], ctx, row["split"]
                )
            )
        routes.append(OperatorRoute(name, PurposeSettings(**cfg["purpose"]), items))
    if only is not None and not routes:
        raise SystemExit(f"no route {only!r} in {data / 'routes.yaml'}")
    return routes


@dataclass
class OperatorScored:
    item: OperatorItem
    fit: float
    method: str
    ms: float
    cached: bool
    other_risk: float  # the other content signals (injection heuristics...), summed


async def score_operator_route(
    route: OperatorRoute,
    split: str,
    runtime: EmbeddingRuntime | None,
    purpose: PurposeSettings | None = None,
) -> list[OperatorScored]:
    """Score the route's items of ``split`` (``dev``, ``heldout`` or ``all``) with the
    scorer as shipped: the latest user turn of the request the chat page sends (earlier
    turns included in the body). ``runtime`` None: lexical only. ``purpose`` overrides
    the route's settings (to try other settings or examples)."""
    cfg = purpose or route.purpose
    if runtime is None:
        cfg = cfg.model_copy(update={"semantic": "off"})
    scorer = PurposeScorer.create(cfg, runtime=runtime)
    content = ContentSettings()
    out = []
    for item in route.items:
        if split != "all" and item.split != split:
            continue
        body = item.body()
        other = sum(s.score for s in content_signals(_call(body), content))
        tr = transcript(body)
        res = await scorer.score(tr.latest_user(), conversation_context(tr))
        out.append(OperatorScored(item, res.fit, res.method, res.ms, res.cached, other))
    return out


def _auc(fit_in: Any, fit_off: Any) -> float:
    """ROC AUC of "off purpose" against "in purpose" with the fit as the (inverted) score:
    the chance that an off-purpose turn fits worse than an in-purpose one (ties half)."""
    import numpy as np

    if len(fit_in) == 0 or len(fit_off) == 0:
        return float("nan")
    both = np.concatenate([fit_off, fit_in])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    # average ranks for ties
    i = 0
    while i < len(both):
        j = i
        while j + 1 < len(both) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r_off = ranks[: len(fit_off)].sum()
    n_off, n_in = len(fit_off), len(fit_in)
    # Mann-Whitney U of the off side being *lower*: count pairs with off < in
    u_low = n_off * n_in - (r_off - n_off * (n_off + 1) / 2)
    return float(u_low / (n_off * n_in))


def threshold_at_fpr(fit_in: Any, max_fpr: float) -> float:
    """The fit threshold (flag below it) that flags at most ``max_fpr`` of the in-purpose fits."""
    import numpy as np

    ordered = np.sort(np.asarray(fit_in))
    allowed = int(max_fpr * len(ordered))
    return float(ordered[allowed]) if len(ordered) else 0.0


def threshold_at_recall(fit_off: Any, recall: float) -> float:
    """The smallest threshold that flags at least ``recall`` of the off-purpose fits."""
    import numpy as np

    ordered = np.sort(np.asarray(fit_off))
    if not len(ordered):
        return 0.0
    k = min(len(ordered) - 1, max(0, math.ceil(recall * len(ordered)) - 1))
    return float(np.nextafter(ordered[k], np.inf))


def _headline(fit_in: Any, fit_off: Any, threshold: float) -> dict[str, float]:
    import numpy as np

    t1 = threshold_at_fpr(fit_in, 0.01)
    t90 = threshold_at_recall(fit_off, 0.90)
    return {
        "auc": _auc(fit_in, fit_off),
        "recall_at_1pct_fpr": float(np.mean(fit_off < t1)) if len(fit_off) else float("nan"),
        "recall": float(np.mean(fit_off < threshold)) if len(fit_off) else float("nan"),
        "in_flagged": float(np.mean(fit_in < threshold)) if len(fit_in) else float("nan"),
        "in_flagged_at_90pct_recall": float(np.mean(fit_in < t90)) if len(fit_in) else float("nan"),
    }


def _bootstrap(fit_in: Any, fit_off: Any, threshold: float, reps: int, seed: int) -> dict[str, list[float]]:
    """95% percentile intervals of the headline figures, resampling the in- and
    off-purpose items separately (a stratified bootstrap)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(reps):
        a = fit_in[rng.integers(0, len(fit_in), len(fit_in))]
        b = fit_off[rng.integers(0, len(fit_off), len(fit_off))]
        for k, v in _headline(a, b, threshold).items():
            samples[k].append(v)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in samples.items()}


def operator_report(
    name: str, scored: list[OperatorScored], threshold: float, *, reps: int = 1000, seed: int = 15
) -> dict[str, Any]:
    """Headline figures with bootstrap intervals, then per category and per language:
    the share flagged at the shipped threshold (in-purpose: flagged; off-purpose: recall)
    with Wilson intervals, by the purpose fit alone and with the other content signals
    (``content risk >= 3``: purpose-fit's weight 4, or injection heuristics adding up)."""
    import numpy as np

    fit_in = np.array([s.fit for s in scored if s.item.label == "in"])
    fit_off = np.array([s.fit for s in scored if s.item.label == "off"])
    head = _headline(fit_in, fit_off, threshold)
    ci = _bootstrap(fit_in, fit_off, threshold, reps, seed) if reps and len(fit_in) and len(fit_off) else {}
    t1 = threshold_at_fpr(fit_in, 0.01)

    def group(key: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for label in ("in", "off"):
            values = sorted({getattr(s.item, key) for s in scored if s.item.label == label})
            for v in values:
                sub = [s for s in scored if s.item.label == label and getattr(s.item, key) == v]
                k = sum(1 for s in sub if s.fit < threshold)
                k_any = sum(1 for s in sub if s.fit < threshold or s.other_risk >= 3)
                k1 = sum(1 for s in sub if s.fit < t1)
                out[f"{label}/{v}"] = {
                    "label": label,
                    key: v,
                    "n": len(sub),
                    "flagged": k / len(sub),
                    "flagged_ci": list(wilson(k, len(sub))),
                    "flagged_with_other_signals": k_any / len(sub),
                    "flagged_at_1pct_fpr_threshold": k1 / len(sub),
                    "mean_fit": float(np.mean([s.fit for s in sub])),
                }
        return out

    ms = [s.ms for s in scored if not s.cached]
    methods = sorted({s.method for s in scored})
    worst = sorted((s for s in scored if s.item.label == "in"), key=lambda s: s.fit)[:12]
    return {
        "route": name,
        "method": "+".join(methods),
        "threshold": threshold,
        "threshold_at_1pct_fpr": t1,
        "n_in": len(fit_in),
        "n_off": len(fit_off),
        "headline": head,
        "ci95": ci,
        "by_category": group("category"),
        "by_language": group("lang"),
        "latency_ms": {"p50": _pct(ms, 0.5), "p99": _pct(ms, 0.99), "n": len(ms)},
        "lowest_in_purpose": [
            {"fit": round(s.fit, 3), "category": s.item.category, "lang": s.item.lang, "id": s.item.id} for s in worst
        ],
    }


def _ci(rep: dict[str, Any], key: str) -> str:
    v = rep["headline"][key]
    lo_hi = rep["ci95"].get(key)
    if lo_hi is None:
        return f"{v:.3f}"
    return f"{v:.3f} [{lo_hi[0]:.3f}-{lo_hi[1]:.3f}]"


def print_operator_summary(reps: list[dict[str, Any]], split: str, status: str) -> None:
    print(f"\n== operator protocol: description + 5 in + 5 off examples per route ({split} split) — {status}")
    print(
        f"{'route':16} {'n in/off':>9}  {'ROC AUC':23} {'recall @1% FPR':23} "
        f"{'recall @ shipped t':23} {'in flagged @ shipped t':23} {'in flagged @90% recall':23}"
    )
    for rep in reps:
        print(
            f"{rep['route']:16} {rep['n_in']:>4}/{rep['n_off']:<4}  {_ci(rep, 'auc'):23} "
            f"{_ci(rep, 'recall_at_1pct_fpr'):23} {_ci(rep, 'recall'):23} {_ci(rep, 'in_flagged'):23} "
            f"{_ci(rep, 'in_flagged_at_90pct_recall'):23}"
        )
    print("(95% bootstrap intervals in brackets; shipped threshold = the route's semantic/lexical threshold)")


def _pooled_groups(reps: list[dict[str, Any]], section: str) -> dict[str, dict[str, Any]]:
    pooled: dict[str, dict[str, Any]] = {}
    for rep in reps:
        for key, g in rep[section].items():
            p = pooled.setdefault(key, {"label": g["label"], "n": 0, "k": 0, "k_any": 0, "k1": 0, "routes": {}})
            p["n"] += g["n"]
            p["k"] += round(g["flagged"] * g["n"])
            p["k_any"] += round(g["flagged_with_other_signals"] * g["n"])
            p["k1"] += round(g["flagged_at_1pct_fpr_threshold"] * g["n"])
            p["routes"][rep["route"]] = g["flagged"]
    return pooled


def print_operator_groups(reps: list[dict[str, Any]], section: str, title: str) -> None:
    pooled = _pooled_groups(reps, section)
    names = [r["route"] for r in reps]
    print(f"\n{title}: share flagged at the shipped threshold (in: false flags; off: recall), all routes pooled")
    print(
        f"{'':26} {'n':>4} {'flagged [95% CI]':22} {'+other sig.':>11} {'@1%FPR t':>9}  "
        + " ".join(f"{n[:14]:>14}" for n in names)
    )
    for key in sorted(pooled, key=lambda k: (pooled[k]["label"] != "in", k)):
        p = pooled[key]
        lo, hi = wilson(p["k"], p["n"])
        per_route = " ".join(f"{p['routes'][n]:14.3f}" if n in p["routes"] else f"{'-':>14}" for n in names)
        print(
            f"{key:26} {p['n']:4} {p['k'] / p['n']:.3f} [{lo:.3f}-{hi:.3f}]   {p['k_any'] / p['n']:11.3f} "
            f"{p['k1'] / p['n']:9.3f}  {per_route}"
        )


async def run_operator(args: argparse.Namespace) -> int:
    data = Path(args.data) if args.data else EVAL_SETS_DIR
    if not (data / "routes.yaml").is_file():
        print(f"no operator set in {data} (pass --data DIR)", file=sys.stderr)
        return 2
    split = {"tune": "dev"}.get(args.split, args.split)
    runtime: EmbeddingRuntime | None = None
    status = "lexical only (--lexical-only)"
    if not args.lexical_only:
        try:
            runtime = EmbeddingRuntime.load()
            status = f"semantic: {runtime.describe()}"
        except EmbeddingUnavailable as exc:
            status = f"semantic unavailable ({exc}): lexical only"
    reps = []
    try:
        for route in load_operator_routes(data, args.route):
            if runtime is not None:
                runtime.cache.clear()  # latency measured uncached
            scored = await score_operator_route(route, split, runtime)
            method = "semantic" if runtime is not None else "lexical"
            t = route.purpose.semantic_threshold if method == "semantic" else route.purpose.lexical_threshold
            reps.append(operator_report(route.name, scored, t, reps=args.bootstrap))
    finally:
        if runtime is not None:
            runtime.close()
    if args.json:
        print(json.dumps(reps, indent=2, default=str))
        return 0
    print_operator_summary(reps, split, status)
    print_operator_groups(reps, "by_category", "per category")
    print_operator_groups(reps, "by_language", "per language")
    for rep in reps:
        lat = rep["latency_ms"]
        print(
            f"\n{rep['route']}: threshold for 1% in-purpose FPR on this split {rep['threshold_at_1pct_fpr']:.3f} "
            f"(shipped {rep['threshold']}); scoring p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms uncached"
        )
        print(
            "  lowest in-purpose fits: "
            + ", ".join(f"{w['fit']} {w['category']}/{w['lang']}" for w in rep["lowest_in_purpose"][:8])
        )
    return 0
