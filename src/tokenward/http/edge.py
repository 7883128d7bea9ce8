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
from .common import Scope, Send, framing_problem, send_refusal
from .gate import build_facts
from .paths import CanonicalPath, canonical_path, canonical_query

__all__ = ["admit"]

# What a server that gives no raw_path has decoded must be re-encoded to be checked; ";"
# and "%" stay encoded so they are seen (and refused) as such.
_SAFE = "/:@!$&'()*+,=-._~"


async def admit(scope: Scope, send: Send, guard: Guard) -> Scope | None:
    """The scope to continue with, or None when the request was refused (and logged)."""
    policy = guard.policy
    problem = framing_problem(scope)
    if problem is None:
        raw = scope.get("raw_path") or quote(scope["path"], safe=_SAFE).encode()
        canon = canonical_path(raw, canonicalize=policy.ambiguous_paths == "canonicalize")
        if isinstance(canon, str):
            problem = canon
        else:
            problem = canonical_query(scope.get("query_string", b""))
            if problem is None:
                if canon.raw != raw or canon.path != scope["path"]:
                    scope = {**scope, "path": canon.path, "raw_path": canon.raw}
                return scope
    await _refuse(scope, send, guard, problem)
    return None


async def _refuse(scope: Scope, send: Send, guard: Guard, problem: str) -> None:
    request_id = new_request_id()
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    # The log gets the path as sent, escaped: it may hold anything a client typed.
    facts = build_facts(
        {**scope, "path": raw.decode("ascii", "backslashreplace")},
        b"", None, guard.trusted, request_id, guard.clock(),
    )  # fmt: skip
    decision = Decision(Action.BLOCK, "request/malformed", ("request/malformed",), code="bad_request", message=problem)
    outcome = RequestOutcome()
    try:
        outcome.status = await send_refusal(send, _flavour(guard.policy, raw), decision, request_id)
    finally:
        await guard.finish(facts, decision, outcome, decision_ms=0.0, total_ms=0.0)


def _flavour(policy: Policy, raw: bytes) -> Flavour:
    """The dialect of the route the client most likely meant, so its SDK shows the error."""
    resolved = canonical_path(raw, canonicalize=True)
    if isinstance(resolved, CanonicalPath):
        route = policy.route_for(resolved.path)
        if route is not None:
            return route.api
    return Flavour.CUSTOM
