"""Signals from the per-request proof: was fresh work done for exactly this request?"""

from __future__ import annotations

from dataclasses import dataclass

from ..decision import Signal
from ..proof.challenge import ProofClaims, ProofFailure

__all__ = ["ProofOutcome", "proof_signals"]


@dataclass(frozen=True, slots=True)
class ProofOutcome:
    """The proof step's result: verified claims (and whether this use was the first) or
    the reason it failed. ``None`` claims and failure means no proof was sent."""

    claims: ProofClaims | None = None
    failure: ProofFailure | None = None
    first_use: bool = False


def proof_signals(outcome: ProofOutcome, now: float) -> list[Signal]:
    if outcome.failure is not None:
        return [Signal(f"proof/{outcome.failure.code.removeprefix('proof_')}", 0.0, {"code": outcome.failure.code})]
    claims = outcome.claims
    if claims is None:
        return [Signal("proof/missing", 0.0, {})]
    evidence = {
        "difficulty": claims.difficulty,
        "kid": claims.kid.hex(),
        "challenge_id": claims.challenge_id.hex(),
        "age_ms": round((now - claims.issued_at) * 1000, 1),
    }
    if not outcome.first_use:
        return [Signal("proof/replayed", 0.0, evidence)]
    return [Signal("proof/ok", 0.0, evidence)]
