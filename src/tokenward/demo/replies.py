"""The demo LLM's text: the token rule and the deterministic replies.

A reply depends only on the prompt (the last user message), and every text is counted by
one documented rule (:func:`count_tokens`), so the gateway can check its own accounting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REPLY_MIN_WORDS = 40
TOPIC_MAX_WORDS = 12

# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------

# One token is a run of word characters or one other non-space character:
# "Hello, world!" is 4 tokens. Whitespace is never a token.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# The same tokens with the whitespace before each, so that pieces join back into the text.
_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")


def count_tokens(text: str) -> int:
    """Count tokens by the demo rule: each run of word characters (``\\w+``) is one
    token, and so is each other non-whitespace character."""
    return len(_TOKEN_RE.findall(text))


def _pieces(text: str) -> list[str]:
    """Split ``text`` into one piece per token, each keeping its leading whitespace."""
    return _PIECE_RE.findall(text)


# --------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------

_FILLER = (
    "Here is a demo answer from the tokenward fake upstream.",
    "It costs nothing, knows nothing, and streams its words one or two at a time.",
    "A real model would charge for every one of these tokens,",
    "which is why the gateway asks each request for fresh proof of work.",
)


def reply_text(prompt: str, *, min_tokens: int = 0) -> str:
    """The assistant's answer to ``prompt`` (the last user message).

    ``You asked about "<first 12 words of the prompt>".`` followed by fixed filler
    sentences until the reply has at least 40 words and at least ``min_tokens`` tokens.
    """
    words = prompt.split()
    topic = " ".join(words[:TOPIC_MAX_WORDS]) + (" ..." if len(words) > TOPIC_MAX_WORDS else "")
    parts = [f'You asked about "{topic or "nothing"}".']
    n_words = len(parts[0].split())
    n_tokens = count_tokens(parts[0])
    i = 0
    while n_words < REPLY_MIN_WORDS or n_tokens < min_tokens:
        sentence = _FILLER[i % len(_FILLER)]
        parts.append(sentence)
        n_words += len(sentence.split())
        n_tokens += count_tokens(sentence)
        i += 1
    text = " ".join(parts)
    return text if text.endswith(".") else text.rstrip(",") + "."


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply cut to the request's token limit, as pieces of one token each."""

    pieces: tuple[str, ...]
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces)

    def deltas(self, chunks: int | None) -> list[tuple[str, int]]:
        """``(text, tokens)`` per streamed delta: two tokens each, or ``chunks`` deltas."""
        n = len(self.pieces)
        if chunks is None:
            sizes = [min(2, n - i) for i in range(0, n, 2)]
        else:
            count = max(1, min(chunks, n))
            base, extra = divmod(n, count)
            sizes = [base + (1 if i < extra else 0) for i in range(count)]
        out: list[tuple[str, int]] = []
        start = 0
        for size in sizes:
            out.append(("".join(self.pieces[start : start + size]), size))
            start += size
        return out


def make_reply(prompt: str, max_tokens: int | None, chunks: int | None) -> Reply:
    pieces = _pieces(reply_text(prompt, min_tokens=chunks or 0))
    if max_tokens is not None and len(pieces) > max_tokens:
        return Reply(tuple(pieces[:max_tokens]), truncated=True)
    return Reply(tuple(pieces), truncated=False)
