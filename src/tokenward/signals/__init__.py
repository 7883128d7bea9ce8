"""Signals: small pure functions from what is known about a request to evidence.

One module per family, each a pure function returning ``list[Signal]``: the proof
(:mod:`.proof`), the device and the client's behaviour over time (:mod:`.behaviour`),
the program that sent the request (:mod:`.http_client`), the browser's own report
(:mod:`.browser`), the network (:mod:`.network`), identity (:mod:`.identity`) and the
prompt (:mod:`.prompt`). The guard runs them in one ordered list over one context
(``tokenward.guard.families``); adding a family is a module here and a line there.
What each signal means and weighs: docs/signals.md.
"""

from ..decision import Signal
from .proof import ProofOutcome, proof_signals

__all__ = ["ProofOutcome", "Signal", "proof_signals"]
