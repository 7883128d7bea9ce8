"""The pipeline: every protected request is judged on its own evidence.

A request first has to make sense (a parsable API call). Its proof is checked without
I/O: a challenge this server signed, unexpired, for this route, with work done over
exactly these body bytes. Then one store batch consumes the challenge, fetches what the
store knows about the request's device, account, address and subnet, and counts the
request against its limits. The evidence becomes signals (proof, device, client,
browser, network, identity, behaviour, content), the signals a risk score, and the
score a decision (:mod:`.decide`). In shadow mode the decision is logged and the request
goes through. After the response the request is logged and settles in one more batch
(:mod:`.settle`). The guard does no I/O beyond the Store and the decision log.

Where each step lives: :mod:`.plan` (the store batch), :mod:`.challenges` (challenges
and difficulty), :mod:`.devices`, :mod:`.families` (the signal families),
:mod:`.decide`, :mod:`.settle`; this module runs them in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..content import (
    ConversationIds,
    ConversationTurn,
    PurposeResult,
    conversation_context,
    ops_to_load,
    purpose_action,
    purpose_signals,
    template_keys,
    template_ops,
    transcript,
)
from ..decision import Action, Decision, FollowUp, Signal
from ..evidence import Evidence, prepare_evidence
from ..facts import RequestFacts, TrustedProxies, limits_problem
from ..limits import Keys, LimitSpec, LimitVerdict, limit_verdict
from ..log import DecisionLog
from ..metrics import Metrics
from ..money import TokenEstimator
from ..money.alerts import Alerter
from ..money.spike import RouteMode, SpendBreaker, SpikeDetector, StateChange
from ..policy import Policy, RouteSettings
from ..proof import Challenge, KeyRing, ProofClaims, ProofFailure
from ..proof.device import DeviceClaim, DeviceKeys
from ..proof.scope import ConsumptionScope, Spent
from ..proof.signature import SignatureClaims, SignatureFailure, signature_failure
from ..scoring import RuleInput, risk_summary
from ..signals import ProofOutcome
from ..signals.behaviour import DeviceCheck
from ..signals.browser import parse_env
from ..signals.identity import Account, IdentityStats, is_new_account
from ..signals.network import subnet_of
from ..store import Consume, Distinct, Hit, MemoryStore, Op, ReserveResult, Store, StoreUnavailable
from . import challenges, conversations, decide, devices, signed_requests
from .base import DEVICE_ROUTE, INF, MESSAGES, RequestOutcome
from .families import SignalContext, collect
from .plan import Plan, Spending, consume_op, plan_request
from .settle import Settlement

__all__ = ["Guard"]

log = logging.getLogger("tokenward.guard")


@dataclass(slots=True)
class _Asker:
    """Who is asking, as far as can be told without the store."""

    keys: Keys
    signed: SignatureClaims | None = None
    proof: ProofClaims | ProofFailure | None = None
    claim: DeviceClaim | str | None = None
    account: Any = None
    precheck: DeviceCheck | None = None

    @property
    def verified(self) -> bool:  # did its work: its body may be read, its batch run
        return self.signed is not None or isinstance(self.proof, ProofClaims)


@dataclass(slots=True)
class _Batch:
    """The store's answers to a plan."""

    results: list[Any]
    outcome: ProofOutcome
    fallback: bool  # judged on local memory: the store was unavailable


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
        metrics: Metrics | None = None,
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
        self.clock = clock
        self.devices = DeviceKeys()
        self.trust = devices.DeviceTrust()
        self.spent = Spent()  # challenges consumed here: replays refused without a batch (unproved.py)
        # Where fail-open routes are judged while the store is unavailable.
        self.fallback = MemoryStore(max_used=100_000, max_keys=50_000, clock=clock)
        self.conversations = ConversationIds(keys)
        self.estimator = TokenEstimator(backend=policy.money.estimator)
        self.spike = SpikeDetector(policy.spike)
        self.breaker = SpendBreaker(policy.breaker)
        self.alerter = Alerter(policy.alerts)
        self.metrics = metrics
        self.settlement = Settlement(store, self.fallback, log, self._observe_spike, metrics)
        if metrics is not None:
            metrics.routes(r.path for r in policy.routes if r.protect)
            if log is not None and hasattr(log, "observer"):
                log.observer = metrics.log_flushed

    @property
    def log(self) -> DecisionLog | None:
        """The decision log (None: decisions are not logged)."""
        return self.settlement.log

    @log.setter
    def log(self, value: DecisionLog | None) -> None:
        self.settlement.log = value

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
        started: list[Plan] = []  # the request's plan, once it has one
        try:
            decision, plan = await self._judge(policy, facts, route, started)
            return decide.follow_up(policy, facts, route, decision, plan, self.estimator)
        except Exception:
            # A bug, answered as a logged gateway error; the proof must not replay it.
            replayed = await self._abandon(facts, route, started[0] if started else None)
            if replayed is None:
                raise
            log.debug("request %s: a replay of a request that could not be judged", facts.request_id)
            return replayed

    async def _judge(
        self, policy: Policy, facts: RequestFacts, route: RouteSettings, started: list[Plan]
    ) -> tuple[Decision, Plan | None]:
        """Parse, verify, plan one store batch, run it, confirm, collect signals, decide."""
        asker = await self._admit(policy, facts, route)
        if isinstance(asker, Decision):
            return asker, None
        plan = self._plan(policy, facts, route, asker)
        started.append(plan)
        conversation = self._conversation(facts, route, asker.keys)
        if isinstance(conversation, Decision):
            return conversation, None
        if conversation is not None and not conversation.new:
            plan.conversation = plan.add(ops_to_load(conversation.conversation or "")[0])
        purpose = self._read_content(policy, facts, route, asker, plan)
        batch = await self._execute(policy, facts, route, asker, plan, purpose)
        if isinstance(batch, Decision):
            return batch, None
        confirmed = await self._confirm(facts, route, asker, plan, batch, conversation)
        if isinstance(confirmed, Decision):
            return confirmed, plan
        device, limit_answers, held = confirmed
        device = self._earned(policy, plan, batch, device)
        signals = collect(self._context(policy, facts, route, asker, plan, batch, device))
        return await self._verdict(
            policy, facts, route, asker, plan, batch, signals, device, limit_answers, purpose, held, conversation
        )

    async def _admit(self, policy: Policy, facts: RequestFacts, route: RouteSettings) -> _Asker | Decision:
        """What can be told without the store: the request makes sense, the service is
        under its spend ceiling, and who is asking (a trusted signature, or a proof)."""
        if facts.problem is not None:
            return decide.bad_request("request/bad", facts.problem)
        now = facts.received_at
        breaker = self.breaker.check(now)
        self._notify(breaker.events)
        if breaker.open:
            return decide.spend_limit(breaker.retry_after)
        signed = await signed_requests.claims(self.evidence.clients, self.store, self.scope, facts, route, now)
        if isinstance(signed, Decision):
            return signed
        if signed is not None:  # a trusted server client: its signature replaces the proof
            keys = Keys(facts.client_ip, subnet_of(facts.client_ip), route.path, None, signed.account)
            asker = _Asker(keys, signed=signed, account=signed)
        else:
            claim = devices.device_claim(facts)
            account = self.evidence.accounts.resolve(facts, now=now, via_trusted_proxy=facts.via_proxy)
            precheck = devices.precheck_device(self.devices, facts, claim)
            keys = Keys(
                ip=facts.client_ip,
                subnet=subnet_of(facts.client_ip),
                route=route.path,
                device=precheck.device if precheck is not None and precheck.status == "ok" else None,
                account=account.id if isinstance(account, Account) else None,
            )
            proof = challenges.verify(self.keys, facts, route)
            asker = _Asker(keys, proof=proof, claim=claim, account=account, precheck=precheck)
        if facts.call is not None and asker.verified:
            # Bodies are measured once they proved their work: the walk costs CPU.
            beyond = limits_problem(facts.call, max_depth=policy.max_json_depth, max_messages=policy.max_messages)
            if beyond is not None:
                return decide.bad_request("request/limits", beyond)
        return asker

    def _plan(self, policy: Policy, facts: RequestFacts, route: RouteSettings, asker: _Asker) -> Plan:
        """The request's one store batch (empty for a request without verified work)."""
        if not asker.verified:
            return Plan()  # no verified work: read nothing, count nothing
        under_attack = self.spike.mode(route.path) is RouteMode.UNDER_ATTACK
        claim, signed = asker.claim, asker.signed
        claimed = claim.device if isinstance(claim, DeviceClaim) else None
        spending = Spending(
            self.estimator,
            tighten=policy.spike.new_client_budget_factor if under_attack else 1.0,
            ceiling=self.breaker.budget(),
            device_share=self.trust.share(policy.devices.ramp, claimed),
        )
        unknown = claimed if claimed is not None and self.devices.cached(claimed) is None else None
        signed_ops = None
        if signed is not None:
            clients = self.evidence.clients
            signed_ops = (
                clients.revocation_op(signed),
                clients.limits_for(signed.client, policy.limits),
                clients.budgets_for(signed.client, policy.budgets),
            )
        return plan_request(
            policy, facts, route, asker.proof, asker.keys, spending,
            device_unknown=unknown, claimed_device=claimed, signed=signed, signed_ops=signed_ops,
        )  # fmt: skip

    def _read_content(
        self, policy: Policy, facts: RequestFacts, route: RouteSettings, asker: _Asker, plan: Plan
    ) -> asyncio.Future[PurposeResult] | None:
        """Only requests that did their work are read: scoring costs CPU an attacker must
        not get for free. The body's turns are read once for every content check; the
        purpose scorer runs off the loop while the batch goes out. Adds the template and
        account counters to the batch."""
        purpose: asyncio.Future[PurposeResult] | None = None
        keys = asker.keys
        if asker.verified and facts.call is not None:
            content = route.content or policy.content
            scorer = self.evidence.purposes.get(route.path)
            tcfg = route.templates or policy.templates
            if scorer is not None or tcfg.enabled or content.enabled:
                plan.transcript = tr = transcript(facts.call.body)
                text = tr.latest_user() if scorer is not None else None
                if scorer is not None and text:
                    purpose = asyncio.ensure_future(scorer.score(text, conversation_context(tr)))
                member = {"device": keys.device, "account": keys.account, "ip": keys.ip}.get(tcfg.identity)
                plan.templates = template_keys(facts.call, tcfg, client_system=content.client_system, tr=tr)
                plan.template_answers = plan.extend(template_ops(plan.templates, member or keys.subnet, tcfg))
        account = asker.account
        if isinstance(asker.proof, ProofClaims) and isinstance(account, Account):
            h = plan.history
            new = 1.0 if is_new_account(account, policy.identity, facts.received_at) else 0.0
            h.new_accounts = plan.add(Hit(f"acct-new:{route.path}", INF, 600, new))
            h.all_accounts = plan.add(Hit(f"acct-all:{route.path}", INF, 600))
            if keys.device is not None:
                h.accounts_per_device = plan.add(
                    Distinct(f"dev-accts:{keys.device}", account.id, policy.behaviour.window)
                )
        return purpose

    async def _execute(
        self, policy: Policy, facts: RequestFacts, route: RouteSettings, asker: _Asker, plan: Plan,
        purpose: asyncio.Future[PurposeResult] | None,
    ) -> _Batch | Decision:  # fmt: skip
        """Run the batch. A store that cannot answer fails the request closed, or (a
        `fail_open` route) has it judged on this instance's memory under an emergency limit."""
        fallback = False
        metrics = self.metrics
        try:
            if metrics is None or not plan.ops:
                results = await self.store.execute(plan.ops) if plan.ops else []
            else:
                sent = time.perf_counter()
                results = await self.store.execute(plan.ops)
                metrics.store_batch(time.perf_counter() - sent)
        except StoreUnavailable as exc:
            if metrics is not None:
                metrics.store_failed()
            # Revocations live in the store: a signed request is never judged without it.
            if policy.store_failure_for(route) == "fail_closed" or (asker.signed and self.evidence.clients.store_keys):
                if purpose is not None:
                    purpose.cancel()
                return decide.unavailable(exc)
            fallback = True
            e = policy.emergency
            plan.emergency = plan.add(Hit("emergency", e.limit, e.window))
            results = await self.fallback.execute(plan.ops)
        plan.ran = True
        proof = asker.proof
        outcome = ProofOutcome(
            claims=proof if isinstance(proof, ProofClaims) else None,
            failure=proof if isinstance(proof, ProofFailure) else None,
            first_use=plan.consume is not None and bool(plan.consume.read(results)),
        )
        plan.fresh = outcome.first_use if plan.consume is not None else None
        if outcome.claims is not None and plan.consume is not None:
            self.spent.add(outcome.claims.challenge_id, outcome.claims.expires_at)
        return _Batch(results, outcome, fallback)

    async def _confirm(
        self, facts: RequestFacts, route: RouteSettings, asker: _Asker, plan: Plan, batch: _Batch,
        conversation: ConversationTurn | None,
    ) -> tuple[DeviceCheck, list[Any], tuple[str, Any] | None] | Decision:  # fmt: skip
        """What needed the store: the signature is not revoked, a held conversation is
        known, the device's key is the one it signed with."""
        results = batch.results
        signed = asker.signed
        if signed is not None:
            revocation = plan.revocation.read(results) if plan.revocation is not None else None
            confirmed = self.evidence.clients.confirm(
                signed, first_use=batch.outcome.first_use, revocation=revocation, now=facts.received_at
            )
            if isinstance(confirmed, SignatureFailure):
                return decide.signature_refusal(confirmed)
        held = conversations.held(self.conversations, facts, route, asker.keys, plan, results, conversation)
        if isinstance(held, Decision):
            return held
        device = asker.precheck or devices.check_device(self.devices, facts, asker.claim, plan, results)
        answers = plan.limit_answers.read(results)
        if device.status == "ok" and device.device and asker.precheck is None and asker.keys.device is None:
            answers = await devices.rekey(self.store, plan, answers, asker.keys, device.device)
        return device, answers, held

    def _context(
        self, policy: Policy, facts: RequestFacts, route: RouteSettings, asker: _Asker, plan: Plan,
        batch: _Batch, device: DeviceCheck,
    ) -> SignalContext:  # fmt: skip
        signed = asker.signed
        return SignalContext(
            facts=facts,
            policy=policy,
            evidence=self.evidence,
            now=facts.received_at,
            outcome=batch.outcome,
            signed=signed,
            device=device,
            account=asker.account,
            history=plan.history.read(batch.results),
            identity_stats=_identity_stats(plan, batch.results),
            env=parse_env(facts.header("tokenward-signals")) if signed is None else None,
            browser_route=route.clients == "browser" and signed is None,
            fallback=batch.fallback,
            verified=asker.verified,
            content=route.content or policy.content,
            transcript=plan.transcript,
            templates=plan.templates,
            template_counts=plan.template_answers.read(batch.results),
            template_settings=route.templates or policy.templates,
        )

    async def _verdict(
        self, policy: Policy, facts: RequestFacts, route: RouteSettings, asker: _Asker, plan: Plan,
        batch: _Batch, signals: list[Signal], device: DeviceCheck, limit_answers: list[Any],
        purpose: asyncio.Future[PurposeResult] | None, held: tuple[str, Any] | None,
        conversation: ConversationTurn | None,
    ) -> tuple[Decision, Plan]:  # fmt: skip
        """Score the signals, weigh the limits, the budgets and the route's purpose, decide."""
        now = facts.received_at
        under_attack = policy.spike.enabled and self.spike.mode(route.path) is RouteMode.UNDER_ATTACK
        off_purpose: str | None = None
        if purpose is not None and route.purpose is not None:
            result = await purpose
            signals.extend(purpose_signals(result, route.purpose))
            off_purpose = purpose_action(result, route.purpose)
            if off_purpose == "score" and self.spike.mode(route.path) is RouteMode.UNDER_ATTACK:
                off_purpose = policy.spike.off_purpose  # under attack, off-purpose calls may be refused
        engine = self._engines.get(route.path) or policy.engine_for(route)
        risk = engine.assess(signals, RuleInput(
            ip=facts.client_ip, headers=facts.headers, account=asker.keys.account, device=device.device,
            route=route.path, signals=frozenset(s.name for s in signals),
        ))  # fmt: skip
        plan.counted = [hit for (_, hit), r in zip(plan.limits, limit_answers, strict=True) if r.allowed]
        over = self._over(policy, plan, batch, limit_answers, device.share)
        budget: ReserveResult | None = None
        if plan.reserve is not None:
            budget = plan.reserve.read(batch.results)
            tripped = self.breaker.record(now, budget)
            self._notify(tripped)
            if tripped or self.breaker.is_open(now):
                plan.reservation = None  # nothing was held
                return decide.spend_limit(self.breaker.check(now).retry_after), plan
            if not budget.ok:
                plan.reservation = None
        if off_purpose == "refuse" and not (risk.rule is not None and risk.rule.action == "allow"):
            message = route.purpose.message if route.purpose is not None else MESSAGES["blocked"]
            return Decision(
                Action.BLOCK, "content/off-purpose", ("content/off-purpose",), tuple(signals),
                code="blocked", message=message, risk=risk_summary(risk),
            ), plan  # fmt: skip
        decision = self._decide(
            policy, route, batch.outcome, signals, risk, over, budget,
            under_attack=under_attack, signed=asker.signed, proven=bool(device.clean),
        )  # fmt: skip
        if held is not None and conversation is not None:
            decision = decision.evolve(work=FollowUp(conversation=(held[0], conversation.text, held[1])))
        if off_purpose == "degrade" and decision.action is Action.ALLOW:
            decision = decision.evolve(
                action=Action.DEGRADE, name="content/off-purpose", degrade=decide.degraded(route)
            )
        return decision, plan

    def _earned(self, policy: Policy, plan: Plan, batch: _Batch, device: DeviceCheck) -> DeviceCheck:
        """A verified device with its clean calls and the share of its limits they earn
        (devices.ramp), learnt here for its next budgets."""
        slot = plan.history.clean
        if slot is None or device.status != "ok" or device.device is None:
            return device
        clean = slot.read(batch.results).count
        self.trust.learn(device.device, clean)
        plan.clean_key = f"clean:{device.device}"
        return replace(device, clean=clean, share=policy.devices.ramp.share(clean))

    @staticmethod
    def _over(
        policy: Policy, plan: Plan, batch: _Batch, limit_answers: list[Any], share: float | None
    ) -> LimitVerdict | None:
        """The limit the request is over, if any (the emergency limit when judged locally);
        a verified device's limits are the share of them it has earned (devices.ramp)."""
        over = limit_verdict(plan.limits, limit_answers, device_share=1.0 if share is None else share)
        if plan.emergency is not None and not plan.emergency.read(batch.results).allowed:
            e = policy.emergency
            spec = LimitSpec(name="emergency", key="global", limit=e.limit, window=e.window)
            over = LimitVerdict(spec, plan.emergency.read(batch.results))
        return over

    def _decide(self, policy: Policy, route: RouteSettings, *args: Any, **kwargs: Any) -> Decision:
        def challenge(r: RouteSettings, difficulty: int) -> dict[str, Any]:
            return self.challenge_for(r, difficulty=difficulty).to_wire()

        return decide.decide(policy, route, *args, challenge=challenge, **kwargs)

    def _conversation(
        self, facts: RequestFacts, route: RouteSettings, keys: Keys
    ) -> ConversationTurn | Decision | None:
        return conversations.turn(self.conversations, facts, route, keys)

    async def _abandon(self, facts: RequestFacts, route: RouteSettings, plan: Plan | None) -> Decision | None:
        """Judging failed (a bug): use up the request's proof or signature anyway and give
        back what its batch counted. Its replays fail the same way, but are then answered
        as the replays they are (a refusal, returned), not as failures: no free tracebacks."""
        ops: list[Op] = []
        consume: Consume | None = None
        fresh: bool | None = None
        try:
            if plan is not None and plan.consume is not None:
                op = plan.ops[plan.consume.index]
                consume = op if isinstance(op, Consume) else None
            elif plan is None:
                proof = challenges.verify(self.keys, facts, route)
                if isinstance(proof, ProofClaims):
                    consume = consume_op(proof, facts.received_at)
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
            return decide.signature_refusal(signature_failure("signature_replayed"))
        return Decision(
            Action.CHALLENGE, "proof/replayed", ("proof/replayed",), code="proof_replayed",
            message=MESSAGES["proof_replayed"], challenge=self.challenge_for(route).to_wire(),
        )  # fmt: skip

    def _notify(self, events: tuple[StateChange, ...]) -> None:
        for event in events:
            self.alerter.notify(event)
        if events and self.metrics is not None:
            self.metrics.events(events)

    def _observe_spike(self, route: str, metric: str, result: Any) -> None:
        verdict = self.spike.observe(route, self.clock(), **{metric: result})
        self._notify(verdict.events)

    # -- challenges and devices ---------------------------------------------------------
    def challenge_for(
        self, route: RouteSettings | str, now: float | None = None, difficulty: int | None = None
    ) -> Challenge:
        challenge = challenges.challenge_for(
            self.policy, self.keys, route, self.clock() if now is None else now, difficulty
        )
        if self.metrics is not None:
            self.metrics.challenge(challenge.difficulty)
        return challenge

    async def adaptive_challenge(self, facts: RequestFacts, route: RouteSettings | str) -> Challenge:
        """A challenge whose difficulty reflects what is already known about the asker."""
        if isinstance(route, str):
            return self.challenge_for(route)
        challenge = await challenges.adaptive_challenge(self.policy, self.keys, self.store, facts, route, self.clock())
        if self.metrics is not None:
            self.metrics.challenge(challenge.difficulty)
        return challenge

    async def register_device(self, facts: RequestFacts, public_key: bytes) -> tuple[int, dict[str, Any]]:
        """``POST /.tokenward/device``: a proved registration of a device's public key."""
        return await devices.register_device(
            self.policy, facts, public_key, keys=self.keys, store=self.store, devices=self.devices,
            challenge=lambda: self.challenge_for(DEVICE_ROUTE).to_wire(),
        )  # fmt: skip

    # -- after the response -------------------------------------------------------------
    async def finish(
        self, facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
        decision_ms: float, total_ms: float,
    ) -> None:  # fmt: skip
        """Log the decision, then settle the request in one batch (:mod:`.settle`).
        ``close()`` waits for the settlements still running."""
        self.settlement.finish(self.policy, facts, decision, outcome, decision_ms, total_ms)

    def cost(self, decision: Decision, outcome: RequestOutcome) -> float | None:
        """Dollars the upstream call cost (exact usage when the upstream reported it)."""
        return self.settlement.cost(self.policy, decision, outcome)

    def record(
        self, facts: RequestFacts, decision: Decision, outcome: RequestOutcome,
        decision_ms: float, total_ms: float, cost: float | None = None,
    ) -> None:  # fmt: skip
        self.settlement.record(facts, decision, outcome, decision_ms, total_ms, cost)

    async def settled(self) -> None:
        """Wait until every request that finished has settled (tests, shutdown)."""
        await self.settlement.settled()

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


def _identity_stats(plan: Plan, results: list[Any]) -> IdentityStats | None:
    h = plan.history
    if h.all_accounts is None or h.new_accounts is None:
        return None
    total, new = h.all_accounts.read(results).count, h.new_accounts.read(results).count
    # accounts_on_device stays None: behaviour/accounts-per-device already weighs it.
    return IdentityStats(new_account_share=new / total if total else None, recent_requests=int(total))
