"""The plan: one store batch per request, and where each of its answers lands.

A verified request (a fresh proof or a trusted signature) costs one round trip to the
store: it consumes its challenge, fetches its device key if this instance has not seen
it, counts itself against its limits, reserves its worst-case cost against its budgets
and reads the history its signals need. Each operation's answer is a named, typed slot
of the plan (``plan.consume.read(results)``), never an index computed by hand. After
the response the plan says what to give back (:meth:`Plan.settle`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..content import Transcript
from ..facts import RequestFacts
from ..limits import Keys, LimitSpec, limit_ops
from ..money import TokenEstimator
from ..money.budgets import BudgetSpec, budgets_for
from ..money.tokens import endpoint_of, max_output
from ..policy import Policy, RouteSettings
from ..proof import ProofClaims, ProofFailure
from ..proof.signature import SignatureClaims
from ..signals.behaviour import History
from ..store import (
    Budget,
    Cadence,
    CadenceResult,
    Commit,
    Consume,
    Distinct,
    Get,
    Hit,
    Inflight,
    Op,
    Reserve,
    ReserveResult,
    WindowResult,
)
from .base import CONSUME_GRACE, INF, INFLIGHT_TTL

__all__ = ["HistorySlots", "Plan", "Slot", "Span", "plan_request", "worst_case"]

T = TypeVar("T")


@dataclass(slots=True)  # not frozen: a frozen init costs twice as much, ~14 slots a request
class Slot(Generic[T]):
    """Where one operation's answer lands in the batch's results."""

    index: int

    def read(self, results: Sequence[Any]) -> T:
        value: T = results[self.index]
        return value


@dataclass(slots=True)
class Span(Generic[T]):
    """Where a run of operations' answers lands."""

    start: int = 0
    stop: int = 0

    def read(self, results: Sequence[Any]) -> list[T]:
        return list(results[self.start : self.stop])


@dataclass(slots=True)
class HistorySlots:
    """The answers behaviour and identity signals read (None: not asked this time)."""

    inflight: Slot[int] | None = None
    cadence: Slot[CadenceResult] | None = None
    redeemed: Slot[WindowResult] | None = None
    issued: Slot[WindowResult] | None = None
    registrations: Slot[WindowResult] | None = None
    ips_per_device: Slot[int] | None = None
    devices_per_subnet: Slot[int] | None = None
    accounts_per_device: Slot[int] | None = None
    new_accounts: Slot[WindowResult] | None = None
    all_accounts: Slot[WindowResult] | None = None
    clean: Slot[WindowResult] | None = None  # the claimed device's clean calls (devices.ramp)

    def read(self, results: Sequence[Any]) -> History:
        def get(slot: Slot[Any] | None) -> Any:
            return slot.read(results) if slot is not None else None

        redeemed, issued, registrations = get(self.redeemed), get(self.issued), get(self.registrations)
        return History(
            ips_per_device=get(self.ips_per_device),
            accounts_per_device=get(self.accounts_per_device),
            devices_per_subnet=get(self.devices_per_subnet),
            inflight=get(self.inflight),
            cadence=get(self.cadence),
            challenges_issued=issued.count if isinstance(issued, WindowResult) else None,
            proofs_redeemed=redeemed.count if isinstance(redeemed, WindowResult) else None,
            registrations=registrations.count if isinstance(registrations, WindowResult) else None,
        )


@dataclass(slots=True)
class Plan:
    """The store batch of one request, and where each answer lands."""

    ops: list[Op] = field(default_factory=list)
    consume: Slot[bool] | None = None
    device_key: Slot[bytes | None] | None = None
    limits: list[tuple[LimitSpec, Hit]] = field(default_factory=list)
    limit_answers: Span[WindowResult] = field(default_factory=Span)
    counted: list[Hit] = field(default_factory=list)  # limit hits that were added
    inflight: str | None = None  # the concurrency counter this request holds
    emergency: Slot[WindowResult] | None = None  # the emergency limit's hit (fail-open fallback)
    revocation: Slot[Any] | None = None  # a signing key's revocation entry
    conversation: Slot[Any] | None = None  # a server-held conversation's history
    templates: list[str] = field(default_factory=list)  # template fingerprints counted across identities
    template_answers: Span[Any] = field(default_factory=Span)
    counts: bool = False  # a fresh proof: this request counts towards the route's rate
    ran: bool = False  # the batch was executed
    fresh: bool | None = None  # after it: whether the proof or signature was used for the first time
    reserve: Slot[ReserveResult] | None = None  # the budget reservation
    reserved: float = 0.0  # dollars held
    reservation: str | None = None
    model: str | None = None  # the model the call is priced as
    tokens_in: int | None = None  # estimated input tokens (when a reservation needed them)
    history: HistorySlots = field(default_factory=HistorySlots)
    transcript: Transcript | None = None  # the call's turns, read once for every content check
    account: str | None = None  # who the limits and budgets counted it as (for the log)
    clean_key: str | None = None  # the verified device's clean-call counter (devices.ramp)

    def add(self, op: Op) -> Slot[Any]:
        self.ops.append(op)
        return Slot(len(self.ops) - 1)

    def extend(self, ops: Sequence[Op]) -> Span[Any]:
        start = len(self.ops)
        self.ops.extend(ops)
        return Span(start, len(self.ops))

    def settle(self, *, forwarded: bool) -> tuple[Op, ...]:
        """What to run after the response: release the concurrency slot and, for a
        request that was not forwarded, give back what it counted against the limits
        (limits count admitted requests)."""
        ops: list[Op] = []
        if self.inflight is not None:
            ops.append(Inflight(self.inflight, -1, INFLIGHT_TTL))
        if not forwarded:
            ops.extend(Hit(h.key, INF, h.window, -h.cost) for h in self.counted)
            if self.reservation is not None:
                ops.append(Commit(self.reservation, 0.0))  # nothing was spent
        return tuple(ops)


