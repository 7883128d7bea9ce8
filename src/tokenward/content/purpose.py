"""Purpose fit: is the user's latest turn within what this route is for?

A route's purpose is a description plus example prompts that are in and out of purpose
(``routes[].purpose``, :class:`PurposeSettings`). Every request's latest user turn is
scored against them:

* **lexical** (always available, no model): TF-IDF over words, word pairs and
  character 4-grams; cosine similarity to the in-purpose anchors (the description and
  each topic it lists, the in-purpose examples, generic small talk) against the
  out-of-purpose anchors (the route's examples and built-in general-assistant tasks by
  category: coding, agent, writing, language, homework, knowledge, harmful, roleplay).
* **semantic** (optional extra): the same comparison with multilingual sentence
  embeddings (USE multilingual v3, :mod:`.embedding`), which generalise to questions
  that share no words with the examples, in 16 languages. The model reads the turn (a
  long one in word windows: the head window and the ones the lexical scorer finds least
  in purpose, ``max_windows``), its sentences and clauses (``parts``) and any encoded
  text decoded (``decode``, :mod:`.decode`); the least-fitting of them decides, so a
  general task behind an on-topic opening is still seen. A short part that looks off
  purpose alone is read again after the conversation's previous user turn
  (``context_turns``): a follow-up is judged with what it follows.

``fit`` is ``0.5 + (s_in - s_out) / 2`` where ``s_in``/``s_out`` are the mean of the
``k`` best cosine similarities to each side: 1 is "exactly like the in-purpose
examples", 0 "exactly like the out-of-purpose ones". A turn is off-purpose when its fit
is below the method's threshold.

Build a scorer once per route when the policy loads (:meth:`PurposeScorer.create`, slow
when the model loads; the model is shared by every route and reload); then
``await scorer.score(text)`` per request: lexical work runs inline (bounded by
``max_chars``), model runs happen on the embedding workers, results are cached by a hash
of the text in a bounded LRU.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..decision import Signal
from ..transcript import Transcript
from .anchors import CATEGORIES as _CATEGORIES
from .anchors import GENERIC_IN, GENERIC_OFF, Category
from .decode import decoded_parts
from .embedding import EmbeddingBusy, EmbeddingRuntime, EmbeddingUnavailable, shared_runtime, text_key
from .segments import Unit, clauses, norm, windows

__all__ = [
    "GENERIC_IN",
    "GENERIC_OFF",
    "LexicalModel",
    "PurposeResult",
    "PurposeScorer",
    "PurposeSettings",
    "conversation_context",
    "purpose_action",
    "purpose_signals",
]

log = logging.getLogger("tokenward.content")


# semantic: chosen on the dev split of the operator set (python -m tokenward.content.evaluate --set
# operator --split dev): the highest value on a 0.005 grid that flags at most 1% of the dev
# in-purpose turns of all four routes pooled, in the model's languages (Hindi and Tagalog, which
# it does not read, left out). lexical: on the tuning halves of tests/data/content (--tune).
DEFAULT_SEMANTIC_THRESHOLD = 0.475
DEFAULT_LEXICAL_THRESHOLD = 0.48


class PurposeSettings(BaseModel):
    """``routes[].purpose``: what the route is for, and what to do with other requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(
        min_length=3, max_length=2000, description="what the route is for, in one or two sentences"
    )
    in_purpose: tuple[str, ...] = Field((), max_length=500, description="example prompts the route is for")
    out_of_purpose: tuple[str, ...] = Field((), max_length=500, description="example prompts it is not for")
    generic: tuple[Category, ...] = Field(
        _CATEGORIES,  # type: ignore[arg-type]
        description="built-in off-purpose categories to compare with (drop 'coding' on a coding-help route)",
    )
    small_talk: bool = Field(True, description="greetings and thanks count as in purpose")
    off_purpose: Literal["score", "refuse", "degrade"] = Field(
        "score",
        description="score: add content/off-purpose to the risk; refuse: answer with `message`; degrade: forward "
        "degraded",
    )
    message: str = Field(
        "This assistant can only help with questions within its purpose.",
        max_length=500,
        description="what a refused client is told (off_purpose: refuse)",
    )
    semantic: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: semantic when the model is installed; on: required (the policy fails without it)"
    )
    semantic_threshold: float = Field(DEFAULT_SEMANTIC_THRESHOLD, ge=0, le=1, description="fit below: off purpose")
    lexical_threshold: float = Field(DEFAULT_LEXICAL_THRESHOLD, ge=0, le=1, description="fit below: off purpose")
    k: int = Field(5, ge=1, le=20, description="nearest anchors averaged on each side")
    window_words: int = Field(24, ge=8, le=200, description="words per window the model reads")
    max_windows: int = Field(2, ge=1, le=16, description="windows of a long turn the model reads")
    max_chars: int = Field(8000, ge=200, le=200_000, description="characters of a turn the lexical scorer reads")
    parts: bool = Field(True, description="judge each sentence or clause of a turn too: the least-fitting decides")
    max_parts: int = Field(4, ge=1, le=16, description="sentences or clauses of a turn the model reads")
    decode: bool = Field(True, description="decode base64, hex, URL-encoded and rot13 text in a turn and judge it too")
    context_turns: int = Field(
        1, ge=0, le=4, description="earlier user turns a part that looks off purpose is read with (follow-ups)"
    )
    cache_size: int = Field(4096, ge=0, le=1_000_000, description="results kept (by text hash)")

    @field_validator("in_purpose", "out_of_purpose")
    @classmethod
    def _examples(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(s.strip() for s in v)
        if any(not s for s in out):
            raise ValueError("examples must not be empty")
        if any(len(s) > 4000 for s in out):
            raise ValueError("an example is longer than 4000 characters")
        return out

    @model_validator(mode="after")
    def _anchors(self) -> PurposeSettings:
        if not self.out_of_purpose and not self.generic:
            raise ValueError("give out_of_purpose examples or keep some generic categories: nothing to compare with")
        return self


@dataclass(frozen=True, slots=True)
class PurposeResult:
    """``fit`` in [0, 1] (1: like the in-purpose examples); ``method``: which scorer
    decided; ``ms``: time spent on this call; ``nearest``: label of the closest anchor
    (``in:3``, ``out:0``, ``generic:coding``, ``description``, ``small-talk``)."""

    fit: float
    off_purpose: bool
    method: Literal["semantic", "lexical", "none"]
    ms: float
    threshold: float = 0.5
    nearest: str = ""
    windows: int = 1  # texts the model read: windows, parts and decoded texts
    cached: bool = False
    lexical_fit: float | None = None


# --------------------------------------------------------------------------------------
# Anchors
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Anchors:
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    inside: tuple[bool, ...]


_PHRASE_SPLIT = re.compile(r"[,;]|\band\b")


def description_phrases(description: str) -> list[str]:
    """The description and each topic it lists ("...: reservations, opening hours, the
    menu") as its own anchor, so a question about one topic finds a close anchor."""
    _, colon, rest = description.partition(":")
    topics = rest if colon else description
    parts = [p.strip(" .\n") for p in _PHRASE_SPLIT.split(topics)]
    return [description] + [p for p in parts if len(p) > 3 and p != description]


def _anchors(cfg: PurposeSettings) -> _Anchors:
    texts: list[str] = description_phrases(cfg.description)
    labels: list[str] = ["description"] * len(texts)
    inside: list[bool] = [True] * len(texts)
    for i, s in enumerate(cfg.in_purpose):
        texts.append(s)
        labels.append(f"in:{i}")
        inside.append(True)
    if cfg.small_talk:
        texts.extend(GENERIC_IN)
        labels.extend(["small-talk"] * len(GENERIC_IN))
        inside.extend([True] * len(GENERIC_IN))
    for i, s in enumerate(cfg.out_of_purpose):
        texts.append(s)
        labels.append(f"out:{i}")
        inside.append(False)
    for cat in cfg.generic:
        for s in GENERIC_OFF[cat]:
            texts.append(s)
            labels.append(f"generic:{cat}")
            inside.append(False)
    return _Anchors(tuple(texts), tuple(labels), tuple(inside))


def _topk_mean(values: Sequence[float], k: int) -> float:
    if not values:
        return 0.0
    if len(values) <= k:
        return sum(values) / len(values)
    best = sorted(values, reverse=True)[:k]
    return sum(best) / k


def _fit(s_in: float, s_out: float) -> float:
    return min(1.0, max(0.0, 0.5 + (s_in - s_out) / 2))


# --------------------------------------------------------------------------------------
# Lexical scorer
# --------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOP = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been am do does did i you he she "
    "it we they me my your our their this that these those there here what which who whom how when where why can "
    "could would should will shall may might must have has had not no so than then too very just about into over "
    "also any some all its it's i'm i've you're please".split()
)


