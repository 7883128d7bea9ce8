"""Challenges and difficulty: what a client must solve, and whether its proof holds.

A challenge is signed for one route and one difficulty (docs/protocol.md). The
difficulty starts at the route's and grows with what is already known about the asker
(its subnet's unredeemed challenges, how close it is to its limits) and with the risk
score of the request that needs a harder proof.
"""

from __future__ import annotations

from ..decision import Signal
from ..facts import RequestFacts
from ..limits import Keys, limit_ops
from ..policy import Policy, RouteSettings
from ..proof import Challenge, KeyRing, ProofClaims, ProofFailure, issue_challenge, verify_proof
from ..scoring import RiskResult, RuleInput
from ..signals.behaviour import History, behaviour_signals
from ..signals.network import subnet_of
from ..store import Hit, Op, Store, StoreUnavailable
from .base import INF

__all__ = ["adaptive_challenge", "challenge_for", "extra_bits", "verify"]


def challenge_for(
    policy: Policy, keys: KeyRing, route: RouteSettings | str, now: float, difficulty: int | None = None
) -> Challenge:
    if isinstance(route, str):  # the device registration pseudo-route
        path, ttl = route, policy.proof.ttl
        bits = policy.registration_difficulty() if difficulty is None else difficulty
    else:
        path, ttl = route.path, policy.ttl_for(route)
        bits = policy.difficulty_for(route) if difficulty is None else difficulty
    return issue_challenge(keys, path, min(bits, 40), ttl, now)


async def adaptive_challenge(
    policy: Policy, keys: KeyRing, store: Store, facts: RequestFacts, route: RouteSettings, now: float
) -> Challenge:
    """A challenge whose difficulty reflects what is already known about the asker."""
    subnet = subnet_of(facts.client_ip)
    ops: list[Op] = [Hit(f"issued:{subnet}", INF, 600), Hit(f"redeemed:{subnet}", INF, 600, 0.0)]
    limits = limit_ops(policy.limits, Keys(ip=facts.client_ip, subnet=subnet, route=route.path), cost=0.0)
    ops.extend(hit for _, hit in limits)
    try:
        results = await store.execute(ops)
    except StoreUnavailable:
        return challenge_for(policy, keys, route, now)  # the request itself will meet the store's policy
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
    return challenge_for(policy, keys, route, now, policy.difficulty_for(route) + extra_bits(risk))


def verify(keys: KeyRing, facts: RequestFacts, route: RouteSettings) -> ProofClaims | ProofFailure | None:
    """The request's proof, checked without I/O (None: it carries none)."""
    if facts.proven is not None:
        return facts.proven
    header = facts.header("tokenward-proof")
    if header is None:
        return None
    signals = facts.header("tokenward-signals")
    return verify_proof(
        keys,
        header,
        route=route.path,
        body=facts.body,
        signals_header=signals.encode() if signals is not None else None,
        now=facts.received_at,
    )


def extra_bits(risk: RiskResult) -> int:
    """The difficulty a `challenge` rule or threshold adds to the route's."""
    if risk.rule is not None and risk.rule.action == "challenge":
        return risk.rule.extra_bits
    t = risk.threshold
    return t.extra_bits if t is not None and t.action == "challenge" else 0