def consume_op(proof: ProofClaims, received_at: float) -> Consume:
    """Use a challenge up, remembered until it could no longer be replayed anyway."""
    return Consume("used:" + proof.challenge_id.hex(), proof.expires_at - received_at + CONSUME_GRACE)


@dataclass(frozen=True, slots=True)
class Spending:
    """What budgets a request reserves against, beyond the policy's own."""

    estimator: TokenEstimator
    tighten: float = 1.0  # under attack, new clients' budgets shrink by this factor
    ceiling: Budget | None = None  # the spend breaker's ceiling, as one more budget
    device_share: float | None = None  # the verified device's share of its budgets (devices.ramp)


def plan_request(
    policy: Policy,
    facts: RequestFacts,
    route: RouteSettings,
    proof: ProofClaims | ProofFailure | None,
    keys: Keys,
    spending: Spending,
    *,
    device_unknown: str | None = None,
    claimed_device: str | None = None,
    signed: SignatureClaims | None = None,
    signed_ops: tuple[Op | None, Sequence[LimitSpec], Sequence[BudgetSpec]] | None = None,
) -> Plan:
    """The batch of a request: nothing for one without verified work; else its consume,
    limits, budgets and history. ``device_unknown`` names a claimed device whose key this
    instance must fetch; ``claimed_device`` the device the request says it is (its clean
    calls are read for devices.ramp); ``signed_ops`` are a signed client's revocation
    check, limits and budgets."""
    plan = Plan()
    limits: Sequence[LimitSpec] = policy.limits
    budgets: Sequence[BudgetSpec] = policy.budgets
    if signed is not None:
        plan.consume = plan.add(Consume(signed.consume_key, signed.consume_ttl))
        revocation, limits, budgets = signed_ops if signed_ops is not None else (None, limits, budgets)
        if revocation is not None:
            plan.revocation = plan.add(revocation)
    elif not isinstance(proof, ProofClaims):
        return plan  # no verified work: read nothing, count nothing
    else:
        if device_unknown is not None:
            plan.device_key = plan.add(Get(f"devkey:{device_unknown}"))
        plan.consume = plan.add(consume_op(proof, facts.received_at))
    plan.counts = True
    plan.account = keys.account
    plan.limits = limit_ops(limits, keys)
    plan.limit_answers = plan.extend([hit for _, hit in plan.limits])
    _plan_budget(plan, policy, facts, route, keys, budgets, spending)
    b = policy.behaviour
    who = keys.device or "ip:" + keys.ip
    h = plan.history
    plan.inflight = f"inflight:{who}"
    h.inflight = plan.add(Inflight(plan.inflight, 1, INFLIGHT_TTL))
    h.cadence = plan.add(Cadence(f"cadence:{who}"))
    h.redeemed = plan.add(Hit(f"redeemed:{keys.subnet}", INF, 600))
    h.issued = plan.add(Hit(f"issued:{keys.subnet}", INF, 600, 0.0))
    h.registrations = plan.add(Hit(f"registrations:{keys.subnet}", INF, b.window, 0.0))
    ramp = policy.devices.ramp
    if claimed_device is not None and ramp.enabled:
        h.clean = plan.add(Hit(f"clean:{claimed_device}", INF, ramp.window, 0.0))
    if keys.device is not None:
        h.ips_per_device = plan.add(Distinct(f"dev-ips:{keys.device}", keys.ip, b.window))
        h.devices_per_subnet = plan.add(
            Distinct(f"subnet-devs:{keys.subnet}", keys.device, b.window, cap=b.max_devices_per_subnet * 4)
        )
    return plan


def _plan_budget(
    plan: Plan,
    policy: Policy,
    facts: RequestFacts,
    route: RouteSettings,
    keys: Keys,
    specs: Sequence[BudgetSpec],
    spending: Spending,
) -> None:
    """Reserve the call's worst case against every budget that applies (and the
    breaker's ceiling), in the same batch; settled at the exact cost afterwards."""
    call = facts.call
    plan.model = (call.model if call is not None else None) or route.model
    if not specs and spending.ceiling is None:
        return
    body = call.body if call is not None else {}
    plan.tokens_in = spending.estimator.estimate_input(body, plan.model)
    plan.reserved = worst_case(policy, route, body, plan.model, plan.tokens_in)
    budgets = budgets_for(
        specs, keys, tighten=spending.tighten, device_share=spending.device_share, one_call=plan.reserved
    )
    if spending.ceiling is not None:
        budgets.insert(0, spending.ceiling)
    if not budgets:
        plan.tokens_in, plan.reserved = None, 0.0
        return
    plan.reservation = facts.request_id
    plan.reserve = plan.add(Reserve(tuple(budgets), plan.reserved, facts.request_id, policy.money.hold))


def worst_case(policy: Policy, route: RouteSettings, body: Any, model: str | None, tokens_in: int) -> float:
    """Dollars a call can cost at most: its estimated input and its whole output allowance."""
    endpoint = endpoint_of(route.api.value, route.path)
    tokens_out = max_output(body, endpoint, policy.output_cap_for(route))
    return policy.prices.worst_case(model, tokens_in, tokens_out)
