"""RequestFacts: everything the guard may look at, built once per request, immutable."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .decision import Flavour

if TYPE_CHECKING:  # the policy's signal settings import this module
    from .policy import RouteSettings
    from .proof import ProofClaims

__all__ = ["LLMCall", "RequestFacts", "TrustedProxies", "json_depth", "limits_problem", "message_count", "parse_call"]

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class LLMCall:
    """The parts of an LLM API call the guard reasons about (read-only view of the body)."""

    flavour: Flavour
    model: str | None
    stream: bool
    max_tokens: int | None
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    request_id: str
    received_at: float
    method: str
    path: str
    client_ip: str
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "
    raw_headers: Sequence[tuple[bytes, bytes]]  # as received, in order
    body: bytes
    route: RouteSettings | None
    call: LLMCall | None = None
    problem: str | None = None  # why the request cannot be understood (-> bad_request)
    via_proxy: bool = False  # the TCP peer is a trusted proxy: headers an edge sets can be believed
    scheme: str = "http"  # as the server saw the connection
    raw_path: str | None = None  # the path as sent, still percent-encoded (signatures cover it)
    query: str = ""
    # The proof, already verified over these very headers and body at ``received_at`` by
    # the gate's check for work (guard/unproved.py): the pipeline does not verify it twice.
    proven: ProofClaims | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class TrustedProxies:
    """Resolves the client address, believing X-Forwarded-For only from configured CIDRs."""

    def __init__(self, cidrs: Sequence[str]):
        self._nets: tuple[_IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)

    def trusted(self, ip: str) -> bool:
        if not self._nets:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self._nets)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """Walk X-Forwarded-For from the right, skipping trusted hops (RFC 7239 logic)."""
        if forwarded_for is None or not self.trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a garbled chain is not evidence of anything: use the peer
            if not self.trusted(hop):
                return hop
        return hops[0] if hops else peer


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def parse_call(flavour: Flavour, body: bytes) -> LLMCall | str:
    """Parse an API call body; returns a problem sentence when it is not one.

    Any JSON object is a call: every field is read later by code that accepts any JSON
    value in it. How deep it nests and how many messages it carries are judged by the
    guard against the policy (:func:`limits_problem`), once the request proved its work."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "The request body is not valid JSON."
    if not isinstance(data, dict):
        return "The request body must be a JSON object."
    model = data.get("model")
    max_tokens = _int_or_none(data.get("max_tokens"))
    if max_tokens is None:
        max_tokens = _int_or_none(data.get("max_completion_tokens")) or _int_or_none(data.get("max_output_tokens"))
    return LLMCall(
        flavour=flavour,
        model=model if isinstance(model, str) else None,
        stream=data.get("stream") is True,
        max_tokens=max_tokens,
        body=data,
    )


_CONTAINERS = (dict, list)


def json_depth(value: Any, ceiling: int) -> int:
    """How deeply ``value`` (parsed JSON) nests: 0 for a scalar, 1 for a flat object or
    array. Stops counting past ``ceiling`` (then returns ``ceiling + 1``). Level by level,
    without recursion, so no body can exhaust the interpreter's stack here."""
    depth = 0
    level = [value] if type(value) in _CONTAINERS else []
    while level:
        depth += 1
        if depth > ceiling:
            return depth
        deeper: list[Any] = []
        for container in level:
            for item in container.values() if type(container) is dict else container:
                t = type(item)
                if t is dict or t is list:
                    deeper.append(item)
        level = deeper
    return depth


def message_count(body: Mapping[str, Any]) -> int:
    """The messages a call carries: ``messages`` (chat, Anthropic, custom) or, without
    it, the items of a Responses-style ``input`` list. (Embeddings' and completions'
    lists of inputs and token ids are not messages: the body size bounds them.)"""
    messages = body.get("messages")
    if isinstance(messages, list):
        return len(messages)
    items = body.get("input")
    if isinstance(items, list):
        return sum(1 for item in items if isinstance(item, dict))
    return 0


def limits_problem(call: LLMCall, *, max_depth: int, max_messages: int) -> str | None:
    """Why a call's body is beyond the policy's limits (a sentence for the client), or None."""
    depth = json_depth(call.body, max_depth)
    if depth > max_depth:
        return f"The request body nests JSON deeper than this endpoint accepts (at most {max_depth} levels)."
    count = message_count(call.body)
    if count > max_messages:
        return f"The request has {count} messages; this endpoint accepts at most {max_messages} in one request."
    return None
