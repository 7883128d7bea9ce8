"""A memory store forgets consumed nonces when the gateway restarts: no signature the
previous lifetime could have accepted may be accepted by the next one, whatever the
client's clock (within the window the gateway allows), the second it signed in, or how
quickly the gateway came back. And a client that signs once the wait is over gets in.

The previous lifetime is judged by the real verifier (its validity window) and the real
scope; the next one by the same code with a memory that began later.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenward.proof.scope import ConsumptionScope
from tokenward.proof.signature import SignatureClaims, SignatureFailure

from .helpers import NOW, Client, registry


def judged(client: Client, scope: ConsumptionScope, now: float) -> SignatureClaims | SignatureFailure | None:
    reg = registry(client.spec())
    signed = reg.verify(client.facts(now=now), now=now)
    if isinstance(signed, SignatureClaims):
        return scope.admit(signed, reg.rules.max_future, now)
    return signed


@settings(max_examples=400, deadline=None)
@given(
    old_age=st.floats(0.0, 100.0),  # how long the previous lifetime had run when it accepted
    skew=st.floats(-29.0, 5.0),  # the client's clock minus the gateway's, within what is allowed
    gap=st.floats(0.001, 10.0),  # from that acceptance to the next lifetime's first use
    replay_after=st.floats(0.0, 60.0),  # from then to the replay
)
def test_nothing_the_previous_lifetime_accepted_is_accepted_after_a_restart(
    old_age: float, skew: float, gap: float, replay_after: float
) -> None:
    old = ConsumptionScope(b"o" * 16, NOW)
    accepted_at = NOW + old_age
    client = Client(now=accepted_at + skew)
    first = judged(client, old, accepted_at)
    if not isinstance(first, SignatureClaims):
        return  # refused the first time: nothing to replay (clock too far off)
    new = ConsumptionScope(b"n" * 16, accepted_at + gap)
    replay = judged(client, new, new.since + replay_after)
    assert isinstance(replay, SignatureFailure) and replay.code == "signature_expired", (first.created, new.since)


@settings(max_examples=200, deadline=None)
@given(since=st.floats(0.0, 10.0), skew=st.floats(-3.0, 3.0))
def test_a_client_that_waits_what_the_refusal_says_gets_in(since: float, skew: float) -> None:
    scope = ConsumptionScope(b"n" * 16, NOW + since)
    now = scope.since  # a client that calls the moment the gateway is up
    client = Client(now=now + skew)
    refused = judged(client, scope, now)
    if isinstance(refused, SignatureClaims):
        assert refused.created >= scope.since + 5  # only a clock far enough ahead
        return
    assert isinstance(refused, SignatureFailure) and refused.code == "signature_expired"
    assert refused.retry_after is not None and 1 <= refused.retry_after <= 6 + math.ceil(max(0.0, -skew))
    later = now + refused.retry_after + max(0.0, -skew)  # a slow clock waits as much longer
    client.now = later + skew
    assert isinstance(judged(client, scope, later), SignatureClaims)


def test_a_shared_store_has_no_wait() -> None:
    client = Client()
    assert isinstance(judged(client, ConsumptionScope(None, 0.0), NOW), SignatureClaims)
