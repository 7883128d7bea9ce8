"""Requests that bring no work: refused without being judged.

A protected call that carries no proof can only be told to solve a challenge, and so can
one whose proof does not hold (malformed, not signed here, expired, for another route,
for other bytes), and so can a replay of a challenge this process has already seen
consumed (``Guard.spent``; one consumed elsewhere is found out by the store batch, as
always). Nothing else about it could change that answer: its body, its client
and its network are weighed when it comes back with its work done, and a harder proof is
asked for then if they call for one (docs/risk.md). So it is answered for what a refusal
must cost, which is what a flood of such requests costs the gateway: no request facts,
no signals, no store batch; a challenge minted, the refusal's bytes filled into a
template rendered once (``decision.refusal_template``), one decision record logged
(journaled) before the answer is sent.

The whole pipeline still judges, as before: a route in shadow mode (its refusals are
logged with every signal and the call goes through), a route that requires signed
requests, a request that carries a signature where signed requests are accepted, and
any request while the spend breaker has something to report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..decision import JSON_HEADERS, PROOF_AUTHENTICATE, refusal_template
from ..log import DecisionRecord
from ..money.spike import RouteMode
from ..policy import Mode, RouteSettings
from ..proof import ProofClaims, ProofFailure, verify_proof
from .base import MESSAGES

if TYPE_CHECKING:
    from .pipeline import Guard

__all__ = ["Lacking", "Unproved", "answer_unproved", "lacking_work", "refuse_unproved"]

_SIGNATURE = frozenset({b"signature", b"signature-input"})
_CHALLENGED = (b"tokenward-decision", b"challenge")

# (status, response headers, body): what the HTTP layer sends as it is.
Unproved = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass(frozen=True, slots=True)
class Lacking:
    """Why a request has no work to show: its refusal's code, sentence and decision name,
    and the X-Forwarded-For it carried (the log's client address)."""

    code: str
    message: str
    name: str
    forwarded: bytes | None
    evidence: dict[str, Any] = field(default_factory=dict)  # the proof signal's
    ours: bool = False  # a challenge this gateway signed (its signature verified)


_MISSING = ("proof_required", MESSAGES["proof_required"], "proof/missing")


def lacking_work(
    guard: Guard, route: RouteSettings, raw_headers: list[tuple[bytes, bytes]], body: bytes, now: float
) -> Lacking | ProofClaims | None:
    """Does this request bring no work (no proof, or one that does not verify)? Else it
    needs the pipeline: the proof's claims when it verified here (``RequestFacts.proven``:
    not verified twice), None in the cases of the module doc. Cheap and without I/O: the
    refusal itself is :func:`answer_unproved`."""
    policy = guard.policy
    if policy.mode_for(route) is not Mode.ENFORCE or route.signed == "require" or not guard.breaker.quiet:
        return None
    proof = signals = forwarded = None
    signed = device = False
    for k, v in raw_headers:
        key = k.lower()  # servers lower-case header names; one that does not must not get past
        if key == b"tokenward-proof":
            proof = v if proof is None else proof + b", " + v  # repeated headers join, as in RequestFacts
        elif key == b"tokenward-signals":
            signals = v if signals is None else signals + b", " + v
        elif key == b"x-forwarded-for":
            forwarded = v if forwarded is None else forwarded + b", " + v
        elif key in _SIGNATURE:
            signed = True
        elif key == b"tokenward-device":
            device = True
    if signed and route.signed != "ignore" and guard.evidence.clients.enabled:
        return None
    if proof is None:
        return Lacking(*_MISSING, forwarded)
    checked = verify_proof(
        guard.keys, proof.decode("latin-1"), route=route.path, body=body, signals_header=signals, now=now
    )
    if isinstance(checked, ProofFailure):
        name = f"proof/{checked.code.removeprefix('proof_')}"
        ours = checked.code != "proof_invalid"  # the others are told only once the signature verified
        return Lacking(checked.code, checked.message, name, forwarded, {"code": checked.code}, ours)
    if device or not guard.spent.spent(checked.challenge_id, now):
        return checked  # work done: judged on its evidence (a device's replay too: its answer may say more)
    evidence = {
        "difficulty": checked.difficulty, "kid": checked.kid.hex(), "challenge_id": checked.challenge_id.hex(),
        "age_ms": round((now - checked.issued_at) * 1000, 1),
    }  # fmt: skip
    return Lacking("proof_replayed", MESSAGES["proof_replayed"], "proof/replayed", forwarded, evidence, True)


def refuse_unproved(
    guard: Guard, route: RouteSettings, method: str, path: str, raw_headers: list[tuple[bytes, bytes]],
    peer: str, body: bytes, request_id: str, now: float, started: float,
) -> Unproved | None:  # fmt: skip
    """:func:`lacking_work`, then :func:`answer_unproved` (logged); None: the pipeline's."""
    lacking = lacking_work(guard, route, raw_headers, body, now)
    if not isinstance(lacking, Lacking):
        return None
    return answer_unproved(guard, route, lacking, method, path, peer, len(body), request_id, now, started)


def answer_unproved(
    guard: Guard, route: RouteSettings, lacking: Lacking, method: str, path: str, peer: str, size: int,
    request_id: str, now: float, started: float,
) -> Unproved:  # fmt: skip
    """Mint the challenge, fill the template, log the decision (journaled) -> the answer."""
    policy = guard.policy
    code, name, forwarded = lacking.code, lacking.name, lacking.forwarded
    difficulty = policy.difficulty_for(route)
    if lacking.ours:
        # A proof of ours that failed (expired, replayed, for other bytes or another route)
        # comes from a client that follows the protocol, which retries once: its new
        # challenge is as hard as this route's risk could ask, so that retry is judged on
        # its merits and never asked for more (docs/risk.md).
        difficulty += guard.policy.engine_for(route).most_extra_bits(route.path)
    if policy.spike.enabled and guard.spike.mode(route.path) is RouteMode.UNDER_ATTACK:
        difficulty += policy.spike.difficulty_bonus
    challenge = guard.challenge_for(route, now, difficulty)
    head, tail = refusal_template(route.api, code, lacking.message)
    content = head + challenge.wire_json() + tail
    ms = round((time.perf_counter() - started) * 1000, 3)
    client_ip = guard.trusted.client_ip(peer, forwarded.decode("latin-1") if forwarded is not None else None)
    record = DecisionRecord(
        ts=now, request_id=request_id, method=method, path=path, route=route.path, client_ip=client_ip,
        action="challenge", name=name, code=code, reasons=[name],
        signals=[{"name": name, "score": 0.0, "evidence": lacking.evidence}],
        proof=lacking.evidence if name == "proof/replayed" else None,
        status=401, decision_ms=ms, total_ms=ms,
        # what the refusal saved at most: its input and the route's whole output allowance
        held_usd=round(policy.prices.worst_case(route.model, size / 4, policy.output_cap_for(route)), 8) or None,
    )  # fmt: skip
    if guard.log is not None:
        guard.log.record(record)
    if guard.metrics is not None:
        guard.metrics.decision(record)
    headers = [
        *JSON_HEADERS, (b"content-length", b"%d" % len(content)), (b"tokenward-request-id", request_id.encode()),
        _CHALLENGED, PROOF_AUTHENTICATE,
    ]  # fmt: skip
    return 401, headers, content
