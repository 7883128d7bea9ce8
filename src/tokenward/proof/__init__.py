"""Per-request evidence that a client did fresh work for *this* request."""

from .challenge import (
    Challenge,
    ProofClaims,
    ProofFailure,
    issue_challenge,
    solve,
    verify_proof,
)
from .keys import Key, KeyRing, KeyRingError

__all__ = [
    "Challenge",
    "Key",
    "KeyRing",
    "KeyRingError",
    "ProofClaims",
    "ProofFailure",
    "issue_challenge",
    "solve",
    "verify_proof",
]