def _features(text: str, max_chars: int) -> dict[str, float]:
    words = _TOKEN_RE.findall(text[:max_chars].lower())
    feats: defaultdict[str, float] = defaultdict(float)
    content = [w for w in words if w not in _STOP]
    for w in content:
        feats["w:" + w] += 1.0
        if len(w) >= 5:
            padded = f"<{w}>"
            for i in range(len(padded) - 3):
                feats["c:" + padded[i : i + 4]] += 0.25
    for a, b in itertools.pairwise(words):
        if a not in _STOP or b not in _STOP:
            feats["b:" + a + " " + b] += 1.0
    return feats


class LexicalModel:
    """TF-IDF cosine against the anchors, with an inverted index (pure Python)."""

    def __init__(self, anchors: _Anchors, k: int, max_chars: int):
        self._k = k
        self._max_chars = max_chars
        self._labels = anchors.labels
        self._inside = anchors.inside
        docs = [_features(t, max_chars) for t in anchors.texts]
        n = len(docs)
        df: Counter[str] = Counter()
        for d in docs:
            df.update(d.keys())
        self._idf = {f: math.log((1 + n) / (1 + c)) + 1.0 for f, c in df.items()}
        self._default_idf = math.log(1 + n) + 1.0
        self._index: dict[str, list[tuple[int, float]]] = {}
        for i, d in enumerate(docs):
            vec = self._weigh(d)
            for f, w in vec.items():
                self._index.setdefault(f, []).append((i, w))

    def _weigh(self, feats: Mapping[str, float]) -> dict[str, float]:
        vec = {f: (1.0 + math.log(c)) * self._idf.get(f, self._default_idf) for f, c in feats.items() if c > 0}
        norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
        return {f: w / norm for f, w in vec.items()}

    def similarities(self, text: str) -> list[float]:
        sims = [0.0] * len(self._labels)
        for f, w in self._weigh(_features(text, self._max_chars)).items():
            for i, aw in self._index.get(f, ()):
                sims[i] += w * aw
        return sims

    def score(self, text: str) -> tuple[float, str]:
        """(fit, nearest anchor label)."""
        sims = self.similarities(text)
        s_in = _topk_mean([s for s, inside in zip(sims, self._inside, strict=True) if inside], self._k)
        s_out = _topk_mean([s for s, inside in zip(sims, self._inside, strict=True) if not inside], self._k)
        best = max(range(len(sims)), key=sims.__getitem__) if sims else 0
        nearest = self._labels[best] if sims and sims[best] > 0 else ""
        return _fit(s_in, s_out), nearest


