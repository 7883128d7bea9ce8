"""The pipeline (DESIGN.md §2): every protected request is judged on its own evidence.

A request first has to make sense (a parsable API call). Its proof is checked without
I/O: a challenge this server signed, unexpired, for this route, with work done over
exactly these body bytes. Then one store batch consumes the challenge, fetches what the
store knows about the request's device, account, address and subnet, and counts the
request against its limits. The evidence becomes signals — proof, device, client,
browser, network, identity, behaviour — and the signals a risk score. The decision, in
order: a bad proof asks for a fresh one; a deny rule blocks; a limit throttles; an
allow rule allows; otherwise the score's threshold decides, a `challenge` threshold
being satisfied by a proof that was already hard enough. In shadow mode the decision is
logged and the request goes through. After the response the request settles in one
more batch. The guard does no I/O beyond the Store and the decision log.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from .content import (
    CONVERSATION_HEADER,
    ConversationIds,
    ConversationProblem,
    ConversationTurn,
    PurposeResult,
    Transcript,
    build_upstream_body,
    check_request,
    expired_problem,
    history_from,
    ops_to_load,
    ops_to_save,
    purpose_action,
    purpose_signals,
    template_keys,
    template_ops,
    template_signals,
    transcript,
)
from .decision import Action, Decision, Signal
from .evidence import Evidence, prepare_evidence
from .facts import LLMCall, RequestFacts, TrustedProxies, limits_problem
from .limits import Keys, LimitSpec, LimitVerdict, limit_ops, limit_verdict
from .log import DecisionLog, DecisionRecord
from .money import TokenEstimator, bytes_estimate
from .money.alerts import Alerter
from .money.budgets import BudgetSpec, budgets_for
from .money.call import CallPlan, plan_call
from .money.spike import RouteMode, SpendBreaker, SpikeDetector, StateChange
from .money.tokens import endpoint_of, max_output
from .money.usage import Usage
from .policy import Mode, Policy, RouteSettings
from .proof import Challenge, KeyRing, ProofClaims, ProofFailure, issue_challenge, verify_proof
from .proof.device import DeviceClaim, DeviceKeys, device_id, load_public_key, parse_device_header_unverified
from .proof.scope import ConsumptionScope
from .proof.signature import SignatureClaims, SignatureFailure, signature_failure
from .scoring import RiskResult, RuleInput, risk_summary
from .signals import ProofOutcome, proof_signals
from .signals.behaviour import DeviceCheck, History, behaviour_signals, device_signals
from .signals.browser import browser_signals, parse_env
from .signals.http_client import client_signals
from .signals.identity import Account, IdentityStats, identity_signals, is_new_account
from .signals.network import network_signals, subnet_of
from .signals.prompt import content_signals
from .store import (
    Cadence,
    Commit,
    Consume,
    Distinct,
    Get,
    Hit,
    Inflight,
    MemoryStore,
    Op,
    Put,
    Rate,
    Reserve,
    ReserveResult,
    Store,
    StoreUnavailable,
    WindowResult,
)

__all__ = ["DEVICE_ROUTE", "Guard", "RequestOutcome", "new_request_id"]

log = logging.getLogger("tokenward.guard")

DEVICE_ROUTE = "/.tokenward/device"

# Consumed challenges are remembered a little past their expiry, so clocks that differ
# slightly between gateway instances cannot reopen a window for replay.
_CONSUME_GRACE = 5.0
_INFLIGHT_TTL = 600.0
_INF = float("inf")

# Refusal sentences: true and useful for a person, silent about which signal fired
# (the operator sees every signal in the decision log).
_MESSAGES = {
    "proof_required": "This endpoint needs a fresh proof for every request; solve the "
    "attached challenge and send it in the Tokenward-Proof header.",
    "proof_replayed": "This proof was already used; every request needs a fresh one.",
    "challenge": "A harder proof is needed for this request; solve the attached challenge.",
    "throttled": "Too many requests from this client right now; retry after the indicated time.",
    "blocked": "This request was refused.",
    "store_unavailable": "The gateway cannot verify requests right now; try again shortly.",
    "budget_exhausted": "The spending budget for this client is used up for now; retry after the indicated time.",
    "spend_limit": "This service is over its spending limit right now; retry after the indicated time.",
}


def new_request_id() -> str:
    return secrets.token_hex(12)


class RequestOutcome:
    """What happened after the decision, filled in by the HTTP layer for the log."""

    __slots__ = ("error", "model", "status", "text", "upstream_status", "usage")

    def __init__(self) -> None:
        self.status = 0
        self.upstream_status: int | None = None
        self.error: str | None = None
        self.usage: Usage | None = None  # what the upstream call consumed, when it was made
        self.model: str | None = None  # the model the call was sent to (after a degrade)
        self.text: str | None = None  # what the upstream generated (server-held conversations)


@dataclass(slots=True)
class _Plan:
    """The store batch of one request, and where each answer lands."""

    ops: list[Op] = field(default_factory=list)
    consume: int | None = None
    device_key: int | None = None
    limits: list[tuple[LimitSpec, Hit]] = field(default_factory=list)
    limits_at: int = 0
    counted: list[Hit] = field(default_factory=list)  # limit hits that were added
    inflight: str | None = None  # the concurrency counter this request holds
    emergency: int | None = None  # index of the emergency limit's hit (fail-open fallback)
    revocation: int | None = None  # index of a signing key's revocation entry
    conversation: int | None = None  # index of a server-held conversation's history
    templates: list[str] = field(default_factory=list)  # template fingerprints counted across identities
    templates_at: int = 0
    counts: bool = False  # a fresh proof: this request counts towards the route's rate
    ran: bool = False  # the batch was executed
    fresh: bool | None = None  # after it: whether the proof or signature was used for the first time
    reserve: int | None = None  # index of the budget reservation
    reserved: float = 0.0  # dollars held
    reservation: str | None = None
    model: str | None = None  # the model the call is priced as
    tokens_in: int | None = None  # estimated input tokens (when a reservation needed them)
    history: dict[str, int] = field(default_factory=dict)
    transcript: Transcript | None = None  # the call's turns, read once for every content check

    def add(self, op: Op) -> int:
        self.ops.append(op)
        return len(self.ops) - 1

    def settle(self, *, forwarded: bool) -> tuple[Op, ...]:
        """What to run after the response: release the concurrency slot and, for a
        request that was not forwarded, give back what it counted against the limits
        (limits count admitted requests)."""
        ops: list[Op] = []
        if self.inflight is not None:
            ops.append(Inflight(self.inflight, -1, _INFLIGHT_TTL))
        if not forwarded:
            ops.extend(Hit(h.key, _INF, h.window, -h.cost) for h in self.counted)
            if self.reservation is not None:
                ops.append(Commit(self.reservation, 0.0))  # nothing was spent
        return tuple(ops)


class Guard:
    def __init__(
        self,
        policy: Policy,
        *,
        store: Store,
        keys: KeyRing,
        log: DecisionLog | None = None,
        clock: Callable[[], float] = time.time,
        evidence: Evidence | None = None,
    ):
        self.policy = policy
        self._engines = policy.engines()
        self.evidence = evidence if evidence is not None else prepare_evidence(policy)
        self.trusted = TrustedProxies(policy.trusted_proxies)
        self.store = store
        # Challenges and signatures are accepted only within the memory that remembers
        # their use (proof/scope.py): a memory store's lifetime, or forever on a shared one.
        self.scope = ConsumptionScope.of(store, clock())
        self.keys = keys.scoped(self.scope.epoch)
        self.log = log
        self.clock = clock
        self.devices = DeviceKeys()
        # Where fail-open routes are judged while the store is unavailable.
        self.fallback = MemoryStore(max_used=100_000, max_keys=50_000, clock=clock)
        self._settling: set[asyncio.Future[None]] = set()
        self.conversations = ConversationIds(keys)
        self.estimator = TokenEstimator(backend=policy.money.estimator)
        self.spike = SpikeDetector(policy.spike)
        self.breaker = SpendBreaker(policy.breaker)
        self.alerter = Alerter(policy.alerts)

    def reload(self, policy: Policy, evidence: Evidence | None = None) -> None:
        """Swap in a new policy; requests in flight finish under the one they started with.
        The store, the log and the upstream are fixed at start (a restart changes them).
        ``evidence`` comes from :func:`prepare_evidence` (blocking: call it off the loop)."""
        self.evidence = evidence if evidence is not None else prepare_evidence(policy)
        if self.evidence.signing_keys is not None:  # proof.keys_file, re-read with the policy
            self.keys = self.evidence.signing_keys.scoped(self.scope.epoch)
        self.trusted = TrustedProxies(policy.trusted_proxies)
        if policy.spike != self.policy.spike:
            self.spike = SpikeDetector(policy.spike)
        if policy.breaker != self.policy.breaker:
            self.breaker = SpendBreaker(policy.breaker)
        self.policy = policy
        self._engines = policy.engines()

    # -- the pipeline ------------------------------------------------------------------
    async def check(self, facts: RequestFacts) -> Decision:
        policy = self.policy
        route = facts.route
        if route is None or not route.protect:
            return Decision(Action.ALLOW, "route/unprotected")
        started: list[_Plan] = []  # the request's plan, once it has one
        try:
            decision, plan = await self._judge(policy, facts, route, started)
            return self._complete(policy, facts, route, decision, plan)
        except Exception:
            # A bug, answered as a logged gateway error; the proof must not replay it.
            replayed = await self._abandon(policy, facts, route, started[0] if started else None)
            if replayed is None:
                raise
            log.debug("request %s: a replay of a request that could not be judged", facts.request_id)
            return replayed

    def _complete(
        self, policy: Policy, facts: RequestFacts, route: RouteSettings, decision: Decision, plan: _Plan | None
    ) -> Decision:
        """The decision with what the HTTP layer needs: shadow, settle ops, the call plan."""
        changes: dict[str, Any] = {}
        shadow = policy.mode_for(route) is Mode.SHADOW and not decision.forwards
        if shadow:
            changes["shadow"] = True
        forwards = shadow or decision.forwards
        if plan is not None:
            if plan.reserve is not None:
                changes["reserved_usd"], changes["model"] = plan.reserved, plan.model  # for the log
                if plan.reservation is not None and forwards:
                    changes["reservation"] = plan.reservation
            if plan.inflight is not None or plan.counted or plan.reservation:
                settle = plan.settle(forwarded=forwards)
                # The route's request rate (spike detection) counts attempts with a fresh
                # proof, but not the re-solves that a harder challenge itself causes.
                if plan.counts and decision.code != "challenge" and policy.spike.enabled:
                    settle += (policy.spike.requests_op(route.path),)
                changes["settle"] = settle
        if forwards and facts.call is not None:
            call = facts.call
            if decision.conversation is not None:  # forward the history the gateway holds
                call = LLMCall(call.flavour, call.model, call.stream, call.max_tokens, decision.conversation[2])
            changes["call"] = self._call_plan(
                call, route, decision, plan, bool(changes.get("reservation")), len(facts.body), decision.conversation
            )
        return decision.evolve(**changes) if changes else decision

    def _call_plan(
        self,
        call: LLMCall,
        route: RouteSettings,
        decision: Decision,
        plan: _Plan | None,
        reserved: bool,
        size: int,
        conversation: Any = None,
    ) -> CallPlan:
        model = plan.model if plan is not None and plan.model else (call.model or route.model)
        loaded = plan is not None and plan.tokens_in is not None
        return plan_call(
            route.api.value,
            route.path,
            call.body,
            model=model,
            degrade=decision.degrade,
            output_cap=self.policy.output_cap_for(route) if reserved else None,
            # Without a reservation a cheap estimate will do (one token per 2 body bytes).
            input_estimate=plan.tokens_in if plan is not None and plan.tokens_in is not None else (size + 1) // 2,
            count=self.estimator.counter(model) if loaded else bytes_estimate,
            rebuilt=conversation is not None,
        )

    async def _abandon(
        self, policy: Policy, facts: RequestFacts, route: RouteSettings, plan: _Plan | None
    ) -> Decision | None:
        """Judging failed (a bug): use up the request's proof or signature anyway and give
        back what its batch counted. Its replays fail the same way, but are then answered
        as the replays they are (a refusal, returned), not as failures: no free tracebacks."""
        ops: list[Op] = []
        consume: Consume | None = None
        fresh: bool | None = None
        try:
            if plan is not None and plan.consume is not None:
                op = plan.ops[plan.consume]
                consume = op if isinstance(op, Consume) else None
            elif plan is None:
                proof = self._verify(policy, facts, route)
                if isinstance(proof, ProofClaims):
                    ttl = proof.expires_at - facts.received_at + _CONSUME_GRACE
                    consume = Consume("used:" + proof.challenge_id.hex(), ttl)
            if plan is not None and plan.ran:
                ops.extend(plan.settle(forwarded=False))
                fresh = plan.fresh
            elif consume is not None:
                ops.append(consume)
            if ops:
                results = await self.store.execute(ops)
                if fresh is None and consume is not None:
                    fresh = bool(results[0])
        except Exception:
            log.exception("request %s: could not use up its proof after a failure", facts.request_id)
            return None
        if fresh is not False or consume is None:
            return None
        if consume.key.startswith("sig:"):
            return self._signature_refusal(signature_failure("signature_replayed"))
        return Decision(
            Action.CHALLENGE, "proof/replayed", ("proof/replayed",), code="proof_replayed",
            message=_MESSAGES["proof_replayed"], challenge=self.challenge_for(route).to_wire(),
        )  # fmt: skip

    async def _judge(
        self, policy: Policy, facts: RequestFacts, route: RouteSettings, started: list[_Plan]
    ) -> tuple[Decision, _Plan | None]:
        if facts.problem is not None:
            bad = Decision(Action.BLOCK, "request/bad", ("request/bad",), code="bad_request", message=facts.problem)
            return bad, None
        now = facts.received_at
        breaker = self.breaker.check(now)
        self._notify(breaker.events)
        if breaker.open:
            return self._spend_limit(breaker.retry_after), None
        signed = await self._signature(facts, route, now)
        if isinstance(signed, Decision):
            return signed, None
        precheck: DeviceCheck | None = None
        if signed is not None:  # a trusted server client: its signature replaces the proof
            proof, claim = None, None
            account: Any = signed
            keys = Keys(facts.client_ip, subnet_of(facts.client_ip), route.path, None, signed.account)
        else:
            proof = self._verify(policy, facts, route)
            claim = self._device_claim(facts)
            account = self.evidence.accounts.resolve(facts, now=now, via_trusted_proxy=facts.via_proxy)
            precheck = self._precheck_device(facts, claim)
            keys = self._keys(facts, route, precheck, account)
        if facts.call is not None and (signed is not None or isinstance(proof, ProofClaims)):
            # Bodies are measured once they proved their work: the walk costs CPU.
            beyond = limits_problem(facts.call, max_depth=policy.max_json_depth, max_messages=policy.max_messages)
            if beyond is not None:
                return Decision(Action.BLOCK, "request/limits", ("request/limits",), code="bad_request",
                                message=beyond), None  # fmt: skip
        plan = self._plan(policy, facts, route, proof, claim, keys, signed)
        started.append(plan)
        conversation = self._conversation(facts, route, keys)
        if isinstance(conversation, Decision):
            return conversation, None
        if conversation is not None and not conversation.new:
            plan.conversation = plan.add(ops_to_load(conversation.conversation or "")[0])
        content = route.content or policy.content
        purpose: asyncio.Future[PurposeResult] | None = None
        verified = signed is not None or isinstance(proof, ProofClaims)
        if verified and facts.call is not None:
            # Only requests that did their work are read: scoring costs CPU an attacker
            # must not get for free. The scorer runs off the loop while the batch goes out.
            scorer = self.evidence.purposes.get(route.path)
            tcfg = route.templates or policy.templates
            if scorer is not None or tcfg.enabled or content.enabled:  # the body's turns, read once
                plan.transcript = tr = transcript(facts.call.body)
                text = tr.latest_user() if scorer is not None else None
                if scorer is not None and text:
                    purpose = asyncio.ensure_future(scorer.score(text))
                member = {"device": keys.device, "account": keys.account, "ip": keys.ip}.get(
                    tcfg.identity
                ) or keys.subnet
                plan.templates = template_keys(facts.call, tcfg, client_system=content.client_system, tr=tr)
                plan.templates_at = len(plan.ops)
                plan.ops.extend(template_ops(plan.templates, member, tcfg))
        if isinstance(proof, ProofClaims) and isinstance(account, Account):
            plan.history["new_accounts"] = plan.add(
                Hit(f"acct-new:{route.path}", _INF, 600, 1.0 if is_new_account(account, policy.identity, now) else 0.0)
            )
            plan.history["all_accounts"] = plan.add(Hit(f"acct-all:{route.path}", _INF, 600))
            if keys.device is not None:
                plan.history["accounts_per_device"] = plan.add(
                    Distinct(f"dev-accts:{keys.device}", account.id, policy.behaviour.window)
                )
        fallback = False
        try:
            results = await self.store.execute(plan.ops) if plan.ops else []
        except StoreUnavailable as exc:
            # Revocations live in the store: a signed request is never judged without it.
            if policy.store_failure_for(route) == "fail_closed" or (signed and self.evidence.clients.store_keys):
                if purpose is not None:
                    purpose.cancel()
                return self._unavailable(exc), None
            # fail_open: judge on this instance's own memory, under an emergency limit.
            fallback = True
            e = policy.emergency
            plan.emergency = plan.add(Hit("emergency", e.limit, e.window))
            results = await self.fallback.execute(plan.ops)
        plan.ran = True
        outcome = ProofOutcome(
            claims=proof if isinstance(proof, ProofClaims) else None,
            failure=proof if isinstance(proof, ProofFailure) else None,
            first_use=plan.consume is not None and bool(results[plan.consume]),
        )
        plan.fresh = outcome.first_use if plan.consume is not None else None
        if signed is not None:
            revocation = results[plan.revocation] if plan.revocation is not None else None
            confirmed = self.evidence.clients.confirm(
                signed, first_use=outcome.first_use, revocation=revocation, now=now
            )
            if isinstance(confirmed, SignatureFailure):
                return self._signature_refusal(confirmed), plan
        held: tuple[str, Any] | None = None  # (conversation id, upstream body) of a server-held conversation
        if conversation is not None and route.conversation is not None and facts.call is not None:
            if conversation.new:
                owner = (keys.device or keys.account) if route.conversation.bind_owner else None
                conv_id, exchanges = self.conversations.issue(route.path, owner), []
            else:
                conv_id = conversation.conversation or ""
                exchanges = history_from(results[plan.conversation]) if plan.conversation is not None else []
                if not exchanges:
                    problem = expired_problem()
                    return Decision(
                        Action.BLOCK, "conversation/unknown", ("conversation/unknown",), code=problem.code,
                        message=problem.message,
                    ), plan  # fmt: skip
            body = build_upstream_body(facts.call, exchanges, conversation, route.conversation)
            held = (conv_id, orjson.loads(body))
        device = precheck or self._check_device(facts, claim, plan, results)
        limit_results = results[plan.limits_at : plan.limits_at + len(plan.limits)]
        if device.status == "ok" and precheck is None and keys.device is None:
            # A device this instance had not seen: verified only now, so its counters were
            # keyed by address; move its device-keyed limits over (once per device here).
            limit_results = await self._rekey_device(plan, limit_results, replace(keys, device=device.device))
        history = self._history(plan, results)
        browser_route = route.clients == "browser" and signed is None
        env = parse_env(facts.header("tokenward-signals")) if signed is None else None
        signals = [
            *(proof_signals(outcome, facts.received_at) if signed is None else [_signed_signal(signed)]),
            *([Signal("store/fallback", 0.0, {"store": "local memory"})] if fallback else []),
            *(device_signals(device, browser_route=browser_route) if signed is None else []),
            *client_signals(facts, policy.client, browser_route=browser_route, via_trusted_proxy=facts.via_proxy),
            *browser_signals(env, facts, outcome.claims, policy.browser, now=now, browser_route=browser_route),
            *network_signals(facts, self.evidence.lists, policy.network),
            *(
                identity_signals(account, facts, policy.identity, now=now, stats=self._identity_stats(plan, results))
                if signed is None
                else []
            ),
            *behaviour_signals(history, policy.behaviour),
            *(content_signals(facts.call, content, plan.transcript) if verified and facts.call is not None else []),
            *template_signals(
                plan.templates,
                results[plan.templates_at : plan.templates_at + len(plan.templates)],
                route.templates or policy.templates,
            ),
        ]
        off_purpose: str | None = None
        if purpose is not None and route.purpose is not None:
            result = await purpose
            signals.extend(purpose_signals(result, route.purpose))
            off_purpose = purpose_action(result, route.purpose)
            if off_purpose == "score" and self.spike.mode(route.path) is RouteMode.UNDER_ATTACK:
                off_purpose = policy.spike.off_purpose  # under attack, off-purpose calls may be refused
        engine = self._engines.get(route.path) or policy.engine_for(route)
        risk = engine.assess(
            signals,
            RuleInput(
                ip=facts.client_ip,
                headers=facts.headers,
                account=keys.account,
                device=device.device,
                route=route.path,
                signals=frozenset(s.name for s in signals),
            ),
        )
        plan.counted = [hit for (_, hit), r in zip(plan.limits, limit_results, strict=True) if r.allowed]
        over = limit_verdict(plan.limits, limit_results)
        if plan.emergency is not None and not results[plan.emergency].allowed:
            e = policy.emergency
            spec = LimitSpec(name="emergency", key="global", limit=e.limit, window=e.window)
            over = LimitVerdict(spec, results[plan.emergency])
        under_attack = policy.spike.enabled and self.spike.mode(route.path) is RouteMode.UNDER_ATTACK
        budget: ReserveResult | None = None
        if plan.reserve is not None:
            budget = results[plan.reserve]
            tripped = self.breaker.record(now, budget)
            self._notify(tripped)
            if tripped or self.breaker.is_open(now):
                plan.reservation = None  # nothing was held
                return self._spend_limit(self.breaker.check(now).retry_after), plan
            if not budget.ok:
                plan.reservation = None
        if off_purpose == "refuse" and not (risk.rule is not None and risk.rule.action == "allow"):
            message = route.purpose.message if route.purpose is not None else _MESSAGES["blocked"]
            refusal = Decision(
                Action.BLOCK, "content/off-purpose", ("content/off-purpose",), tuple(signals),
                code="blocked", message=message, risk=risk_summary(risk),
            )  # fmt: skip
            return refusal, plan
        decision = self._decide(policy, route, outcome, signals, risk, over, budget, under_attack, signed)
        if held is not None and conversation is not None:
            decision = decision.evolve(conversation=(held[0], conversation.text, held[1]))
        if off_purpose == "degrade" and decision.action is Action.ALLOW:
            d = route.degrade
            degrade = {"max_tokens": d.max_tokens if d else 256, "model": d.model if d else None}
            decision = decision.evolve(action=Action.DEGRADE, name="content/off-purpose", degrade=degrade)
        return decision, plan

    def _conversation(
        self, facts: RequestFacts, route: RouteSettings, keys: Keys
    ) -> ConversationTurn | Decision | None:
        """``conversation: server`` routes: the client may only add one user turn to a
        conversation id the gateway gave it; history, system prompts and assistant turns
        sent by the client are refused."""
        cfg = route.conversation
        if cfg is None or facts.call is None:
            return None
        owner = (keys.device or keys.account) if cfg.bind_owner else None
        turn = check_request(
            facts.call, cfg, self.conversations, route=route.path,
            header=facts.header(CONVERSATION_HEADER.lower()), owner=owner,
        )  # fmt: skip
        if isinstance(turn, ConversationProblem):
            return Decision(
                Action.BLOCK, "conversation/refused", ("conversation/refused",), code=turn.code, message=turn.message
            )
        return turn

    async def _signature(
        self, facts: RequestFacts, route: RouteSettings, now: float
    ) -> SignatureClaims | Decision | None:
        """A trusted client's signature (RFC 9421): its claims, a refusal, or None when
        the request is not signed for this gateway (the proof-of-work path applies)."""
        clients = self.evidence.clients
        if route.signed == "ignore" or not clients.enabled:
            return (
                self._signature_refusal(signature_failure("signature_required")) if route.signed == "require" else None
            )
        fetch = clients.prefetch(facts.headers)  # keys in the store this instance has not seen yet
        if fetch:
            try:
                clients.learn(fetch, await self.store.execute(fetch))
            except StoreUnavailable as exc:
                return self._unavailable(exc)
        signed = clients.verify(facts, now=now)
        if isinstance(signed, SignatureClaims):
            signed = self.scope.admit(signed)
        if isinstance(signed, SignatureFailure):
            return self._signature_refusal(signed)
        if signed is not None and signed.key.kind != "client":
            signed = None  # a recognised agent (Web Bot Auth) still proves its work
        if signed is None and route.signed == "require":
            return self._signature_refusal(signature_failure("signature_required"))
        return signed

    @staticmethod
    def _signature_refusal(failure: SignatureFailure) -> Decision:
        name = f"signature/{failure.code}"
        action = Action.BLOCK if failure.code == "route_forbidden" else Action.CHALLENGE
        return Decision(action, name, (name,), code=failure.code, message=failure.message)

    def _verify(self, policy: Policy, facts: RequestFacts, route: RouteSettings) -> ProofClaims | ProofFailure | None:
        header = facts.header("tokenward-proof")
        if header is None:
            return None
        signals = facts.header("tokenward-signals")
        return verify_proof(
            self.keys,
            header,
            route=route.path,
            body=facts.body,
            signals_header=signals.encode() if signals is not None else None,
            now=facts.received_at,
        )

    @staticmethod
    def _device_claim(facts: RequestFacts) -> DeviceClaim | str | None:
        value = facts.header("tokenward-device")
        if value is None or facts.header("tokenward-proof") is None:
            return None  # a device signature covers a proof: without one it proves nothing
        return parse_device_header_unverified(value)

    def _precheck_device(self, facts: RequestFacts, claim: DeviceClaim | str | None) -> DeviceCheck | None:
        """Check a device signature before the store batch when its key is already known
        here. Only a verified device keys the request's counters: a made-up or borrowed
        device id must neither dodge per-device limits nor spend another device's."""
        if not isinstance(claim, DeviceClaim):
            return None
        key = self.devices.cached(claim.device)
        if key is None:
            return None  # fetched in the batch, verified after it
        if DeviceKeys.verify(key, claim, facts.header("tokenward-proof") or "", facts.body):
            return DeviceCheck("ok", device=claim.device, claimed=claim.device)
        return DeviceCheck("bad-signature", claimed=claim.device)

    async def _rekey_device(self, plan: _Plan, results: list[Any], keys: Keys) -> list[Any]:
        ops: list[Op] = []
        moved: list[int] = []
        for i, ((spec, hit), result) in enumerate(zip(plan.limits, results, strict=True)):
            if spec.key != "device":
                continue
            if result.allowed:
                ops.append(Hit(hit.key, _INF, hit.window, -hit.cost))  # give the address its count back
            ((_, new_hit),) = limit_ops([spec], keys)
            plan.limits[i] = (spec, new_hit)
            moved.append(i)
            ops.append(new_hit)
        if not ops:
            return results
        try:
            answers = await self.store.execute(ops)
        except StoreUnavailable:
            return results  # keep the address-keyed counts for this request
        out = list(results)
        new_results = [a for op, a in zip(ops, answers, strict=True) if isinstance(op, Hit) and op.cost > 0]
        for i, r in zip(moved, new_results, strict=True):
            out[i] = r
        return out

    @staticmethod
    def _identity_stats(plan: _Plan, results: list[Any]) -> IdentityStats | None:
        h = plan.history
        if "all_accounts" not in h:
            return None
        total, new = results[h["all_accounts"]].count, results[h["new_accounts"]].count
        # accounts_on_device stays None: behaviour/accounts-per-device already weighs it.
        return IdentityStats(new_account_share=new / total if total else None, recent_requests=int(total))

    @staticmethod
    def _keys(facts: RequestFacts, route: RouteSettings, device: DeviceCheck | None, account: Any = None) -> Keys:
        return Keys(
            ip=facts.client_ip,
            subnet=subnet_of(facts.client_ip),
            route=route.path,
            device=device.device if device is not None and device.status == "ok" else None,
            account=account.id if isinstance(account, Account) else None,
        )

    def _plan(
        self,
        policy: Policy,
        facts: RequestFacts,
        route: RouteSettings,
        proof: ProofClaims | ProofFailure | None,
        claim: DeviceClaim | str | None,
        keys: Keys,
        signed: SignatureClaims | None = None,
    ) -> _Plan:
        plan = _Plan()
        limits: Sequence[LimitSpec] = policy.limits
        budgets: Sequence[BudgetSpec] = policy.budgets
        if signed is not None:
            plan.consume = plan.add(Consume(signed.consume_key, signed.consume_ttl))
            revocation = self.evidence.clients.revocation_op(signed)
            if revocation is not None:
                plan.revocation = plan.add(revocation)
            limits = self.evidence.clients.limits_for(signed.client, limits)
            budgets = self.evidence.clients.budgets_for(signed.client, budgets)
        elif not isinstance(proof, ProofClaims):
            return plan  # no verified work: read nothing, count nothing
        else:
            if isinstance(claim, DeviceClaim) and self.devices.cached(claim.device) is None:
                plan.device_key = plan.add(Get(f"devkey:{claim.device}"))
            ttl = proof.expires_at - facts.received_at + _CONSUME_GRACE
            plan.consume = plan.add(Consume("used:" + proof.challenge_id.hex(), ttl))
        plan.counts = True
        plan.limits = limit_ops(limits, keys)
        plan.limits_at = len(plan.ops)
        plan.ops.extend(hit for _, hit in plan.limits)
        self._plan_budget(plan, policy, facts, route, keys, budgets)
        b = policy.behaviour
        who = keys.device or "ip:" + keys.ip
        h = plan.history
        plan.inflight = f"inflight:{who}"
        h["inflight"] = plan.add(Inflight(plan.inflight, 1, _INFLIGHT_TTL))
        h["cadence"] = plan.add(Cadence(f"cadence:{who}"))
        h["redeemed"] = plan.add(Hit(f"redeemed:{keys.subnet}", _INF, 600))
        h["issued"] = plan.add(Hit(f"issued:{keys.subnet}", _INF, 600, 0.0))
        h["registrations"] = plan.add(Hit(f"registrations:{keys.subnet}", _INF, b.window, 0.0))
        if keys.device is not None:
            h["ips_per_device"] = plan.add(Distinct(f"dev-ips:{keys.device}", keys.ip, b.window))
            h["devices_per_subnet"] = plan.add(
                Distinct(f"subnet-devs:{keys.subnet}", keys.device, b.window, cap=b.max_devices_per_subnet * 4)
            )
        return plan

    def _plan_budget(
        self,
        plan: _Plan,
        policy: Policy,
        facts: RequestFacts,
        route: RouteSettings,
        keys: Keys,
        specs: Sequence[BudgetSpec],
    ) -> None:
        """Reserve the call's worst case against every budget that applies (and the
        breaker's ceiling), in the same batch; settled at the exact cost afterwards."""
        call = facts.call
        plan.model = (call.model if call is not None else None) or route.model
        tighten = (
            policy.spike.new_client_budget_factor if self.spike.mode(route.path) is RouteMode.UNDER_ATTACK else 1.0
        )
        budgets = budgets_for(specs, keys, tighten=tighten)
        ceiling = self.breaker.budget()
        if ceiling is not None:
            budgets.insert(0, ceiling)
        if not budgets:
            return
        body = call.body if call is not None else {}
        plan.tokens_in = self.estimator.estimate_input(body, plan.model)
        plan.reserved = self.worst_case(policy, route, body, plan.model, plan.tokens_in)
        plan.reservation = facts.request_id
        plan.reserve = plan.add(Reserve(tuple(budgets), plan.reserved, facts.request_id, policy.money.hold))

    def worst_case(
        self, policy: Policy, route: RouteSettings, body: Any, model: str | None, tokens_in: int | None = None
    ) -> float:
        """Dollars a call can cost at most: its estimated input and its whole output allowance."""
        endpoint = endpoint_of(route.api.value, route.path)
        if tokens_in is None:
            tokens_in = self.estimator.estimate_input(body, model)
        tokens_out = max_output(body, endpoint, policy.output_cap_for(route))
        return policy.prices.worst_case(model, tokens_in, tokens_out)

    def _notify(self, events: tuple[StateChange, ...]) -> None:
        for event in events:
            self.alerter.notify(event)

    def _check_device(
        self, facts: RequestFacts, claim: DeviceClaim | str | None, plan: _Plan, results: list[Any]
    ) -> DeviceCheck:
        if claim is None:
            return DeviceCheck("missing")
        if isinstance(claim, str):
            return DeviceCheck("malformed", claimed=None)
        key = self.devices.cached(claim.device)
        if key is None and plan.device_key is not None:
            stored = results[plan.device_key]
            if stored is not None:
                key = self.devices.remember(claim.device, stored)
        if key is None:
            return DeviceCheck("unknown", claimed=claim.device)
        proof_header = facts.header("tokenward-proof") or ""
        if not DeviceKeys.verify(key, claim, proof_header, facts.body):
            return DeviceCheck("bad-signature", claimed=claim.device)
        return DeviceCheck("ok", device=claim.device, claimed=claim.device)

    @staticmethod
    def _history(plan: _Plan, results: list[Any]) -> History:
        h = plan.history

        def get(name: str) -> Any:
            return results[h[name]] if name in h else None

        redeemed, issued, registrations = get("redeemed"), get("issued"), get("registrations")
        return History(
            ips_per_device=get("ips_per_device"),
            accounts_per_device=get("accounts_per_device"),
            devices_per_subnet=get("devices_per_subnet"),
            inflight=get("inflight"),
            cadence=get("cadence"),
            challenges_issued=issued.count if isinstance(issued, WindowResult) else None,
            proofs_redeemed=redeemed.count if isinstance(redeemed, WindowResult) else None,
            registrations=registrations.count if isinstance(registrations, WindowResult) else None,
        )

    def _decide(
        self,
        policy: Policy,
        route: RouteSettings,
        outcome: ProofOutcome,
        signals: list[Signal],
        risk: RiskResult,
        over: Any,
        budget: ReserveResult | None = None,
        under_attack: bool = False,
        signed: SignatureClaims | None = None,
    ) -> Decision:
        reasons = tuple(s.name for s in signals if s.score or s.name.startswith("proof/"))
        reasons += tuple(name for name, _ in risk.contributions if name.startswith("rule/"))
        base = policy.difficulty_for(route)
        proof_signal = signals[0]  # proof_signals come first
        proof = dict(proof_signal.evidence) if outcome.claims is not None else None
        common: dict[str, Any] = {"signals": tuple(signals), "proof": proof, "risk": risk_summary(risk)}
        required = base + self._extra_bits(risk) + (policy.spike.difficulty_bonus if under_attack else 0)
        if signed is None and (outcome.claims is None or not outcome.first_use):
            if outcome.failure is not None:
                code, message = outcome.failure.code, outcome.failure.message
            elif outcome.claims is None:
                code, message = "proof_required", _MESSAGES["proof_required"]
            else:
                code, message = "proof_replayed", _MESSAGES["proof_replayed"]
            return Decision(
                Action.CHALLENGE, proof_signal.name, reasons, code=code, message=message,
                challenge=self.challenge_for(route, difficulty=required).to_wire(), **common,
            )  # fmt: skip
        if risk.rule is not None and risk.rule.action == "deny":
            return self._refuse(Action.BLOCK, f"rule/{risk.rule.name}", reasons, "blocked", common)
        if over is not None:
            retry = max(1, int(over.result.retry_after + 0.999))
            return self._refuse(
                Action.THROTTLE, f"limit/{over.spec.name}", (*reasons, f"limit/{over.spec.name}"),
                "throttled", common, retry_after=retry,
            )  # fmt: skip
        if budget is not None and not budget.ok:
            name = budget.exhausted.key.split(":")[1] if budget.exhausted is not None else "budget"
            return self._refuse(
                Action.THROTTLE, f"budget/{name}", (*reasons, f"budget/{name}"), "budget_exhausted", common,
                retry_after=max(1, int(budget.retry_after + 0.999)),
            )  # fmt: skip
        if risk.rule is not None and risk.rule.action == "allow":
            return Decision(Action.ALLOW, f"rule/{risk.rule.name}", reasons, **common)
        t = risk.threshold
        if t is not None and t.action == "block":
            return self._refuse(Action.BLOCK, f"risk/{t.score:g}", reasons, "blocked", common)
        if t is not None and t.action == "throttle":
            return self._refuse(
                Action.THROTTLE, f"risk/{t.score:g}", reasons, "throttled", common,
                retry_after=t.retry_after,
            )  # fmt: skip
        if outcome.claims is not None and outcome.claims.difficulty < required:
            return Decision(
                Action.CHALLENGE, "proof/challenge" if outcome.claims.difficulty < base else "risk/challenge",
                reasons, code="challenge", message=_MESSAGES["challenge"],
                challenge=self.challenge_for(route, difficulty=required).to_wire(),
                **common,
            )  # fmt: skip
        if t is not None and t.action == "degrade":
            d = route.degrade
            degrade = {"max_tokens": d.max_tokens if d else 256, "model": d.model if d else None}
            return Decision(Action.DEGRADE, f"risk/{t.score:g}", reasons, degrade=degrade, **common)
        return Decision(Action.ALLOW, "proof/ok", reasons, **common)

    @staticmethod
    def _extra_bits(risk: RiskResult) -> int:
        if risk.rule is not None and risk.rule.action == "challenge":
            return risk.rule.extra_bits
        t = risk.threshold
        return t.extra_bits if t is not None and t.action == "challenge" else 0

    @staticmethod
    def _refuse(
        action: Action, name: str, reasons: tuple[str, ...], code: str, common: dict[str, Any],
        retry_after: int | None = None,
    ) -> Decision:  # fmt: skip
        return Decision(
            action, name, reasons, code=code, message=_MESSAGES[code], retry_after=retry_after,
            **common,
        )  # fmt: skip

    @staticmethod
    def _spend_limit(retry_after: float) -> Decision:
        return Decision(
            Action.THROTTLE, "breaker/open", ("breaker/open",), code="spend_limit",
            message=_MESSAGES["spend_limit"], retry_after=max(1, int(retry_after + 0.999)),
        )  # fmt: skip

    @staticmethod
    def _unavailable(exc: Exception) -> Decision:
        return Decision(
            Action.THROTTLE, "store/unavailable", ("store/unavailable",), code="store_unavailable",
            message=_MESSAGES["store_unavailable"], retry_after=1, proof={"error": str(exc)},
        )  # fmt: skip

    # -- after the response ------------------------------------------------------------
    async def finish(
        self, facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
        decision_ms: float, total_ms: float,
    ) -> None:  # fmt: skip
        """Log the decision, then settle the request in one batch (release its
        concurrency slot, commit its spend). Settling runs as its own task, not awaited
        here: a cancelled request (client gone) still settles, and the response is never
        held up by it. ``close()`` waits for the tasks still running."""
        cost = self.cost(decision, outcome)
        self.record(facts, decision, outcome, decision_ms, total_ms, cost)
        ops = list(decision.settle)
        route_cfg = facts.route.conversation if facts.route is not None else None
        if decision.conversation is not None and route_cfg is not None and outcome.text:
            conv_id, user_text, _ = decision.conversation
            ops.extend(ops_to_save(conv_id, user_text, outcome.text, route_cfg))
        if decision.reservation is not None:
            ops.append(Commit(decision.reservation, cost or 0.0))
        if cost and facts.route is not None and self.policy.spike.enabled:
            ops.append(self.policy.spike.spend_op(facts.route.path, cost))
        if ops:
            route = facts.route.path if facts.route is not None else None
            if isinstance(self.store, MemoryStore):  # answers at once: no task to schedule
                self._settle_now(ops, route)
                return
            task = asyncio.ensure_future(self._settle(ops, route))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    def cost(self, decision: Decision, outcome: RequestOutcome) -> float | None:
        """Dollars the upstream call cost (exact usage when the upstream reported it)."""
        if outcome.usage is None:
            return None
        model = outcome.model or decision.model
        return self.policy.prices.cost(model, outcome.usage.input_tokens, outcome.usage.output_tokens)

    async def settled(self) -> None:
        """Wait until every request that finished has settled (tests, shutdown)."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def _settle(self, ops: list[Op], route: str | None = None) -> None:
        try:
            results = await self.store.execute(ops)
        except StoreUnavailable as exc:
            # The request may have been judged on the fail-open fallback: settle there.
            results = self.fallback.execute_now(ops)
            log.warning("settled a request locally, the store is unavailable: %s", exc)
        self._settled(ops, results, route)

    def _settle_now(self, ops: list[Op], route: str | None) -> None:
        assert isinstance(self.store, MemoryStore)
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
                metric = "requests" if op.key.startswith("spike:req:") else "spend"
                verdict = self.spike.observe(route, self.clock(), **{metric: result})
                self._notify(verdict.events)

    # -- challenges --------------------------------------------------------------------
    def challenge_for(
        self, route: RouteSettings | str, now: float | None = None, difficulty: int | None = None
    ) -> Challenge:
        policy = self.policy
        if isinstance(route, str):  # the device registration pseudo-route
            path, ttl = route, policy.proof.ttl
            bits = policy.registration_difficulty() if difficulty is None else difficulty
        else:
            path, ttl = route.path, policy.ttl_for(route)
            bits = policy.difficulty_for(route) if difficulty is None else difficulty
        return issue_challenge(self.keys, path, min(bits, 40), ttl, self.clock() if now is None else now)

    async def adaptive_challenge(self, facts: RequestFacts, route: RouteSettings | str) -> Challenge:
        """A challenge whose difficulty reflects what is already known about the asker."""
        policy = self.policy
        if isinstance(route, str):
            return self.challenge_for(route)
        keys = Keys(ip=facts.client_ip, subnet=subnet_of(facts.client_ip), route=route.path)
        ops: list[Op] = [
            Hit(f"issued:{keys.subnet}", _INF, 600),
            Hit(f"redeemed:{keys.subnet}", _INF, 600, 0.0),
        ]
        limits = limit_ops(policy.limits, keys, cost=0.0)
        ops.extend(hit for _, hit in limits)
        try:
            results = await self.store.execute(ops)
        except StoreUnavailable:
            return self.challenge_for(route)  # the request itself will meet the store's policy
        history = History(challenges_issued=results[0].count, proofs_redeemed=results[1].count)
        signals = behaviour_signals(history, policy.behaviour)
        signals += [
            Signal(f"limit/{spec.name}", 2.0, {"count": round(r.count, 1)})
            for (spec, _), r in zip(limits, results[2:], strict=True)
            if r.count >= spec.limit * 0.8
        ]
        risk = policy.engine_for(route).assess(
            signals,
            RuleInput(facts.client_ip, facts.headers, None, None, route.path, frozenset(s.name for s in signals)),
        )
        return self.challenge_for(route, difficulty=policy.difficulty_for(route) + self._extra_bits(risk))

    # -- devices -----------------------------------------------------------------------
    async def register_device(self, facts: RequestFacts, public_key: bytes) -> tuple[int, dict[str, Any]]:
        """``POST /.tokenward/device``: a proved registration of a device's public key."""
        policy = self.policy
        if not policy.devices.enabled:
            return 404, {"code": "not_found", "message": "Device registration is not enabled here."}
        key = load_public_key(public_key)
        if isinstance(key, str):
            return 400, {"code": "bad_request", "message": key.capitalize() + "."}
        header = facts.header("tokenward-proof")
        if header is None:
            return 401, {
                "code": "proof_required",
                "message": _MESSAGES["proof_required"],
                "challenge": self.challenge_for(DEVICE_ROUTE).to_wire(),
            }
        proof = verify_proof(
            self.keys, header, route=DEVICE_ROUTE, body=facts.body, signals_header=None,
            now=facts.received_at, min_difficulty=policy.registration_difficulty(),
        )  # fmt: skip
        if isinstance(proof, ProofFailure):
            return 401, {
                "code": proof.code,
                "message": proof.message,
                "challenge": self.challenge_for(DEVICE_ROUTE).to_wire(),
            }
        did = device_id(public_key)
        subnet = subnet_of(facts.client_ip)
        ttl = proof.expires_at - facts.received_at + _CONSUME_GRACE
        b = policy.behaviour
        counter = Hit(f"registrations:{subnet}", b.max_registrations_per_subnet, b.window)
        first, registrations = await self.store.execute([Consume("used:" + proof.challenge_id.hex(), ttl), counter])
        if not first:
            if registrations.allowed:  # a replay registers nothing: give its count back
                await self.store.execute([Hit(counter.key, _INF, counter.window, -counter.cost)])
            return 401, {
                "code": "proof_replayed",
                "message": _MESSAGES["proof_replayed"],
                "challenge": self.challenge_for(DEVICE_ROUTE).to_wire(),
            }
        if not registrations.allowed:
            log.debug("device registration refused: %s is over max_registrations_per_subnet", subnet)
            return 429, {
                "code": "throttled",
                "message": "Too many devices registered from this network right now; retry after the indicated time.",
                "retry_after": max(1, int(registrations.retry_after + 0.999)),
            }
        await self.store.execute([Put(f"devkey:{did}", public_key, policy.devices.ttl)])
        self.devices.remember(did, public_key)
        log.debug("device %s registered; %d registrations from %s", did, round(registrations.count), subnet)
        return 200, {"device": did}

    # -- the log -----------------------------------------------------------------------
    def record(
        self, facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
        decision_ms: float, total_ms: float, cost: float | None = None,
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
                risk=dict(decision.risk) if decision.risk is not None else None,
                model=outcome.model or decision.model,
                tokens_in=outcome.usage.input_tokens if outcome.usage else None,
                tokens_out=outcome.usage.output_tokens if outcome.usage else None,
                usage_exact=outcome.usage.exact if outcome.usage else None,
                cost_usd=round(cost, 8) if cost is not None else None,
                reserved_usd=round(decision.reserved_usd, 8) if decision.reserved_usd else None,
            )
        )

    async def start(self) -> None:
        if self.log is not None:
            await self.log.start()
        await self.alerter.start()
        if self.policy.budgets or self.policy.breaker.ceiling is not None:
            # Load the vocabularies before the first request needs an estimate.
            await asyncio.to_thread(self.estimator.warm, None)

    async def close(self) -> None:
        await self.settled()
        await self.alerter.close()
        try:
            if self.log is not None:
                await self.log.close()
        finally:
            await self.store.close()


def _signal_dict(s: Signal) -> dict[str, Any]:
    return {"name": s.name, "score": s.score, "evidence": dict(s.evidence)}


def _signed_signal(signed: SignatureClaims) -> Signal:
    return Signal("signature/ok", 0.0, signed.evidence())
