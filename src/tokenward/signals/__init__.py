"""Signals: small pure functions from what is known about a request to evidence.

Every family module exposes functions ``(facts, ...) -> list[Signal]``; adding one never
touches the pipeline. Today the only family is the proof itself.
"""

from ..decision import Signal
from .proof import ProofOutcome, proof_signals

__all__ = ["ProofOutcome", "Signal", "proof_signals"]
