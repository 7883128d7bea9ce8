"""How long single use can be remembered: what binds challenges and signatures to a store.

Single use is decided by consuming a key in the Store (``used:<challenge id>``,
``sig:<keyid>:<nonce>``). A memory store remembers only for its own lifetime, in its
own process: after a restart, or at another process, a challenge or signature used
before would be fresh again while the signing keys (``proof.keys_file``,
``TOKENWARD_KEYS``) still vouch for it. So evidence is only accepted within the memory
that will remember its use:

* challenges: the guard's key ring is scoped to a random epoch drawn when the memory
  store is first used (proof/challenge.py); a challenge signed under another epoch is
  ``proof_expired`` and the refusal carries a fresh one;
* signed requests (whose nonces the client draws): a signature ``created`` before that
  moment (to the second) is ``signature_expired``; the client signs again.

A shared store (Redis) outlives processes and is shared by instances: no epoch, and
challenges stay valid across restarts and instances, as they must.
"""

from __future__ import annotations

import secrets
import weakref
from dataclasses import dataclass
from typing import Any

from .signature import SignatureClaims, SignatureFailure, signature_failure

__all__ = ["ConsumptionScope"]


@dataclass(frozen=True, slots=True)
class ConsumptionScope:
    """The memory behind single use. ``epoch`` None: a shared store that outlives this
    process (nothing to bind); else a random value and the time it began (``since``)."""

    epoch: bytes | None
    since: float

    @classmethod
    def of(cls, store: Any, now: float) -> ConsumptionScope:
        """The scope of ``store``: one per memory store object, drawn on first use (so
        guards sharing one memory store, as tests and embedded apps do, share it)."""
        if not getattr(store, "immediate", False):  # shared: outlives this process (Store.immediate)
            return cls(None, 0.0)
        scope = _MEMORY_SCOPES.get(store)
        if scope is None:
            scope = _MEMORY_SCOPES[store] = cls(secrets.token_bytes(16), now)
        return scope

    def admit(self, signed: SignatureClaims) -> SignatureClaims | SignatureFailure:
        """A verified signature, or ``signature_expired`` when it was made before this
        memory began: its nonce may have been used in a previous lifetime."""
        # `created` has whole seconds: a signature of the same second as the start is
        # let through (the restart itself takes longer than that).
        if self.epoch is not None and signed.created < int(self.since):
            return signature_failure(
                "signature_expired", "It was made before this gateway started; sign the request again.", signed.keyid
            )
        return signed


_MEMORY_SCOPES: weakref.WeakKeyDictionary[Any, ConsumptionScope] = weakref.WeakKeyDictionary()
