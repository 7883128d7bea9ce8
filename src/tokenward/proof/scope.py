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
* signed requests (whose nonces the client draws): a signature the previous memory may
  have consumed is ``signature_expired`` with a ``Retry-After``; the client signs again.
  The previous memory accepted ``created`` up to ``max_future`` seconds ahead of its
  clock, and ``created`` has whole seconds, so only a signature created at least
  ``max_future`` seconds after this memory began is certainly new: for that long
  after a start (5 s by default), signed requests wait. (Comparing ``created`` with the
  start second alone let a request signed in the same second as a quick restart, or
  by a client whose clock runs ahead, be replayed once after it.)

A shared store (Redis) outlives processes and is shared by instances: no epoch, and
challenges stay valid across restarts and instances, as they must.
"""

from __future__ import annotations

import math
import secrets
import weakref
from dataclasses import dataclass
from typing import Any

from .signature import SignatureClaims, SignatureFailure, signature_failure

__all__ = ["ConsumptionScope", "Spent"]


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

    def admit(self, signed: SignatureClaims, max_future: float, now: float) -> SignatureClaims | SignatureFailure:
        """A verified signature, or ``signature_expired`` with the seconds to wait when
        a previous lifetime of the memory could have consumed its nonce: one accepted
        before this memory began had ``created`` below ``since + max_future``."""
        if self.epoch is None:
            return signed
        first_new = math.ceil(self.since + max_future)  # the earliest `created` no earlier memory accepted
        if signed.created < first_new:
            wait = max(1, math.ceil(first_new - now))
            return signature_failure(
                "signature_expired",
                f"This gateway started moments ago and cannot tell it from one it accepted before; "
                f"sign the request again in {wait} s.",
                signed.keyid,
                retry_after=wait,
            )
        return signed


class Spent:
    """Challenges this process saw consumed, so that a replay of one is refused without a
    store batch (guard/unproved.py). Only ever a shortcut: a challenge not found here is
    consumed in the store as always. Bounded: ``cap`` entries, the oldest forgotten first;
    an entry is kept until its challenge expires, after which a replay is refused as
    expired anyway."""

    __slots__ = ("_cap", "_until")

    def __init__(self, cap: int = 50_000):
        self._cap = cap
        self._until: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def add(self, challenge_id: bytes, expires_at: float) -> None:
        until = self._until
        if challenge_id in until:
            return
        if len(until) >= self._cap:
            del until[next(iter(until))]  # dicts keep insertion order: the oldest
        until[challenge_id] = expires_at

    def spent(self, challenge_id: bytes, now: float) -> bool:
        expires_at = self._until.get(challenge_id)
        return expires_at is not None and now < expires_at


_MEMORY_SCOPES: weakref.WeakKeyDictionary[Any, ConsumptionScope] = weakref.WeakKeyDictionary()