# --------------------------------------------------------------------------------------
# Semantic scorer
# --------------------------------------------------------------------------------------
class _SemanticModel:
    def __init__(self, anchors: _Anchors, runtime: EmbeddingRuntime, k: int):
        import numpy as np

        self._np = np
        self.runtime = runtime
        self._k = k
        vecs = np.stack(runtime.embed_sync(anchors.texts))
        inside = np.array(anchors.inside)
        self._in = vecs[inside]
        self._out = vecs[~inside]
        self._in_labels = [lab for lab, i in zip(anchors.labels, anchors.inside, strict=True) if i]
        self._out_labels = [lab for lab, i in zip(anchors.labels, anchors.inside, strict=True) if not i]

    def _side(self, sims: Any) -> float:
        k = min(self._k, sims.shape[0])
        if k == 0:
            return 0.0
        part = self._np.partition(sims, -k)[-k:]
        return float(part.mean())

    def fit_of(self, vec: Any) -> tuple[float, str]:
        si = self._in @ vec
        so = self._out @ vec
        fit = _fit(self._side(si), self._side(so))
        bi, bo = int(si.argmax()), int(so.argmax()) if so.shape[0] else -1
        nearest = self._in_labels[bi] if bo < 0 or si[bi] >= so[bo] else self._out_labels[bo]
        return fit, nearest


