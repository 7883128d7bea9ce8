"""The protected-request flow shared by the reverse proxy and the middleware.

Read the body once (capped), turn the request into RequestFacts once, ask the guard,
then either refuse in the route's API dialect or hand the request to ``forward`` —
the upstream call for the proxy, the wrapped app for the middleware. Whatever happens,
the decision is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from ..decision import Action, Decision
from ..facts import RequestFacts, TrustedProxies, parse_call
from ..guard import Guard, RequestOutcome, new_request_id
from ..guard.unproved import Lacking, answer_unproved, lacking_work
from ..policy import RouteSettings
from ..proof import ProofClaims
from .common import (
    BodyRefused,
    Message,
    Receive,
    Scope,
    Send,
    decision_headers,
    read_body,
    send_json,
    send_refusal,
)
from .lane import Lane

__all__ = ["Forward", "Gate", "build_facts"]

log = logging.getLogger("tokenward.gate")

# forward(scope, receive, send, facts, decision, response_headers, outcome)
Forward = Callable[
    [Scope, Receive, Send, RequestFacts, Decision, list[tuple[bytes, bytes]], RequestOutcome],
    Awaitable[None],
]


def build_facts(
    scope: Scope,
    body: bytes,
    route: RouteSettings | None,
    trusted: TrustedProxies,
    request_id: str,
    now: float,
    proven: ProofClaims | None = None,
) -> RequestFacts:
    raw = scope["headers"]
    headers: dict[str, str] = {}
    for k, v in raw:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    call = problem = None
    # A protected route's body is read as JSON whatever its Content-Type says: upstreams
    # often parse JSON they were told was text, and a body the gateway did not read would
    # skip content checks, conversations and budgets (docs/policy.md, "Routes").
    if route is not None and route.protect:
        parsed = parse_call(route.api, body)
        if isinstance(parsed, str):
            problem = parsed
        else:
            call = parsed
    return RequestFacts(
        request_id=request_id,
        received_at=now,
        method=scope["method"],
        path=scope["path"],
        client_ip=trusted.client_ip(peer, headers.get("x-forwarded-for")),
        headers=headers,
        raw_headers=raw,
        body=body,
        route=route,
        call=call,
        problem=problem,
        via_proxy=trusted.trusted(peer),
        scheme=scope.get("scheme", "http"),
        raw_path=raw_path.decode("latin-1") if (raw_path := scope.get("raw_path")) else None,
        query=scope.get("query_string", b"").decode("latin-1"),
        proven=proven,
    )


class Gate:
    def __init__(self, guard: Guard):
        self.guard = guard
        self.lane = Lane()  # where refusals of requests without work wait their turn (lane.py)

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, route: RouteSettings, forward: Forward
    ) -> None:
        started = time.perf_counter()
        guard = self.guard
        request_id = new_request_id()
        now = guard.clock()
        outcome = RequestOutcome()
        decided = started
        cap = guard.policy.body_cap_for(route)
        decision: Decision | None
        proven: ProofClaims | None = None  # verified by the check for work: not verified again
        close = finished = False
        try:
            body = await read_body(scope, receive, cap, guard.policy.body_timeout)
        except BodyRefused as exc:
            body, decision, close = b"", _unreadable(exc), True
            outcome.error = exc.message
        else:
            decision = _encoded(scope)
            if decision is None:
                answered, proven = await self._refused_unproved(scope, send, route, body, request_id, now, started)
                if answered:
                    return
        facts = build_facts(scope, body, route, guard.trusted, request_id, now, proven)
        try:
            if decision is None:
                try:
                    decision = await guard.check(facts)
                except Exception as exc:  # a bug must not leave a request unanswered or unlogged
                    outcome.error = f"{type(exc).__name__}: {exc}"
                    log.exception("request %s could not be judged", request_id)
                    decision = _GATEWAY_ERROR
            decided = time.perf_counter()
            if decision.forwards:
                if getattr(guard.log, "journaled", False):
                    send = _journal_first(send, guard, facts, decision, outcome, (decided - started) * 1000, started)
                await forward(scope, receive, send, facts, decision, decision_headers(request_id, decision), outcome)
            elif decision.code is not None:
                # A refusal is logged (journaled) and settled before it is sent: one record,
                # on disk before the client hears it (docs/operations.md, "Durability").
                outcome.status = decision.status
                finished = True
                ms = (decided - started) * 1000
                await guard.finish(facts, decision, outcome, decision_ms=ms, total_ms=ms)
                await send_refusal(send, route.api, decision, request_id, close=close)
        except Exception as exc:
            outcome.error = outcome.error or f"{type(exc).__name__}: {exc}"
            log.exception("request %s failed", request_id)
            raise
        finally:
            if decision is None:
                decision = _GATEWAY_ERROR
            if not finished:
                elapsed = time.perf_counter()
                if outcome.first_byte_ms is not None:  # measured from the upstream call
                    outcome.first_byte_ms += (decided - started) * 1000
                await guard.finish(
                    facts, decision, outcome,
                    decision_ms=(decided - started) * 1000, total_ms=(elapsed - started) * 1000,
                )  # fmt: skip

    async def _refused_unproved(
        self, scope: Scope, send: Send, route: RouteSettings, body: bytes, request_id: str, now: float,
        started: float,
    ) -> tuple[bool, ProofClaims | None]:  # fmt: skip
        """Answer a request that brings no work (guard/unproved.py), its refusal made in
        the refusal lane (lane.py): (True, None) when it was; else (False, the proof's
        claims when it verified here). A bug there leaves the request to the pipeline."""
        guard = self.guard
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        try:
            lacking = lacking_work(guard, route, scope["headers"], body, now)
            if not isinstance(lacking, Lacking):
                return False, lacking
            status, headers, content = await self.lane.run(
                lambda: answer_unproved(
                    guard, route, lacking, scope["method"], scope["path"], peer, len(body), request_id, now, started
                )
            )
        except Exception:
            log.exception("request %s: the refusal of a request without work failed", request_id)
            return False, None
        await send_json(send, status, content, headers, complete=True)
        return True, None


def _journal_first(
    send: Send, guard: Guard, facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
    decision_ms: float, started: float,
) -> Send:  # fmt: skip
    """Journal the decision just before its response starts, so that a gateway killed
    after answering still logs it (docs/operations.md, "Durability of the decision log").
    The record made when the request ends (guard.finish) supersedes this one."""
    ahead = guard.log.ahead  # type: ignore[union-attr]

    async def journaled(message: Message) -> None:
        if message["type"] == "http.response.start":
            outcome.status = outcome.status or message["status"]
            with ahead():
                guard.record(facts, decision, outcome, decision_ms, (time.perf_counter() - started) * 1000)
        await send(message)

    return journaled


# Fail closed, in the protocol's shape, without a word about the cause (that is logged).
_GATEWAY_ERROR = Decision(
    Action.BLOCK, "gateway/error", ("gateway/error",), code="internal_error",
    message="The gateway could not judge this request; it was not forwarded. Try again later.",
)  # fmt: skip


_UNREADABLE = {  # why a body could not be read -> the decision's name
    "payload_too_large": "request/too_large",
    "request_timeout": "request/slow",
    "bad_request": "request/abandoned",  # cut short, or a chunked encoding the server could not parse
}


def _unreadable(exc: BodyRefused) -> Decision:
    name = _UNREADABLE[exc.code]
    return Decision(Action.INVALID, name, (name,), code=exc.code, message=exc.message)


def _encoded(scope: Scope) -> Decision | None:
    """A compressed request body would be proved, hashed and judged as bytes the upstream
    decodes into something else: refused (docs/protocol.md, "Refusals")."""
    for name, value in scope["headers"]:
        if name == b"content-encoding" and any(c.strip().lower() not in (b"", b"identity") for c in value.split(b",")):
            break
    else:
        return None
    return Decision(
        Action.INVALID, "request/encoded", ("request/encoded",), code="unsupported_encoding",
        message="Request bodies must not be compressed (Content-Encoding) on this endpoint.",
    )  # fmt: skip
