"""What the guard decides, why, and how a refusal looks on the wire (docs/protocol.md §3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import lru_cache
from typing import Any

import orjson

__all__ = [
    "CODE_STATUS",
    "JSON_HEADERS",
    "PROOF_AUTHENTICATE",
    "Action",
    "Decision",
    "Flavour",
    "FollowUp",
    "Signal",
    "refusal_body",
    "refusal_template",
]


class Action(StrEnum):
    ALLOW = "allow"
    CHALLENGE = "challenge"
    THROTTLE = "throttle"
    BLOCK = "block"
    DEGRADE = "degrade"
    # The request itself was malformed or over a limit (bad JSON, a body too large or too
    # slow, compressed, ambiguous framing): refused before any judgement of the client.
    INVALID = "invalid"

    @property
    def forwards(self) -> bool:
        return self in (Action.ALLOW, Action.DEGRADE)


class Flavour(StrEnum):
    """The API dialect of a route: decides the shape of refusal bodies."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    CUSTOM = "custom"  # a site's own endpoint; refusals use the OpenAI shape


@dataclass(frozen=True, slots=True)
class Signal:
    """One piece of evidence about a request.

    ``name`` is namespaced (``proof/replayed``, ``client/sdk-header``); ``score`` is the
    weight it adds to the request's risk; ``evidence`` is what the operator sees in the log.
    """

    name: str
    score: float
    evidence: Mapping[str, Any] = field(default_factory=dict)


# Wire codes (pinned) and the HTTP status each one travels with.
CODE_STATUS: dict[str, int] = {
    "proof_required": 401,
    "proof_invalid": 401,
    "proof_expired": 401,
    "proof_replayed": 401,
    "body_mismatch": 401,
    "route_mismatch": 401,
    "challenge": 401,
    "throttled": 429,
    "budget_exhausted": 429,
    "blocked": 403,
    "bad_request": 400,
    # Not per-request refusals but still well-formed tokenward errors:
    "payload_too_large": 413,
    "request_timeout": 408,
    "uri_too_long": 414,
    "headers_too_large": 431,
    "unsupported_encoding": 415,
    "not_found": 404,
    "unauthorized": 401,  # /.tokenward/metrics without the admin token
    "method_not_allowed": 405,
    "store_unavailable": 503,
    "internal_error": 500,
    "spend_limit": 503,
    # Signed requests (docs/signed-requests.md):
    "signature_required": 401,
    "signature_invalid": 401,
    "signature_expired": 401,
    "signature_replayed": 401,
    "digest_mismatch": 401,
    "unknown_key": 401,
    "key_revoked": 401,
    "route_forbidden": 403,
    "upstream_timeout": 504,
    "upstream_unavailable": 502,
}


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The work a decision leaves for the HTTP layer and for after the response: the call
    to forward, the server-held conversation to continue, and what to settle in the store."""

    settle: tuple[Any, ...] = ()  # store operations to run once the response is over
    reservation: str | None = None  # the budget hold to commit at the exact cost
    reserved_usd: float = 0.0
    model: str | None = None  # the model the call is priced as
    call: Any = None  # money.call.CallPlan: what to send upstream and how to read its usage
    conversation: Any = None  # (id, user text, upstream body) of a server-held conversation
    account: str | None = None  # the account the request was judged as (for the log)


NO_FOLLOW_UP = FollowUp()


@dataclass(frozen=True, slots=True)
class Decision:
    """The guard's verdict on one request.

    ``name`` is the namespaced rule that settled it (``proof/ok``, ``proof/replayed``,
    ``route/unprotected``); it goes to the log and to metric labels. ``code`` and
    ``message`` are what a refused client is told; ``reasons`` lists every signal name
    that contributed, for the operator. In shadow mode ``action`` is what would have been
    done and ``shadow`` is true: the request is forwarded anyway.
    """

    action: Action
    name: str
    reasons: tuple[str, ...] = ()
    signals: tuple[Signal, ...] = ()
    code: str | None = None
    message: str = ""
    retry_after: int | None = None
    challenge: Mapping[str, Any] | None = None
    shadow: bool = False
    proof: Mapping[str, Any] | None = None
    risk: Mapping[str, Any] | None = None  # score, contributions, rule, threshold (for the log)
    degrade: Mapping[str, Any] | None = None  # {"max_tokens": int | None, "model": str | None}
    work: FollowUp = NO_FOLLOW_UP  # what the gateway still has to do for this request

    @property
    def forwards(self) -> bool:
        return self.shadow or self.action.forwards

    def evolve(self, **changes: Any) -> Decision:
        """A copy with some fields changed. (``dataclasses.replace`` re-runs the whole
        constructor and field introspection: several times slower on the request path.)"""
        new = object.__new__(Decision)
        for name in _DECISION_FIELDS:
            object.__setattr__(new, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError(f"Decision has no field(s) {', '.join(changes)}")
        return new

    @property
    def status(self) -> int:
        if self.forwards or self.code is None:
            return 200
        return CODE_STATUS.get(self.code, 403)

    @property
    def header(self) -> str:
        """Value of the ``Tokenward-Decision`` header: the action actually taken."""
        return Action.ALLOW.value if self.shadow else self.action.value

    @property
    def device_unknown(self) -> bool:
        """The request was signed by a device key this gateway does not hold (never
        registered, or forgotten): the client should register it again."""
        return any(s.name == "device/unknown" for s in self.signals)


_DECISION_FIELDS = tuple(f.name for f in fields(Decision))


# Every refusal's content headers, and the challenge a 401 announces (docs/protocol.md §3).
JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
PROOF_AUTHENTICATE = (b"www-authenticate", b'Tokenward realm="tokenward", version="1"')


def refusal_body(
    flavour: Flavour,
    code: str,
    message: str,
    challenge: Mapping[str, Any] | None = None,
) -> bytes:
    """A refusal in the route's API dialect, so standard clients surface it properly."""
    inner: dict[str, Any]
    if flavour is Flavour.ANTHROPIC:
        inner = {"type": code, "message": message}
        if challenge is not None:
            inner["challenge"] = dict(challenge)
        return orjson.dumps({"type": "error", "error": inner})
    inner = {"type": "tokenward", "code": code, "message": message}
    if challenge is not None:
        inner["challenge"] = dict(challenge)
    return orjson.dumps({"error": inner})


_SLOT = {"\x00": 0}  # stands where the challenge goes while a template is rendered


@lru_cache(maxsize=256)
def refusal_template(flavour: Flavour, code: str, message: str) -> tuple[bytes, bytes]:
    """``refusal_body(flavour, code, message, challenge)`` split around the challenge's
    JSON: ``head + challenge_json + tail`` is the same bytes, rendered once per kind of
    refusal instead of per request (the refusals of requests without evidence,
    guard/unproved.py). Codes and messages are the gateway's own: a bounded set."""
    body = refusal_body(flavour, code, message, _SLOT)
    slot = orjson.dumps(_SLOT)
    assert body.count(slot) == 1  # our own sentences never contain a NUL
    head, _, tail = body.partition(slot)
    return head, tail