_PART_WEIGHT = 0.7  # a part's own fit, against the whole turn's (chosen on the dev split of the operator set)
_FOLLOW_UP_WORDS = 12  # a part this short can be a reply that only makes sense after the previous turn


class _LRU:
    def __init__(self, size: int):
        self._size = size
        self._data: OrderedDict[bytes, PurposeResult] = OrderedDict()

    def get(self, key: bytes) -> PurposeResult | None:
        r = self._data.get(key)
        if r is not None:
            self._data.move_to_end(key)
        return r

    def put(self, key: bytes, value: PurposeResult) -> None:
        if self._size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class PurposeScorer:
    """Scores user turns against one route's purpose. Build with :meth:`create`."""

    def __init__(self, cfg: PurposeSettings, lexical: LexicalModel, semantic: _SemanticModel | None):
        self.settings = cfg
        self._lexical = lexical
        self._semantic = semantic
        self._cache = _LRU(cfg.cache_size)
        self._warned = False

    @classmethod
    def create(
        cls,
        cfg: PurposeSettings,
        *,
        runtime: EmbeddingRuntime | Literal["shared"] | None = "shared",
    ) -> PurposeScorer:
        """Build the scorer (blocking: run it where policies load, off the event loop).

        ``runtime``: ``"shared"`` loads (once per process) the shared embedding runtime
        when the settings allow it; None forces the lexical scorer; or pass a runtime.
        Raises :class:`EmbeddingUnavailable` when ``semantic: on`` and no model can run.
        """
        anchors = _anchors(cfg)
        lexical = LexicalModel(anchors, cfg.k, cfg.max_chars)
        rt: EmbeddingRuntime | None
        if cfg.semantic == "off":
            rt = None
        elif runtime == "shared":
            rt = shared_runtime()
        else:
            rt = runtime
        if rt is None and cfg.semantic == "on":
            raise EmbeddingUnavailable("purpose.semantic is 'on' but the embedding model cannot be loaded here")
        semantic = _SemanticModel(anchors, rt, cfg.k) if rt is not None else None
        return cls(cfg, lexical, semantic)

    @property
    def method(self) -> Literal["semantic", "lexical"]:
        return "semantic" if self._semantic is not None else "lexical"

    def cached(self, text: str) -> PurposeResult | None:
        return self._cache.get(text_key(text))

    def score_lexical(self, text: str) -> PurposeResult:
        started = time.perf_counter()
        fit, nearest = self._lexical.score(text)
        t = self.settings.lexical_threshold
        return PurposeResult(fit, fit < t, "lexical", (time.perf_counter() - started) * 1000, t, nearest, 1, False, fit)

    def _units(self, text: str) -> tuple[list[Unit], float]:
        """What the model reads of a turn, and the lexical fit of the whole turn: the
        windows of the turn, its sentences and clauses (``parts``), and any encoded text
        decoded (``decode``)."""
        lex_fit, _ = self._lexical.score(text)
        cfg = self.settings
        clipped = text[: cfg.max_chars]
        wins = windows(clipped, cfg.window_words)
        if len(wins) > cfg.max_windows:
            rest = sorted(range(1, len(wins)), key=lambda i: self._lexical.score(wins[i])[0])
            keep = sorted([0, *rest[: cfg.max_windows - 1]])
            wins = [wins[i] for i in keep]
        units = [Unit(w, "window") for w in wins]
        if cfg.parts:
            seen = {norm(w) for w in wins}
            parts = [p for p in clauses(clipped, cfg.window_words * 2)[:32] if norm(p) not in seen]
            if len(parts) > cfg.max_parts:
                parts = sorted(parts, key=lambda p: self._lexical.score(p)[0])[: cfg.max_parts]
            units.extend(Unit(p, "part") for p in parts)
        if cfg.decode:
            for decoded in decoded_parts(clipped, max_chars=cfg.max_chars):
                units.extend(Unit(w, "decoded") for w in windows(decoded, cfg.window_words)[: cfg.max_windows])
        return units, lex_fit

    def _context(self, context: Sequence[str]) -> str:
        """The earlier user turns a follow-up is read with: the last ``context_turns``,
        at most 48 words."""
        n = self.settings.context_turns
        if n <= 0 or not context:
            return ""
        words = " ".join(t for t in context[-n:] if t.strip()).split()
        return " ".join(words[-48:])

    def _unit_fits(self, units: Sequence[Unit], vecs: Sequence[Any]) -> list[tuple[float, str]]:
        """Each unit's fit and nearest anchor. A part (a sentence or clause) that fits
        worse than the whole turn is weighed 0.7 with 0.3 of the whole turn's fit: a
        plain question inside a pasted message keeps some of its message's context, a
        task behind a greeting still stands out."""
        assert self._semantic is not None
        fits = [self._semantic.fit_of(v) for v in vecs]
        whole = min((f for (f, _), u in zip(fits, units, strict=True) if u.kind == "window"), default=1.0)
        out = []
        for (fit, nearest), unit in zip(fits, units, strict=True):
            if unit.kind == "part" and fit < whole:
                fit = _PART_WEIGHT * fit + (1 - _PART_WEIGHT) * whole
            out.append((fit, nearest if unit.kind != "decoded" else f"decoded:{nearest}"))
        return out

    def _follow_ups(self, units: Sequence[Unit], fits: Sequence[tuple[float, str]], ctx: str) -> list[int]:
        """The units to read again with the conversation: those below the threshold that
        are short enough to be a reply to it (never decoded text)."""
        if not ctx:
            return []
        t = self.settings.semantic_threshold
        return [
            i
            for i, (unit, (fit, _)) in enumerate(zip(units, fits, strict=True))
            if unit.kind != "decoded" and len(unit.text.split()) <= _FOLLOW_UP_WORDS and fit < t
        ]

    def _judge(
        self, units: Sequence[Unit], fits: list[tuple[float, str]], ctx_vecs: Mapping[int, Any], lex_fit: float,
        started: float,
    ) -> PurposeResult:  # fmt: skip
        """The least-fitting unit decides. A follow-up read with the conversation counts
        the mean of its fit alone and with the conversation (when that is better): an
        in-purpose conversation lifts a short reply over the threshold, not a new task."""
        assert self._semantic is not None
        for i, vec in ctx_vecs.items():
            fit, nearest = fits[i]
            with_ctx = self._semantic.fit_of(vec)[0]
            if with_ctx > fit:
                fits[i] = ((fit + with_ctx) / 2, nearest)
        fit, nearest = min(fits, key=lambda f: f[0])
        t = self.settings.semantic_threshold
        ms = (time.perf_counter() - started) * 1000
        return PurposeResult(fit, fit < t, "semantic", ms, t, nearest, len(units), False, lex_fit)

    def _empty(self) -> PurposeResult:
        return PurposeResult(1.0, False, "none", 0.0, 0.0, "", 0)

    def _hit(self, key: bytes, started: float) -> PurposeResult | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        return replace(hit, cached=True, ms=(time.perf_counter() - started) * 1000)

    def _key(self, text: str, ctx: str) -> bytes:
        return text_key(f"{ctx}\x00{text}" if ctx else text)

    async def score(self, text: str, context: Sequence[str] = ()) -> PurposeResult:
        """Score one user turn (the model runs off the event loop). ``context``: the
        conversation's earlier user turns, oldest first (a short follow-up that looks off
        purpose alone is read with them)."""
        started = time.perf_counter()
        if not text.strip():
            return self._empty()
        ctx = self._context(context) if self._semantic is not None else ""
        key = self._key(text, ctx)
        hit = self._hit(key, started)
        if hit is not None:
            return hit
        if self._semantic is None:
            result = self.score_lexical(text)
        else:
            units, lex_fit = self._units(text)
            runtime = self._semantic.runtime
            try:
                fits = self._unit_fits(units, await runtime.embed([u.text for u in units]))
                again = self._follow_ups(units, fits, ctx)
                ctx_vecs = dict(zip(again, await runtime.embed([f"{ctx} {units[i].text}" for i in again]), strict=True))
            except EmbeddingBusy:
                # A flood: judge this one lexically now rather than queue behind it (not cached,
                # so the same text gets the model once the queue drains).
                return self.score_lexical(text)
            except Exception as exc:  # the model failed on this input: judge it lexically
                self._warn(exc)
                result = self.score_lexical(text)
            else:
                result = self._judge(units, fits, ctx_vecs, lex_fit, started)
        self._cache.put(key, result)
        return result

    def score_sync(self, text: str, context: Sequence[str] = ()) -> PurposeResult:
        """The same, blocking, for code that runs outside an event loop (evaluation)."""
        started = time.perf_counter()
        if not text.strip():
            return self._empty()
        ctx = self._context(context) if self._semantic is not None else ""
        key = self._key(text, ctx)
        hit = self._hit(key, started)
        if hit is not None:
            return hit
        if self._semantic is None:
            result = self.score_lexical(text)
        else:
            units, lex_fit = self._units(text)
            runtime = self._semantic.runtime
            fits = self._unit_fits(units, runtime.embed_sync([u.text for u in units]))
            again = self._follow_ups(units, fits, ctx)
            ctx_vecs = dict(zip(again, runtime.embed_sync([f"{ctx} {units[i].text}" for i in again]), strict=True))
            result = self._judge(units, fits, ctx_vecs, lex_fit, started)
        self._cache.put(key, result)
        return result

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("content: semantic scoring failed (%s); scoring lexically", exc)


