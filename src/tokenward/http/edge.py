"""The edge: the first thing every HTTP request meets, in the proxy and the middleware.

It decides once what the request *is* before anything judges it: its framing is sound
(``framing_problem``), its path has one reading (``paths.canonical_path``) and its query
string can be passed on verbatim. A request that fails is refused with ``400
bad_request`` in the dialect of the route it most likely meant, and the refusal is logged
like any other decision. A request that passes continues with a scope whose ``path`` is
what routes are matched on and whose ``raw_path`` is exactly what the upstream (or the
wrapped app) receives; with ``ambiguous_paths: canonicalize`` both are the resolved path.
"""

from __future__ import annotations

from urllib.parse import quote

from ..decision import Action, Decision, Flavour
from ..guard import Guard, RequestOutcome, new_request_id
from ..policy import Policy
from .common import Scope, Send, send_refusal
from .gate import build_facts
from .paths import CanonicalPath, canonical_path, canonical_query

__all__ = ["admit", "framing_problem"]

# What a server that gives no raw_path has decoded must be re-encoded to be checked; ";"
# and "%" stay encoded so they are seen (and refused) as such.
_SAFE = "/:@!$&'()*+,=-._~"


async def admit(scope: Scope, send: Send, guard: Guard) -> Scope | None:
    """The scope to continue with, or None when the request was refused (and logged)."""
    policy = guard.policy
    refusal = framing_problem(scope, policy)
    if refusal is None:
        raw = scope.get("raw_path") or quote(scope["path"], safe=_SAFE).encode()
        canon = canonical_path(raw, canonicalize=policy.ambiguous_paths == "canonicalize")
        if isinstance(canon, str):
            refusal = _MALFORMED, canon
        else:
            problem = canonical_query(scope.get("query_string", b""))
            if problem is None:
                if canon.raw != raw or canon.path != scope["path"]:
                    scope = {**scope, "path": canon.path, "raw_path": canon.raw}
                return scope
            refusal = _MALFORMED, problem
    await _refuse(scope, send, guard, *refusal)
    return None


_MALFORMED = "bad_request"
_NAMES = {
    "bad_request": "request/malformed",
    "headers_too_large": "request/too_large",
    "uri_too_long": "request/too_large",
}


def framing_problem(scope: Scope, policy: Policy) -> tuple[str, str] | None:
    """``(code, message)`` when the request's framing is ambiguous or over a limit; None
    when it is sound.

    The server (granian) already refuses malformed or conflicting Content-Length values,
    obs-folded and control-character headers, duplicate Transfer-Encoding headers, more
    than 100 headers (431) and request targets over 64 KiB (414). What it lets through
    and is refused here: a body framed two ways (Content-Length *and* Transfer-Encoding:
    RFC 9112 6.3 says to treat that as an error), transfer codings other than one
    ``chunked`` (the body would be judged before a decoding that never happens), more
    than one Content-Length or Host, and headers or targets over the policy's limits. The
    upstream never sees the client's framing either way: the body is forwarded with a
    Content-Length of its own.
    """
    size = lengths = hosts = 0
    coding: bytes | None = None
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4  # "name: value\r\n"
        if name == b"content-length":
            lengths += 1
        elif name == b"transfer-encoding":
            coding = value
        elif name == b"host":
            hosts += 1
    if size > policy.max_header_bytes:
        limit = policy.max_header_bytes
        return "headers_too_large", f"The request headers are larger than this gateway accepts ({limit} bytes)."
    target = len(scope.get("raw_path") or scope["path"]) + len(scope.get("query_string", b""))
    if target > policy.max_url_bytes:
        limit = policy.max_url_bytes
        return "uri_too_long", f"The request target is longer than this gateway accepts ({limit} bytes)."
    if coding is not None:
        if lengths:
            return _MALFORMED, "A request must not carry both Content-Length and Transfer-Encoding."
        if coding.strip().lower() != b"chunked":
            return _MALFORMED, "The only Transfer-Encoding accepted is chunked."
    if lengths > 1:
        return _MALFORMED, "A request must carry one Content-Length header."
    if hosts > 1:
        return _MALFORMED, "A request must carry one Host header."
    return None


async def _refuse(scope: Scope, send: Send, guard: Guard, code: str, problem: str) -> None:
    request_id = new_request_id()
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    # The log gets the path as sent, escaped: it may hold anything a client typed.
    facts = build_facts(
        {**scope, "path": raw.decode("ascii", "backslashreplace")},
        b"", None, guard.trusted, request_id, guard.clock(),
    )  # fmt: skip
    name = _NAMES[code]
    decision = Decision(Action.INVALID, name, (name,), code=code, message=problem)
    outcome = RequestOutcome()
    outcome.status = decision.status
    # Logged (journaled) before it is sent, like every refusal. The connection closes
    # after the answer: the rest of it (a body framed two ways, a request that may be
    # longer than it says) cannot be trusted to start a request.
    await guard.finish(facts, decision, outcome, decision_ms=0.0, total_ms=0.0)
    await send_refusal(send, _flavour(guard.policy, raw), decision, request_id, close=True)


def _flavour(policy: Policy, raw: bytes) -> Flavour:
    """The dialect of the route the client most likely meant, so its SDK shows the error."""
    resolved = canonical_path(raw, canonicalize=True)
    if isinstance(resolved, CanonicalPath):
        route = policy.route_for(resolved.path)
        if route is not None:
            return route.api
    return Flavour.CUSTOM
