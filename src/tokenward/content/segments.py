"""A user turn cut into what the purpose scorer's model reads: word windows of a long
turn, and the sentences and clauses that could carry a task of their own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Unit", "clauses", "norm", "windows"]

_PUNCT = re.compile(r"[\W_]+")


def norm(text: str) -> str:
    return _PUNCT.sub(" ", text.lower()).strip()


def windows(text: str, width: int) -> list[str]:
    words = text.split()
    if len(words) <= width + width // 4:
        return [text]
    out = [" ".join(words[i : i + width]) for i in range(0, len(words), width)]
    if len(out) > 1 and len(out[-1].split()) < width // 3:
        tail = out.pop()
        out[-1] = out[-1] + " " + tail
    return out


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?。！？])\s+|;\s*|:\s+|,\s*(?=(?:but|however|also|then|now|so)\b)", re.I)
_LEAD_SPLIT = re.compile(r",\s*")


def clauses(text: str, max_words: int) -> list[str]:
    """The sentences and clauses of a turn that could carry a task of their own: split
    at sentence ends, semicolons, colons and ", but/also/then/now/so"; a sentence
    opened by short comma-separated fragments ("Hi team, before I forget, ...") also
    without them. Parts of fewer than 3 words, or longer than ``max_words``, are left to
    the whole turn and its windows."""
    out: list[str] = []
    for raw in _SENTENCE_SPLIT.split(text):
        part = raw.strip(" \t,.-")
        if not part:
            continue
        n = len(part.split())
        if 3 <= n <= max_words:
            out.append(part)
        pieces = _LEAD_SPLIT.split(part)
        if len(pieces) > 1 and len(pieces[0].split()) <= 5:
            lead = 0
            while lead < len(pieces) - 1 and len(pieces[lead].split()) <= 5:
                lead += 1
            tail = ", ".join(pieces[lead:]).strip()
            if tail and 3 <= len(tail.split()) <= max_words and tail != part:
                out.append(tail)
    return list(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class Unit:
    text: str
    kind: Literal["window", "part", "decoded"]
