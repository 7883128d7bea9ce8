"""Encoded text inside a user turn, decoded for the purpose scorer.

A reseller can hide a general task from a purpose check by encoding it ("answer this:
V3JpdGUgYSBwb2Vt..."); the model then reads noise. :func:`decoded_parts` finds base64
(and base64url), hex, URL-encoded and rot13 text in a turn and returns what it decodes
to, when that is readable text, so the scorer judges the decoded task too (the worst part
decides).

Bounded on purpose: at most ``max_chars`` of the turn are read, at most ``max_parts``
decoded texts come back, each clipped to ``max_out`` characters, and a decoded text is
decoded again at most once (``depth`` 2): the work is linear in the turn's length, never
exponential in nested encodings.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from urllib.parse import unquote

__all__ = ["decoded_parts"]

# Shorter minimums than the injection heuristics' (32 characters): a decoded blob is only
# scored here, not flagged, and a short encoded task ("SGVsbG8gd29ybGQ=") is still a task.
_B64_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_RE = re.compile(r"(?<![0-9A-Za-z])(?:[0-9A-Fa-f]{2}[ :]?){8,}(?![0-9A-Fa-f])")
_URL_RE = re.compile(r"(?:%[0-9A-Fa-f]{2}|[^\s%]){0,200}(?:%[0-9A-Fa-f]{2}[^\s%]{0,20}){3,}")
_LETTERS_RE = re.compile(r"[a-z]+")
# The 60 most frequent letter pairs of English text: about 45% of the pairs of ordinary
# English, about 10% of the same text in rot13 (and of most other languages' rot13).
_BIGRAMS = frozenset(
    "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri "
    "ro ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns di fo ho pe ec pr no ct us ac ot il tr ly nc et ut "
    "ss so rs un lo wa ge ie wh ee wi em ad ol rt po we na ul ni ts mo ow pa im mi ai sh".split()
)


def _english_ratio(text: str) -> float:
    """The share of letter pairs (inside words) that are frequent English pairs."""
    pairs = 0
    hits = 0
    for word in _LETTERS_RE.findall(text.lower()):
        for i in range(len(word) - 1):
            pairs += 1
            hits += word[i : i + 2] in _BIGRAMS
    return hits / pairs if pairs >= 12 else 0.0


def _readable(raw: bytes) -> str | None:
    """The bytes as text when they are readable words (UTF-8, printable, mostly letters
    and spaces, at least two words); else None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 6 or " " not in text.strip():
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\t\r")
    letters = sum(1 for c in text if c.isalpha() or c.isspace())
    if printable / len(text) < 0.95 or letters / len(text) < 0.6:
        return None
    return text


def _base64(blob: str) -> str | None:
    core = blob.rstrip("=")
    if core.isalpha() and (core.islower() or core.isupper()):
        return None  # a long word, not an encoding
    if not any(c.isdigit() or c.isupper() for c in core) or not any(c.islower() for c in core):
        return None
    urlsafe = "-" in core or "_" in core
    pad = "=" * (-len(core) % 4)
    try:
        raw = base64.urlsafe_b64decode(core + pad) if urlsafe else base64.b64decode(core + pad, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _readable(raw)


def _hex(blob: str) -> str | None:
    digits = re.sub(r"[ :]", "", blob)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _readable(bytes.fromhex(digits))
    except ValueError:
        return None


def _rot13(text: str) -> str | None:
    """The rot13 of ``text`` when it reads like English and ``text`` does not."""
    plain = _english_ratio(text)
    if plain >= 0.5:
        return None
    rotated = codecs.decode(text, "rot13")
    english = _english_ratio(rotated)
    return rotated if english >= 0.55 and english >= plain + 0.2 else None


def _decode_once(text: str, limit: int) -> list[str]:
    out: list[str] = []
    for m in _B64_RE.finditer(text):
        decoded = _base64(m.group(0))
        if decoded is not None:
            out.append(decoded)
            if len(out) >= limit:
                return out
    for m in _HEX_RE.finditer(text):
        decoded = _hex(m.group(0))
        if decoded is not None:
            out.append(decoded)
            if len(out) >= limit:
                return out
    if text.count("%") >= 3:
        for m in _URL_RE.finditer(text):
            decoded = unquote(m.group(0), errors="strict") if "%" in m.group(0) else ""
            if decoded and decoded != m.group(0) and _readable(decoded.encode("utf-8", "replace")) is not None:
                out.append(decoded)
                if len(out) >= limit:
                    return out
    # rot13: each line or sentence (a wrapper sentence in clear, the task rotated), then the whole turn.
    pieces = text.split("\n") if "\n" in text else re.split(r"(?<=[:?.!])\s+", text)
    for chunk in [*pieces[:8], text] if len(pieces) > 1 else [text]:
        decoded = _rot13(chunk)
        if decoded is not None:
            out.append(decoded)
            break
    return out[:limit]


def decoded_parts(text: str, *, max_chars: int = 8000, max_parts: int = 3, max_out: int = 600) -> list[str]:
    """Readable texts hidden in ``text`` by base64/base64url, hex, URL or rot13
    encoding (one more level of encoding inside those is decoded too), at most
    ``max_parts``, each at most ``max_out`` characters. Empty for ordinary text."""
    text = text[:max_chars]
    found: list[str] = []
    for decoded in _decode_once(text, max_parts):
        decoded = decoded[: max_out * 2]
        inner = _decode_once(decoded, 1)  # depth 2 at most
        found.append((inner[0] if inner else decoded)[:max_out])
        if len(found) >= max_parts:
            break
    return found