def conversation_context(tr: Transcript) -> tuple[str, ...]:
    """The user turns of a call before its latest one (oldest first): what a follow-up
    is read with (:meth:`PurposeScorer.score`'s ``context``)."""
    turns = [t.text for t in tr.turns if t.role == "user" and t.kind == "text" and t.text.strip()]
    return tuple(turns[:-1])


def purpose_signals(result: PurposeResult, cfg: PurposeSettings, weight: float = 4.0) -> list[Signal]:
    """``content/off-purpose`` (``weight``) when the turn is off purpose, whatever the
    route then does with it (:func:`purpose_action` says refuse/degrade); otherwise a
    zero-weight ``content/purpose-fit`` so the log shows every fit (for tuning)."""
    if result.method == "none":
        return []
    evidence = {
        "fit": round(result.fit, 3),
        "threshold": result.threshold,
        "method": result.method,
        "nearest": result.nearest,
    }
    if result.off_purpose:
        return [Signal("content/off-purpose", weight, {**evidence, "action": cfg.off_purpose})]
    return [Signal("content/purpose-fit", 0.0, evidence)]


def purpose_action(result: PurposeResult, cfg: PurposeSettings) -> Literal["allow", "score", "refuse", "degrade"]:
    """What the route does with this result: ``allow`` (in purpose), else the route's
    ``off_purpose`` setting."""
    return cfg.off_purpose if result.off_purpose else "allow"
