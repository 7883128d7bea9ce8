"""Injection and jailbreak heuristics: what a call tries to make the model do.

Instruction override ("ignore all previous instructions"), role hijack (DAN, "developer
mode", "you are now…"), system-prompt extraction, and payloads hidden by encoding
(base64, hex, rot13) or by Unicode tricks (invisible tag characters, zero-width and bidi
controls, mixed-script homoglyphs). Only user and system text is read, newest first,
within ``scan_chars``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from functools import lru_cache
from typing import Any

from ...decision import Signal
from ...transcript import Transcript
from .settings import CONTENT_WEIGHTS, ContentSettings, mark

__all__ = ["injection_signals"]

_W = CONTENT_WEIGHTS

# --------------------------------------------------------------------------------------
# Injection and jailbreak heuristics: (name, signal, pattern).
# --------------------------------------------------------------------------------------
_OBJ = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|context|messages?|programming|"
    r"restrictions|constraints|commands|policies|system (?:prompt|message))"
)
_INJECTION: tuple[tuple[str, str, str], ...] = (
    (
        "ignore-previous",
        "content/injection-override",
        r"\b(?:ignore|disregard|forget|skip|override|bypass|neglect|abandon|drop)\b[^.!?\n]{0,40}?"
        r"\b(?:all|any|every|previous|prior|above|earlier|preceding|initial|original|your|the|these|those)\b"
        r"[^.!?\n]{0,30}?\b" + _OBJ,
    ),
    (
        "new-instructions",
        "content/injection-override",
        r"\b(?:new|updated|real|actual|true) (?:instructions|rules|task)\s*:",
    ),
    (
        "instead-do",
        "content/injection-override",
        r"\binstead,? (?:you (?:will|must|should) )?(?:answer|respond to|do|follow)\b",
    ),
    (
        "stop-being",
        "content/injection-override",
        r"\b(?:stop|quit) (?:being|acting as|pretending to be) (?:an?|the) [\w -]{0,20}(?:assistant|bot|agent)\b",
    ),
    (
        "dan",
        "content/role-hijack",
        r"\bDo Anything Now\b|\b(?:DAN|STAN|DUDE|AIM|ANTI-DAN|BetterDAN)\b(?: mode| \d+(?:\.\d)?\b|:)",
    ),
    (
        "mode-switch",
        "content/role-hijack",
        r"\b(?:developer|god|debug|sudo|admin|jailbreak|unrestricted|evil|dev) mode\b",
    ),
    ("jailbreak", "content/role-hijack", r"\bjailbr(?:eak|oken)\w*"),
    (
        "you-are-now",
        "content/role-hijack",
        r"\byou(?:'re| are) (?:now|no longer|going to (?:be|act|pretend))\b|\bfrom now on,? you\b",
    ),
    (
        "unrestricted",
        "content/role-hijack",
        r"\b(?:without|free of|no) (?:any )?(?:ethical|moral|content|safety)? ?(?:restrictions|filters|filtering|"
        r"limitations|censorship|guidelines|boundaries)\b|\b(?:unfiltered|uncensored|unrestricted|amoral) "
        r"(?:ai|assistant|model|chatbot|response|version)\b",
    ),
    (
        "pretend",
        "content/role-hijack",
        r"\b(?:pretend|imagine) (?:to be|you are|you're|that you are)\b|"
        r"\b(?:act|behave|respond) as (?:if you were |an? )?"
        r"(?:an? )?(?:ai|assistant|character|persona|chatbot|model) (?:that|who|with|without|named|called)\b",
    ),
    (
        "system-prompt",
        "content/prompt-extraction",
        r"\b(?:repeat|print|show|reveal|output|display|tell me|give me|share|write (?:out|down)|spell out|recite|"
        r"dump|leak|expose|what (?:are|is|was|were))\b[^.!?\n]{0,40}?\b(?:system (?:prompt|message|instructions)|"
        r"(?:initial|original|hidden|secret|internal|developer|first) (?:prompt|instructions|message)|"
        r"your (?:instructions|prompt|directives|configuration)|pre-?prompt|meta-?prompt)",
    ),
    (
        "text-above",
        "content/prompt-extraction",
        r"\b(?:repeat|print|output|copy|translate|summari[sz]e)\b[^.!?\n]{0,30}?\b(?:words|text|everything|"
        r"content|instructions)\b[^.!?\n]{0,12}?\b(?:above|before (?:this|my|the first))\b|"
        r"\bbeginning with ['\"]?you are\b",
    ),
)
# Lower-case substrings without which a pattern cannot match: it runs only when one occurs.
_INJECTION_TRIGGERS: dict[str, tuple[str, ...]] = {
    "ignore-previous": ("ignor", "disregard", "forget", "skip", "override", "bypass", "neglect", "abandon", "drop"),
    "new-instructions": ("instructions", "rules", "task"),
    "instead-do": ("instead",),
    "stop-being": ("stop", "quit"),
    "dan": ("dan", "stan", "dude", "aim", "anything now"),
    "mode-switch": (" mode",),
    "jailbreak": ("jailbr",),
    "you-are-now": ("you are", "you're", "from now on"),
    "unrestricted": ("restriction", "filter", "limitation", "censor", "guideline", "boundar", "unrestricted", "amoral"),
    "pretend": ("pretend", "imagine", " as "),
    "system-prompt": ("prompt", "instruction", "directive", "configuration", "message"),
    "text-above": ("above", "before", "you are"),
}
_ALL_TRIGGERS: tuple[str, ...] = tuple(sorted({t for ts in _INJECTION_TRIGGERS.values() for t in ts}))
_INJECTION_COMPILED: tuple[tuple[str, str, re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (pattern, name, re.compile(rx, re.IGNORECASE), _INJECTION_TRIGGERS[pattern]) for pattern, name, rx in _INJECTION
)

# Encoded payloads.
_B64_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=])")
_B64URL_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9+/=_-])")
_LONG_TOKEN_RE = re.compile(r"\S{32,}")
_HEX_RE = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :,]?){20,}")
_ROT13_HINT_RE = re.compile(r"\brot[- ]?13\b|\bcaesar(?:'s)? cipher\b|\bdecode (?:this|the following)\b", re.IGNORECASE)
_WORD_RE = re.compile(r"[a-z]+")
_COMMON_WORDS = frozenset(
    "the be to of and a in that have it for not on with he as you do at this but his by from they we say her she "
    "or an will my one all would there their what so up out if about who get which go me when make can like time "
    "no just him know take people into year your good some could them see other than then now look only come its "
    "over think also back after use two how our work first well way even new want because any these give day most "
    "us is are was were how write tell explain give ignore instructions please".split()
)

# Unicode tricks.
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\u180e]")
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")
_TAG_RE = re.compile("[\U000e0000-\U000e007f]")
_VARIATION_RE = re.compile("[\U000e0100-\U000e01ef]")
_FULLWIDTH_RE = re.compile("[\uff01-\uff5e]{6,}")
_MIXED_SCRIPT_RE = re.compile(
    r"\b(?=\w*[A-Za-z])(?=\w*[\u0370-\u03ff\u0400-\u04ff])[A-Za-z\u0370-\u03ff\u0400-\u04ff]{3,}\b"
)


def _common_ratio(text: str) -> float:
    words = _WORD_RE.findall(text.lower())
    if len(words) < 4:
        return 0.0
    return sum(map(_COMMON_WORDS.__contains__, words)) / len(words)


def _printable_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\t\r")
    letters = sum(1 for c in text if c.isalpha() or c == " ")
    if printable / len(text) < 0.95 or letters / len(text) < 0.6:
        return None
    return text


def _encoded(text: str) -> dict[str, Any] | None:
    long_token = _LONG_TOKEN_RE.search(text) is not None
    for rx, kind in ((_B64_RE, "base64"), (_B64URL_RE, "base64url")) if long_token else ():
        for m in rx.finditer(text):
            blob = m.group(0).rstrip("=")
            if blob.isalpha() and (blob.islower() or blob.isupper()):
                continue  # a long word, not an encoding
            pad = "=" * (-len(blob) % 4)
            try:
                raw = (
                    base64.b64decode(blob + pad, validate=True)
                    if kind == "base64"
                    else base64.urlsafe_b64decode(blob + pad)
                )
            except (binascii.Error, ValueError):
                continue
            decoded = _printable_text(raw)
            if decoded is not None and " " in decoded:
                return {"encoding": kind, "chars": len(m.group(0))}
    # Text encoded as hex has a digit in nearly every byte: prose with 20 digits is rare.
    n_digits = sum(map(text.count, "0123456789"))
    for m in _HEX_RE.finditer(text) if n_digits >= 20 else ():
        hexa = re.sub(r"[ :,]", "", m.group(0))
        if len(hexa) % 2:
            hexa = hexa[:-1]
        try:
            decoded = _printable_text(bytes.fromhex(hexa))
        except ValueError:
            continue
        if decoded is not None and " " in decoded:
            return {"encoding": "hex", "chars": len(m.group(0))}
    head = text[:600]
    hinted = _ROT13_HINT_RE.search(head) is not None
    if hinted or (len(head) >= 40 and head.isascii() and _common_ratio(head) < 0.1):
        plain = _common_ratio(head)
        rotated = _common_ratio(codecs.decode(head, "rot13"))
        if rotated >= 0.25 and rotated > plain + 0.15:
            return {"encoding": "rot13", "chars": len(text)}
    return None


def _unicode_tricks(text: str) -> dict[str, Any] | None:
    if text.isascii():
        return None
    found: dict[str, int] = {}
    for name, rx in (
        ("tag-characters", _TAG_RE),
        ("variation-selectors", _VARIATION_RE),
        ("bidi-controls", _BIDI_RE),
        ("zero-width", _INVISIBLE_RE),
        ("fullwidth", _FULLWIDTH_RE),
        ("mixed-script", _MIXED_SCRIPT_RE),
    ):
        n = len(rx.findall(text))
        if n:
            found[name] = n
    # A single zero-width joiner is normal in emoji sequences; one mixed word can be a name.
    if found.get("zero-width", 0) < 3:
        found.pop("zero-width", None)
    if found.get("mixed-script", 0) < 2:
        found.pop("mixed-script", None)
    return {"kinds": sorted(found), "count": sum(found.values())} if found else None


def _scan_texts(tr: Transcript, limit: int) -> list[tuple[str, str]]:
    """(where, text) to run the heuristics on, newest user text first, within ``limit``."""
    out: list[tuple[str, str]] = []
    budget = limit
    for turn in reversed(tr.turns):
        if budget <= 0:
            break
        if turn.role == "user" and turn.kind == "text" and turn.text:
            out.append(("user", turn.text[:budget]))
            budget -= min(len(turn.text), budget)
    for text in tr.system:
        if budget <= 0:
            break
        out.append(("system", text[:budget]))
        budget -= min(len(text), budget)
    return out


# One text's findings: (name, pattern, marked match) of each injection pattern that
# matched, in table order; the encoded payload; the Unicode tricks.
_Findings = tuple[tuple[tuple[str, str, str], ...], dict[str, Any] | None, dict[str, Any] | None]
# A chat application sends the same system prompt, and the same earlier turns, with every
# call: each text is read once and its findings kept (a pure function of the text, so
# nothing a client sends can change what another text is found to hold). Only texts up
# to _MEMO_CHARS are kept, at most _MEMO_TEXTS of them: a few MB at worst.
_MEMO_TEXTS = 256
_MEMO_CHARS = 4096


def _text_findings(text: str) -> _Findings:
    low = text.lower()
    present = {t for t in _ALL_TRIGGERS if t in low}  # each trigger searched once per text
    matched = []
    for pattern, name, rx, triggers in _INJECTION_COMPILED:
        if present.isdisjoint(triggers):
            continue
        m = rx.search(text)
        if m is not None:
            matched.append((name, pattern, mark(m.group(0))))
    return tuple(matched), _encoded(text), _unicode_tricks(text)


_memo_findings = lru_cache(maxsize=_MEMO_TEXTS)(_text_findings)


def _findings(text: str) -> _Findings:
    return _memo_findings(text) if len(text) <= _MEMO_CHARS else _text_findings(text)


def injection_signals(tr: Transcript, cfg: ContentSettings) -> list[Signal]:
    """Instruction override, role hijack, prompt extraction, encoded payloads, Unicode tricks."""
    out: list[Signal] = []
    seen: set[str] = set()
    encoded_done = unicode_done = False
    for where, text in _scan_texts(tr, cfg.scan_chars):
        matched, enc, tricks = _findings(text)
        for name, pattern, match in matched:
            if name in seen:
                continue
            seen.add(name)
            out.append(Signal(name, _W[name], {"pattern": pattern, "match": match, "where": where}))
        if not encoded_done and enc is not None:
            encoded_done = True
            out.append(Signal("content/encoded-payload", _W["content/encoded-payload"], {**enc, "where": where}))
        if not unicode_done and tricks is not None:
            unicode_done = True
            evidence = {**tricks, "kinds": list(tricks["kinds"]), "where": where}  # the memo's own list stays its own
            out.append(Signal("content/unicode-tricks", _W["content/unicode-tricks"], evidence))
    return out
