"""The decision: from the proof, the limits, the budgets and the risk score to one action.

In order: a bad proof asks for a fresh one; a deny rule blocks; a limit or a budget
throttles; an allow rule allows; otherwise the score's threshold decides, a
`challenge` threshold being satisfied by a proof that was already hard enough. The
follow-up work of a decision (what to settle after the response, the reservation to
commit, the call to forward) is attached by :func:`follow_up`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..decision import Action, Decision, FollowUp, Signal
from ..facts import LLMCall, RequestFacts
from ..limits import LimitVerdict
from ..money import TokenEstimator, bytes_estimate
from ..money.call import CallPlan, plan_call
from ..policy import Mode, Policy, RouteSettings
from ..proof.signature import SignatureClaims, SignatureFailure
from ..scoring import RiskResult, Threshold, risk_summary
from ..signals import ProofOutcome
from ..signals.browser import AUTOMATION_TELLS
from ..store import Hit, ReserveResult
from .base import INF, MESSAGES
from .challenges import extra_bits
from .plan import Plan

__all__ = [
    "bad_request",
    "decide",
    "follow_up",
    "refusal",
    "signature_refusal",
    "spend_limit",
    "unavailable",
]

# The challenge a refusal carries, for a route at a difficulty.
Challenger = Callable[[RouteSettings, int], dict[str, Any]]


def decide(
    policy: Policy,
    route: RouteSettings,
    outcome: ProofOutcome,
    signals: list[Signal],
    risk: RiskResult,
    over: LimitVerdict | None,
    budget: ReserveResult | None,
    *,
    under_attack: bool,
    signed: SignatureClaims | None,
    challenge: Challenger,
    proven: bool = True,
) -> Decision:
    reasons = tuple(s.name for s in signals if s.score or s.name.startswith("proof/"))
    reasons += tuple(name for name, _ in risk.contributions if name.startswith("rule/"))
    base = policy.difficulty_for(route)
    proof_signal = signals[0]  # proof_signals come first
    proof = dict(proof_signal.evidence) if outcome.claims is not None else None
    summary = risk_summary(risk)
    if under_attack:  # the dashboard marks these periods on its timeline
        summary["under_attack"] = True
    common: dict[str, Any] = {"signals": tuple(signals), "proof": proof, "risk": summary}
    required = base + extra_bits(risk) + (policy.spike.difficulty_bonus if under_attack else 0)
    if signed is None and (outcome.claims is None or not outcome.first_use):
        if outcome.failure is not None:
            code, message = outcome.failure.code, outcome.failure.message
        elif outcome.claims is None:
            code, message = "proof_required", MESSAGES["proof_required"]
        else:
            code, message = "proof_replayed", MESSAGES["proof_replayed"]
        return Decision(
            Action.CHALLENGE, proof_signal.name, reasons, code=code, message=message,
            challenge=challenge(route, required), **common,
        )  # fmt: skip
    if risk.rule is not None and risk.rule.action == "deny":
        return refusal(Action.BLOCK, f"rule/{risk.rule.name}", reasons, "blocked", common)
    if over is not None:
        retry = max(1, int(over.result.retry_after + 0.999))
        return refusal(
            Action.THROTTLE, f"limit/{over.spec.name}", (*reasons, f"limit/{over.spec.name}"),
            "throttled", common, retry_after=retry,
        )  # fmt: skip
    if budget is not None and not budget.ok:
        name = budget.exhausted.key.split(":")[1] if budget.exhausted is not None else "budget"
        return refusal(
            Action.THROTTLE, f"budget/{name}", (*reasons, f"budget/{name}"), "budget_exhausted", common,
            retry_after=max(1, int(budget.retry_after + 0.999)),
        )  # fmt: skip
    if risk.rule is not None and risk.rule.action == "allow":
        return Decision(Action.ALLOW, f"rule/{risk.rule.name}", reasons, **common)
    t = risk.threshold
    if t is not None and t.action == "block":
        return refusal(Action.BLOCK, f"risk/{t.score:g}", reasons, "blocked", common)
    if t is not None and t.action == "throttle":
        return refusal(Action.THROTTLE, f"risk/{t.score:g}", reasons, "throttled", common, retry_after=t.retry_after)
    if outcome.claims is not None and outcome.claims.difficulty < required:
        return Decision(
            Action.CHALLENGE, "proof/challenge" if outcome.claims.difficulty < base else "risk/challenge",
            reasons, code="challenge", message=MESSAGES["challenge"], challenge=challenge(route, required),
            **common,
        )  # fmt: skip
    if t is not None and t.action == "degrade":
        return Decision(Action.DEGRADE, f"risk/{t.score:g}", reasons, degrade=degraded(route), **common)
    if t is not None and t.action == "challenge" and risk.rule is None and signed is None:
        automated = t.automated != "answered" and not proven
        automated = automated and any(s.score > 0 and s.name in AUTOMATION_TELLS for s in signals)
        action = t.automated if automated else t.answered
        if action != "allow":
            return answered(t, action, route, reasons, common, automated=automated)
    return Decision(Action.ALLOW, "proof/ok" if signed is None else "signature/ok", reasons, **common)


def answered(
    t: Threshold, action: str, route: RouteSettings, reasons: tuple[str, ...], common: dict[str, Any], *,
    automated: bool = False,
) -> Decision:  # fmt: skip
    """A call whose risk still reaches a ``challenge`` threshold although its proof has the
    extra bits: the harder proof shows work, not a person (any solver spends a few more
    milliseconds), so it gets the threshold's ``answered`` action instead of an answer;
    its ``automated`` action when a sign of automation is still there and the device has
    no clean calls behind it (docs/risk.md, "Challenges that mean something")."""
    name = f"risk/{t.score:g}/{'automated' if automated else 'answered'}"
    reasons = (*reasons, "challenge/automated" if automated else "challenge/answered")
    if action == "degrade":
        return Decision(Action.DEGRADE, name, reasons, degrade=degraded(route), **common)
    if action == "throttle":
        return refusal(Action.THROTTLE, name, reasons, "throttled", common, retry_after=t.retry_after)
    if automated:  # a person whose input the page could not see can type or paste it again
        return Decision(
            Action.BLOCK, name, reasons, code="blocked", message=MESSAGES["automated"], **common
        )  # fmt: skip
    return refusal(Action.BLOCK, name, reasons, "blocked", common)


def degraded(route: RouteSettings) -> dict[str, Any]:
    """What a degraded call is limited to (the route's `degrade`, or a short answer)."""
    d = route.degrade
    return {"max_tokens": d.max_tokens if d else 256, "model": d.model if d else None}


def refusal(
    action: Action, name: str, reasons: tuple[str, ...], code: str, common: dict[str, Any],
    retry_after: int | None = None,
) -> Decision:  # fmt: skip
    return Decision(action, name, reasons, code=code, message=MESSAGES[code], retry_after=retry_after, **common)


def bad_request(name: str, message: str) -> Decision:
    return Decision(Action.INVALID, name, (name,), code="bad_request", message=message)


def spend_limit(retry_after: float) -> Decision:
    return Decision(
        Action.THROTTLE, "breaker/open", ("breaker/open",), code="spend_limit",
        message=MESSAGES["spend_limit"], retry_after=max(1, int(retry_after + 0.999)),
    )  # fmt: skip


def unavailable(exc: Exception) -> Decision:
    return Decision(
        Action.THROTTLE, "store/unavailable", ("store/unavailable",), code="store_unavailable",
        message=MESSAGES["store_unavailable"], retry_after=1, proof={"error": str(exc)},
    )  # fmt: skip


def signature_refusal(failure: SignatureFailure) -> Decision:
    name = f"signature/{failure.code}"
    action = Action.BLOCK if failure.code == "route_forbidden" else Action.CHALLENGE
    return Decision(action, name, (name,), code=failure.code, message=failure.message, retry_after=failure.retry_after)


def follow_up(
    policy: Policy,
    facts: RequestFacts,
    route: RouteSettings,
    decision: Decision,
    plan: Plan | None,
    estimator: TokenEstimator,
) -> Decision:
    """The decision with the work that follows it: shadow mode, what to settle after the
    response, the reservation to commit, the call to forward."""
    shadow = policy.mode_for(route) is Mode.SHADOW and not decision.forwards
    forwards = shadow or decision.forwards
    work = decision.work
    settle, reservation, reserved, model = work.settle, work.reservation, work.reserved_usd, work.model
    plan_of_call: CallPlan | None = None
    changed = shadow
    if plan is not None:
        if plan.reserve is not None:
            reserved, model, changed = plan.reserved, plan.model, True  # for the log
            if plan.reservation is not None and forwards:
                reservation = plan.reservation
        if plan.account is not None:
            changed = True
        if plan.inflight is not None or plan.counted or plan.reservation:
            changed = True
            settle = plan.settle(forwarded=forwards)
            if plan.clean_key is not None and decision.action.forwards:
                # A call answered (in full or degraded): one more clean call towards the
                # device's whole limits. Refusals earn nothing; nor do calls shadow mode let through.
                settle += (Hit(plan.clean_key, INF, policy.devices.ramp.window, 1.0),)
            # The route's request rate (spike detection) counts attempts with a fresh
            # proof, but not the re-solves that a harder challenge itself causes.
            if plan.counts and decision.code != "challenge" and policy.spike.enabled:
                settle += (policy.spike.requests_op(route.path),)
    if forwards and facts.call is not None:
        call = facts.call
        if work.conversation is not None:  # forward the history the gateway holds
            call = LLMCall(call.flavour, call.model, call.stream, call.max_tokens, work.conversation[2])
        reserves = reservation is not None
        plan_of_call = _call_plan(policy, call, route, decision, plan, reserves, len(facts.body), estimator)
        changed = True
    if not changed:
        return decision  # nothing to add (a refusal before any batch)
    account = plan.account if plan is not None else work.account
    follow = FollowUp(settle, reservation, reserved, model, plan_of_call, work.conversation, account)
    return decision.evolve(shadow=True, work=follow) if shadow else decision.evolve(work=follow)


def _call_plan(
    policy: Policy,
    call: LLMCall,
    route: RouteSettings,
    decision: Decision,
    plan: Plan | None,
    reserved: bool,
    size: int,
    estimator: TokenEstimator,
) -> CallPlan:
    model = plan.model if plan is not None and plan.model else (call.model or route.model)
    loaded = plan is not None and plan.tokens_in is not None
    return plan_call(
        route.api.value,
        route.path,
        call.body,
        model=model,
        degrade=decision.degrade,
        output_cap=policy.output_cap_for(route) if reserved else None,
        # Without a reservation a cheap estimate will do (one token per 2 body bytes).
        input_estimate=plan.tokens_in if plan is not None and plan.tokens_in is not None else (size + 1) // 2,
        count=estimator.counter(model) if loaded else bytes_estimate,
        rebuilt=decision.work.conversation is not None,
    )
