"""Server-held conversations: the client may only append one user turn.

An endpoint that accepts whatever history the client sends is a general-purpose model:
an adapter can put any system prompt, any fabricated assistant turns and any tool
transcript in front of its question. With ``conversation: server`` on a route, the
gateway keeps the conversation itself (in the Store) and the client can only say *what
the user typed next* in a conversation it was given:

Wire (the client's side)::

    POST /api/chat                      # first turn: no id
    {"model": "…", "messages": [{"role": "user", "content": "Do you deliver?"}], "stream": true}
    -> 200 … Tokenward-Conversation: c1.AAAA….BBBB

    POST /api/chat                      # next turns: the id, in the header or the body
    Tokenward-Conversation: c1.AAAA….BBBB
    {"model": "…", "messages": [{"role": "user", "content": "And on Sundays?"}], "stream": true}

(``"conversation": "<id>"`` in the body works too. Anthropic routes use the same
``messages`` shape; OpenAI Responses routes send ``input`` as a string or one user
message.) Anything else is refused with a 400 ``bad_request`` that says what to do:
more than one message, a non-user role, ``system``/``instructions``, ``tools``/
``functions``, ``n > 1``, ``previous_response_id``, non-text content, a turn longer than
``max_user_chars``, or an id that is forged, for another route or owner, or expired.

The gateway side, as pure functions (the guard and the proxy run the Store ops):

1. :func:`check_request` -> :class:`ConversationProblem` (refuse) or
   :class:`ConversationTurn` (the new user text, and the verified id or None for a
   new conversation);
2. for a new conversation, :meth:`ConversationIds.issue` makes a signed id (no Store
   write: it is verified by its MAC, like a challenge); otherwise
   :func:`ops_to_load` (one ``Range``) goes into the request's batch and
   :func:`history_from` decodes its result (an empty history for an existing id means
   it expired: :func:`expired_problem`);
3. :func:`build_upstream_body` writes the body to forward: the route's own ``system``
   prompt (if configured), the stored turns and the new user turn, in the route's API
   shape, with the client's allowed options (model, stream, limits, temperature…);
4. after the response, :func:`ops_to_save` (one ``Append`` of the user+assistant pair,
   so concurrent requests can never interleave half-exchanges) with the assistant's
   text as streamed; the response carries the id in ``Tokenward-Conversation``.

Bounded: at most ``max_turns`` exchanges per conversation (older ones drop off), turns
of at most ``max_user_chars``/``max_assistant_chars``, the whole conversation expiring
``ttl`` seconds after its last exchange, and ids valid for ``max_age`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ..decision import Flavour
from ..facts import LLMCall
from ..proof.keys import KEY_ID_SIZE, KeyRing
from ..store.ops import Append, Op, Range

__all__ = [
    "HEADER",
    "ConversationIds",
    "ConversationProblem",
    "ConversationSettings",
    "ConversationTurn",
    "Exchange",
    "build_upstream_body",
    "check_request",
    "expired_problem",
    "history_from",
    "ops_to_load",
    "ops_to_save",
]

HEADER = "tokenward-conversation"  # request and response header (lower-case, as RequestFacts stores them)
_PREFIX = "c1."
_DOMAIN = b"tokenward/conversation/v1\x00"
_MAC_SIZE = 16
_NONCE_SIZE = 12
# payload: kid | issued_at (u64, s) | nonce | route tag (4) | owner tag (8, zeros when unbound)
_PAYLOAD = struct.Struct(f">{KEY_ID_SIZE}sQ{_NONCE_SIZE}s4s8s")
_NO_OWNER = b"\x00" * 8

# Client fields that may pass through (everything else is refused or rebuilt).
_PASS_FIELDS = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "temperature",
        "top_p",
        "user",
        "metadata",
        "store",
    }
)
_CONSUMED_FIELDS = frozenset({"messages", "input", "conversation"})
_REFUSED_FIELDS: dict[str, str] = {
    "system": "a system prompt",
    "instructions": "instructions",
    "tools": "tools",
    "functions": "functions",
    "tool_choice": "tool settings",
    "function_call": "tool settings",
    "parallel_tool_calls": "tool settings",
    "previous_response_id": "a previous response id",
    "prompt": "a prompt",
}


class ConversationSettings(BaseModel):
    """``routes[].conversation`` (``conversation: server`` is the same as ``{}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["server"] = "server"
    system: str | None = Field(None, max_length=20_000, description="the route's own system prompt, added upstream")
    max_turns: int = Field(20, ge=1, le=500, description="exchanges kept per conversation (older ones drop off)")
    ttl: float = Field(86_400, gt=0, le=30 * 86_400, description="seconds a conversation lives after its last turn")
    max_age: float = Field(7 * 86_400, gt=0, description="seconds a conversation id stays valid after it was issued")
    max_user_chars: int = Field(4000, ge=1, le=200_000, description="longest user turn accepted")
    max_assistant_chars: int = Field(16_000, ge=1, le=1_000_000, description="assistant text kept per turn")
    bind_owner: bool = Field(True, description="an id only works for the device/account it was issued to")
    extra_fields: tuple[str, ...] = Field((), description="more client fields to pass through unchanged")

    @classmethod
    def coerce(cls, value: Any) -> ConversationSettings | None:
        """Accept ``"server"``, ``"client"`` (None) or a mapping, for the policy field."""
        if value is None or value == "client":
            return None
        if value == "server":
            return cls()
        if isinstance(value, cls):
            return value
        return cls.model_validate(value)


@dataclass(frozen=True, slots=True)
class ConversationProblem:
    """A refusal: ``code`` is the pinned wire code, ``message`` tells the client what to do."""

    message: str
    code: str = "bad_request"
    status: int = 400


@dataclass(frozen=True, slots=True)
class ConversationTurn:
    """An accepted request: the user's new text, and the conversation it extends
    (``conversation`` None: start a new one, and issue an id for it)."""

    text: str
    conversation: str | None

    @property
    def new(self) -> bool:
        return self.conversation is None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One stored exchange: what the user said and what the assistant answered."""

    user: str
    assistant: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


def _tag(value: str, size: int) -> bytes:
    return hashlib.sha256(b"tokenward/conv-tag\x00" + value.encode()).digest()[:size]


class ConversationIds:
    """Issues and verifies conversation ids: ``c1.<payload>.<mac>`` (base64url).

    The payload binds the key id, the issue time, a random nonce, the route and
    (optionally) the owner; the MAC (HMAC-SHA-256 with the gateway's challenge key ring,
    under its own domain) is checked in constant time before any of it is read.
    ``now`` and ``random`` are injectable for tests.
    """

    def __init__(
        self,
        keys: KeyRing,
        *,
        now: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = secrets.token_bytes,
    ):
        self._keys = keys
        self._now = now
        self._random = random

    def issue(self, route: str, owner: str | None = None) -> str:
        key = self._keys.signing
        payload = _PAYLOAD.pack(
            key.kid,
            int(self._now()),
            self._random(_NONCE_SIZE),
            _tag(route, 4),
            _tag(owner, 8) if owner else _NO_OWNER,
        )
        mac = hmac.new(key.secret, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_SIZE]
        return f"{_PREFIX}{_b64(payload)}.{_b64(mac)}"

    def verify_untrusted(self, conv_id: str, route: str, owner: str | None, max_age: float) -> str | None:
        """The id's store key when ``conv_id`` is genuine, for ``route`` (and ``owner``,
        when it was bound to one) and not older than ``max_age``; else None."""
        if not isinstance(conv_id, str) or len(conv_id) > 200 or not conv_id.startswith(_PREFIX):
            return None
        parts = conv_id[len(_PREFIX) :].split(".")
        if len(parts) != 2:
            return None
        payload, mac = _unb64(parts[0]), _unb64(parts[1])
        if payload is None or mac is None or len(payload) != _PAYLOAD.size or len(mac) != _MAC_SIZE:
            return None
        key = self._keys.get(payload[:KEY_ID_SIZE])
        if key is None:
            return None
        expected = hmac.new(key.secret, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_SIZE]
        if not hmac.compare_digest(mac, expected):
            return None
        _, issued, _, route_tag, owner_tag = _PAYLOAD.unpack(payload)
        if not hmac.compare_digest(route_tag, _tag(route, 4)):
            return None
        if owner_tag != _NO_OWNER and (owner is None or not hmac.compare_digest(owner_tag, _tag(owner, 8))):
            return None
        age = self._now() - issued
        if age > max_age or age < -300:
            return None
        return store_key(conv_id)


def store_key(conv_id: str) -> str:
    """The Store key of a conversation (the payload part of its id; the MAC is not stored)."""
    return "conv:" + conv_id[len(_PREFIX) :].split(".", 1)[0]


# -- checking a request ----------------------------------------------------------------
_ONLY_ONE = (
    "This endpoint keeps the conversation itself: send only the new user message "
    "(one message with role user) and the conversation id you were given."
)
_BAD_ID = "Unknown or expired conversation: start a new one by sending your message without a conversation id."


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") not in ("text", "input_text"):
                return None
            text = part.get("text")
            if not isinstance(text, str):
                return None
            texts.append(text)
        return "\n".join(texts)
    return None


def _user_text(body: Mapping[str, Any]) -> str | ConversationProblem:
    messages = body.get("messages")
    if messages is None:
        inp = body.get("input")
        if isinstance(inp, str):
            return inp
        messages = inp
    if not isinstance(messages, list) or len(messages) != 1:
        return ConversationProblem(_ONLY_ONE)
    msg = messages[0]
    if not isinstance(msg, Mapping) or msg.get("role") != "user":
        return ConversationProblem(_ONLY_ONE)
    if set(msg) - {"role", "content", "type"}:
        return ConversationProblem("A message may only carry role and content here.")
    text = _text_of(msg.get("content"))
    if text is None:
        return ConversationProblem("Only text messages are accepted here.")
    return text


def check_request(
    call: LLMCall,
    cfg: ConversationSettings,
    ids: ConversationIds,
    *,
    route: str,
    header: str | None = None,
    owner: str | None = None,
) -> ConversationProblem | ConversationTurn:
    """Accept one user turn for a server-held conversation, or say why not.

    ``header``: the ``Tokenward-Conversation`` request header, if any (it wins over a
    ``conversation`` body field); ``owner``: the device or account the id is bound to
    (ignored when ``cfg.bind_owner`` is off).
    """
    body = call.body
    for name, what in _REFUSED_FIELDS.items():
        if name in body:
            return ConversationProblem(f"This endpoint does not accept {what}: {_ONLY_ONE}")
    n = body.get("n")
    if n is not None and n != 1:
        return ConversationProblem("This endpoint returns one answer per message (n must be 1).")
    allowed = _PASS_FIELDS | _CONSUMED_FIELDS | set(cfg.extra_fields)
    unknown = sorted(k for k in body if k not in allowed and k != "n")
    if unknown:
        return ConversationProblem(f"Unsupported field(s) for this endpoint: {', '.join(unknown[:5])}.")
    text = _user_text(body)
    if isinstance(text, ConversationProblem):
        return text
    if not text.strip():
        return ConversationProblem("The message is empty.")
    if len(text) > cfg.max_user_chars:
        return ConversationProblem(f"The message is too long (at most {cfg.max_user_chars} characters).")
    conv = header if header is not None else body.get("conversation")
    if conv is None or conv == "":
        return ConversationTurn(text, None)
    if not isinstance(conv, str):
        return ConversationProblem(_BAD_ID)
    bound = owner if cfg.bind_owner else None
    if ids.verify_untrusted(conv, route, bound, cfg.max_age) is None:
        return ConversationProblem(_BAD_ID)
    return ConversationTurn(text, conv)


def expired_problem() -> ConversationProblem:
    """For a genuine id whose history the Store no longer has."""
    return ConversationProblem(_BAD_ID)


# -- the Store side ----------------------------------------------------------------------
def ops_to_load(conv_id: str) -> list[Op]:
    """The ops that read a conversation's history (put them in the request's batch)."""
    return [Range(store_key(conv_id))]


def history_from(items: Sequence[bytes]) -> list[Exchange]:
    """Decode the result of :func:`ops_to_load` (corrupt items are skipped)."""
    out = []
    for raw in items:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("u"), str) and isinstance(data.get("a"), str):
            out.append(Exchange(data["u"], data["a"]))
    return out


def ops_to_save(conv_id: str, user_text: str, assistant_text: str, cfg: ConversationSettings) -> list[Op]:
    """The op that records one exchange after the response (nothing when the assistant
    said nothing: an exchange without an answer would break the turn order upstream)."""
    if not assistant_text.strip():
        return []
    item = orjson.dumps({"u": user_text[: cfg.max_user_chars], "a": assistant_text[: cfg.max_assistant_chars]})
    return [Append(store_key(conv_id), item, cfg.max_turns, cfg.ttl)]


# -- the body sent upstream ------------------------------------------------------------------
def _is_responses(call: LLMCall) -> bool:
    return "messages" not in call.body and "input" in call.body


def build_upstream_body(
    call: LLMCall, history: Sequence[Exchange], turn: ConversationTurn, cfg: ConversationSettings
) -> bytes:
    """The body to forward: the route's system prompt, the stored exchanges and the new
    user turn, in the call's API shape, with the client's pass-through options."""
    body = call.body
    keep = _PASS_FIELDS | set(cfg.extra_fields)
    out: dict[str, Any] = {k: v for k, v in body.items() if k in keep}
    if call.flavour is Flavour.ANTHROPIC:
        messages: list[dict[str, Any]] = []
        for ex in history:
            messages += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant}]
        messages.append({"role": "user", "content": turn.text})
        if cfg.system:
            out["system"] = cfg.system
        out["messages"] = messages
    elif _is_responses(call):
        items: list[dict[str, Any]] = []
        for ex in history:
            items += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant}]
        items.append({"role": "user", "content": turn.text})
        if cfg.system:
            out["instructions"] = cfg.system
        out["input"] = items
    else:
        chat: list[dict[str, Any]] = [{"role": "system", "content": cfg.system}] if cfg.system else []
        for ex in history:
            chat += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant}]
        chat.append({"role": "user", "content": turn.text})
        out["messages"] = chat
    return orjson.dumps(out)
