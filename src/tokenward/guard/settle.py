"""After the response: log the decision, then settle the request in one batch.

Settling releases the request's concurrency slot, commits its spend at the exact cost
(or gives the reservation back), saves a server-held conversation's new exchange and
feeds the spike detector. It runs as its own task, not awaited by the request: a
cancelled request (client gone) still settles, and the response is never held up by it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..content import ops_to_save
from ..decision import Decision, Signal
from ..facts import RequestFacts
from ..log import DecisionLog, DecisionRecord
from ..metrics import Metrics
from ..policy import Policy
from ..store import Commit, Op, Rate, Store, StoreUnavailable
from .base import RequestOutcome

__all__ = ["Settlement", "decision_record"]

log = logging.getLogger("tokenward.guard")

# Called with (route, metric, rate result) for every spike counter a settlement updated.
SpikeObserver = Callable[[str, str, Any], None]


class Settlement:
    def __init__(
        self, store: Store, fallback: Store, decisions: DecisionLog | None, observe: SpikeObserver,
        metrics: Metrics | None = None,
    ):  # fmt: skip
        self.store = store
        self.fallback = fallback  # where fail-open requests were judged while the store was down
        self.log = decisions
        self.observe = observe
        self.metrics = metrics
        self._running: set[asyncio.Future[None]] = set()

    def finish(
        self, policy: Policy, facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
        decision_ms: float, total_ms: float,
    ) -> None:  # fmt: skip
        cost = self.cost(policy, decision, outcome)
        if self.log is not None or self.metrics is not None:
            rec = decision_record(facts, decision, outcome, decision_ms, total_ms, cost, policy)
            if self.log is not None:
                self.log.record(rec)
            if self.metrics is not None:  # counted from the record the log receives
                self.metrics.decision(rec, outcome)
        work = decision.work
        ops = list(work.settle)
        route_cfg = facts.route.conversation if facts.route is not None else None
        if work.conversation is not None and route_cfg is not None and outcome.text:
            conv_id, user_text, _ = work.conversation
            ops.extend(ops_to_save(conv_id, user_text, outcome.text, route_cfg))
        if work.reservation is not None:
            ops.append(Commit(work.reservation, cost or 0.0))
        if cost and facts.route is not None and policy.spike.enabled:
            ops.append(policy.spike.spend_op(facts.route.path, cost))
        if not ops:
            return
        route = facts.route.path if facts.route is not None else None
        if self.store.immediate:  # answers at once: no task to schedule
            self._settle_now(ops, route)
            return
        task = asyncio.ensure_future(self._settle(ops, route))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    @staticmethod
    def cost(policy: Policy, decision: Decision, outcome: RequestOutcome) -> float | None:
        """Dollars the upstream call cost (exact usage when the upstream reported it)."""
        if outcome.usage is None:
            return None
        model = outcome.model or decision.work.model
        return policy.prices.cost(model, outcome.usage.input_tokens, outcome.usage.output_tokens)

    async def settled(self) -> None:
        """Wait until every request that finished has settled (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _settle(self, ops: list[Op], route: str | None) -> None:
        try:
            results = await self.store.execute(ops)
        except StoreUnavailable as exc:
            # The request may have been judged on the fail-open fallback: settle there.
            results = self.fallback.execute_now(ops)
            log.warning("settled a request locally, the store is unavailable: %s", exc)
        self._settled(ops, results, route)

    def _settle_now(self, ops: list[Op], route: str | None) -> None:
        try:
            results = self.store.execute_now(ops)
        except StoreUnavailable as exc:  # full of live single-use keys
            results = self.fallback.execute_now(ops)
            log.warning("settled a request on the fallback store: %s", exc)
        self._settled(ops, results, route)

    def _settled(self, ops: list[Op], results: list[Any], route: str | None) -> None:
        if route is None:
            return
        for op, result in zip(ops, results, strict=True):
            if isinstance(op, Rate) and op.key.startswith("spike:"):
                self.observe(route, "requests" if op.key.startswith("spike:req:") else "spend", result)

    def record(
        self, facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
        decision_ms: float, total_ms: float, cost: float | None = None,
    ) -> None:  # fmt: skip
        if self.log is not None:
            self.log.record(decision_record(facts, decision, outcome, decision_ms, total_ms, cost))


def decision_record(
    facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
    decision_ms: float, total_ms: float, cost: float | None, policy: Policy | None = None,
) -> DecisionRecord:  # fmt: skip
    usage = outcome.usage
    reserved = decision.work.reserved_usd
    held = None
    if policy is not None and outcome.upstream_status is None and outcome.status >= 400:
        held = reserved or held_at_most(policy, facts, decision) or None
    return DecisionRecord(
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
        risk=dict(decision.risk) if decision.risk is not None else None,
        model=outcome.model or decision.work.model,
        tokens_in=usage.input_tokens if usage else None,
        tokens_out=usage.output_tokens if usage else None,
        usage_exact=usage.exact if usage else None,
        cost_usd=round(cost, 8) if cost is not None else None,
        reserved_usd=round(reserved, 8) if reserved else None,
        held_usd=round(held, 8) if held else None,
        account=decision.work.account,
    )


def held_at_most(policy: Policy, facts: RequestFacts, decision: Decision) -> float:
    """USD a refused call would have held: its input (about 4 bytes a token) and the
    route's full output allowance, at the price of its model (the dearest known model
    when none is named). What the refusal saved, at most (docs/observability.md)."""
    route = facts.route
    if route is None or not route.protect:
        return 0.0
    model = decision.work.model or route.model
    return policy.prices.worst_case(model, len(facts.body) / 4, policy.output_cap_for(route))


def _signal_dict(s: Signal) -> dict[str, Any]:
    return {"name": s.name, "score": s.score, "evidence": dict(s.evidence)}
