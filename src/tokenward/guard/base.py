"""What every stage of the guard shares: request ids, the outcome record the HTTP layer
fills in, the lifetimes of single-use marks, and the sentences refusals carry."""

from __future__ import annotations

import secrets

from ..money.usage import Usage

__all__ = ["CONSUME_GRACE", "DEVICE_ROUTE", "INF", "INFLIGHT_TTL", "MESSAGES", "RequestOutcome", "new_request_id"]

DEVICE_ROUTE = "/.tokenward/device"

# Consumed challenges are remembered a little past their expiry, so clocks that differ
# slightly between gateway instances cannot reopen a window for replay.
CONSUME_GRACE = 5.0
INFLIGHT_TTL = 600.0
INF = float("inf")

# Refusal sentences: true and useful for a person, silent about which signal fired
# (the operator sees every signal in the decision log).
MESSAGES = {
    "proof_required": "This endpoint needs a fresh proof for every request; solve the "
    "attached challenge and send it in the Tokenward-Proof header.",
    "proof_replayed": "This proof was already used; every request needs a fresh one.",
    "challenge": "A harder proof is needed for this request; solve the attached challenge.",
    "throttled": "Too many requests from this client right now; retry after the indicated time.",
    "blocked": "This request was refused.",
    "automated": "This request was refused. If you are a person, type your message again and send it.",
    "store_unavailable": "The gateway cannot verify requests right now; try again shortly.",
    "budget_exhausted": "The spending budget for this client is used up for now; retry after the indicated time.",
    "spend_limit": "This service is over its spending limit right now; retry after the indicated time.",
}


def new_request_id() -> str:
    return secrets.token_hex(12)


class RequestOutcome:
    """What happened after the decision, filled in by the HTTP layer for the log."""

    __slots__ = ("error", "first_byte_ms", "model", "status", "text", "upstream_ms", "upstream_status", "usage")

    def __init__(self) -> None:
        self.status = 0
        self.upstream_status: int | None = None
        self.error: str | None = None
        self.usage: Usage | None = None  # what the upstream call consumed, when it was made
        self.model: str | None = None  # the model the call was sent to (after a degrade)
        self.text: str | None = None  # what the upstream generated (server-held conversations)
        self.upstream_ms: float | None = None  # from sending the call upstream to its response headers
        self.first_byte_ms: float | None = None  # streamed answers: from the request to the first byte
