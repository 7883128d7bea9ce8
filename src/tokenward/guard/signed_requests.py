"""Signed requests: a trusted server client's RFC 9421 signature replaces the proof
(docs/signed-requests.md). Verified without the store, except for keys kept in the
store that this instance has not seen yet; revocation is confirmed in the batch."""

from __future__ import annotations

from ..decision import Decision
from ..facts import RequestFacts
from ..policy import RouteSettings
from ..proof.scope import ConsumptionScope
from ..proof.signature import SignatureClaims, SignatureFailure, signature_failure
from ..store import Store, StoreUnavailable
from ..trusted_clients import ClientRegistry
from .decide import signature_refusal, unavailable

__all__ = ["claims"]


async def claims(
    clients: ClientRegistry, store: Store, scope: ConsumptionScope, facts: RequestFacts, route: RouteSettings,
    now: float,
) -> SignatureClaims | Decision | None:  # fmt: skip
    """The signature's claims, a refusal, or None when the request is not signed for
    this gateway (the proof-of-work path applies)."""
    if route.signed == "ignore" or not clients.enabled:
        return signature_refusal(signature_failure("signature_required")) if route.signed == "require" else None
    fetch = clients.prefetch(facts.headers)  # keys in the store this instance has not seen yet
    if fetch:
        try:
            clients.learn(fetch, await store.execute(fetch))
        except StoreUnavailable as exc:
            return unavailable(exc)
    signed = clients.verify(facts, now=now)
    if isinstance(signed, SignatureClaims):
        signed = scope.admit(signed, clients.rules.max_future, now)  # not one an earlier memory consumed
    if isinstance(signed, SignatureFailure):
        return signature_refusal(signed)
    if signed is not None and signed.key.kind != "client":
        signed = None  # a recognised agent (Web Bot Auth) still proves its work
    if signed is None and route.signed == "require":
        return signature_refusal(signature_failure("signature_required"))
    return signed
