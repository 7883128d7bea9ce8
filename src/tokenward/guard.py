"""The pipeline (DESIGN.md §2): every protected request is judged on its own evidence.

A request first has to make sense (a parsable API call). Then its proof is checked: a
challenge this server signed, unexpired, for this route, with work done over exactly
these body bytes, and used for the first time — consumed atomically in the Store. The
proof and every other signal family turn into a list of signals; the signals decide the
action. In shadow mode the decision is logged but the request goes through. The guard
does no I/O beyond the Store and the decision log.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .decision import Action, Decision, Signal
from .facts import RequestFacts
from .log import DecisionLog, DecisionRecord
from .policy import Mode, Policy, RouteSettings
from .proof import Challenge, KeyRing, ProofFailure, issue_challenge, verify_proof
from .signals import ProofOutcome, proof_signals
from .store import Store, StoreUnavailable

__all__ = ["Guard", "RequestOutcome", "new_request_id"]

# Consumed challenges are remembered a little past their expiry, so clocks that differ
# slightly between gateway instances cannot reopen a window for replay.
_CONSUME_GRACE = 5.0

# Refusal sentences: true and useful for a person, silent about which check fired
# beyond what the pinned wire code already says.
_PROOF_MESSAGES = {
    "proof_required": "This endpoint needs a fresh proof for every request; solve the "
    "attached challenge and send it in the Tokenward-Proof header.",
    "proof_replayed": "This proof was already used; every request needs a fresh one.",
}


def new_request_id() -> str:
    return secrets.token_hex(12)


class RequestOutcome:
    """What happened after the decision, filled in by the HTTP layer for the log."""

    __slots__ = ("error", "status", "upstream_status")

    def __init__(self) -> None:
        self.status = 0
        self.upstream_status: int | None = None
        self.error: str | None = None


class Guard:
    def __init__(
        self,
        policy: Policy,
        *,
        store: Store,
        keys: KeyRing,
        log: DecisionLog | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.policy = policy
        self.store = store
        self.keys = keys
        self.log = log
        self.clock = clock

    # -- the pipeline ------------------------------------------------------------------
    async def check(self, facts: RequestFacts) -> Decision:
        route = facts.route
        if route is None or not route.protect:
            return Decision(Action.ALLOW, "route/unprotected")
        decision = await self._judge(facts, route)
        if self.policy.mode_for(route) is Mode.SHADOW and not decision.forwards:
            decision = replace(decision, shadow=True)
        return decision

    async def _judge(self, facts: RequestFacts, route: RouteSettings) -> Decision:
        if facts.problem is not None:
            return Decision(
                Action.BLOCK, "request/bad", ("request/bad",), code="bad_request",
                message=facts.problem,
            )  # fmt: skip
        try:
            outcome = await self._prove(facts, route)
        except StoreUnavailable as exc:
            return Decision(
                Action.THROTTLE, "store/unavailable", ("store/unavailable",),
                code="store_unavailable",
                message="The gateway cannot verify requests right now; try again shortly.",
                retry_after=1, proof={"error": str(exc)},
            )  # fmt: skip
        signals = proof_signals(outcome, facts.received_at)
        return self._decide(facts, route, outcome, signals)

    async def _prove(self, facts: RequestFacts, route: RouteSettings) -> ProofOutcome:
        header = facts.header("tokenward-proof")
        if header is None:
            return ProofOutcome()
        signals = facts.header("tokenward-signals")
        result = verify_proof(
            self.keys,
            header,
            route=route.path,
            body=facts.body,
            signals_header=signals.encode() if signals is not None else None,
            now=facts.received_at,
            min_difficulty=self.policy.difficulty_for(route),
        )
        if isinstance(result, ProofFailure):
            return ProofOutcome(failure=result)
        ttl = result.expires_at - facts.received_at + _CONSUME_GRACE
        first = await self.store.consume_once("used:" + result.challenge_id.hex(), ttl)
        return ProofOutcome(claims=result, first_use=first)

    def _decide(
        self,
        facts: RequestFacts,
        route: RouteSettings,
        outcome: ProofOutcome,
        signals: list[Signal],
    ) -> Decision:
        reasons = tuple(s.name for s in signals)
        proof = dict(signals[0].evidence) if outcome.claims is not None else None
        if outcome.claims is not None and outcome.first_use:
            return Decision(Action.ALLOW, "proof/ok", reasons, tuple(signals), proof=proof)
        if outcome.failure is not None:
            code, message = outcome.failure.code, outcome.failure.message
        elif outcome.claims is None:
            code, message = "proof_required", _PROOF_MESSAGES["proof_required"]
        else:
            code, message = "proof_replayed", _PROOF_MESSAGES["proof_replayed"]
        return Decision(
            Action.CHALLENGE, reasons[0], reasons, tuple(signals), code=code, message=message,
            challenge=self.challenge_for(route).to_wire(), proof=proof,
        )  # fmt: skip

    # -- challenges --------------------------------------------------------------------
    def challenge_for(self, route: RouteSettings, now: float | None = None) -> Challenge:
        return issue_challenge(
            self.keys,
            route.path,
            self.policy.difficulty_for(route),
            self.policy.ttl_for(route),
            self.clock() if now is None else now,
        )

    # -- the log -----------------------------------------------------------------------
    def record(
        self, facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
        decision_ms: float, total_ms: float,
    ) -> None:  # fmt: skip
        if self.log is None:
            return
        self.log.record(
            DecisionRecord(
                ts=facts.received_at,
                request_id=facts.request_id,
                method=facts.method,
                path=facts.path,
                route=facts.route.path if facts.route is not None else None,
                client_ip=facts.client_ip,
                action=decision.header,
                name=decision.name,
                code=decision.code,
                shadow_action=decision.action.value if decision.shadow else None,
                reasons=list(decision.reasons),
                signals=[_signal_dict(s) for s in decision.signals],
                proof=dict(decision.proof) if decision.proof is not None else None,
                status=outcome.status,
                decision_ms=round(decision_ms, 3),
                total_ms=round(total_ms, 3),
                upstream_status=outcome.upstream_status,
                error=outcome.error,
            )
        )

    async def start(self) -> None:
        if self.log is not None:
            await self.log.start()

    async def close(self) -> None:
        try:
            if self.log is not None:
                await self.log.close()
        finally:
            await self.store.close()


def _signal_dict(s: Signal) -> dict[str, Any]:
    return {"name": s.name, "score": s.score, "evidence": dict(s.evidence)}
