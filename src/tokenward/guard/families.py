"""The signal families, in order: each a pure function of one :class:`SignalContext`.

A family reads what the request and the store batch told the guard and returns its
signals (docs/signals.md); none does I/O. To add one, write it (in ``signals/``, as a
function of the context or of the few fields it needs) and add one line to
:data:`FAMILIES`. The proof family comes first: the decision reads its signal first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..content import TemplateSettings, Transcript, template_signals
from ..decision import Signal
from ..evidence import Evidence
from ..facts import RequestFacts
from ..policy import Policy
from ..proof.signature import SignatureClaims
from ..signals import ProofOutcome, proof_signals
from ..signals.behaviour import DeviceCheck, History, behaviour_signals, device_signals
from ..signals.browser import BrowserEnv, browser_signals
from ..signals.http_client import client_signals
from ..signals.identity import IdentityStats, identity_signals
from ..signals.network import network_signals
from ..signals.prompt import ContentSettings, content_signals

__all__ = ["FAMILIES", "Family", "SignalContext", "collect"]


@dataclass(slots=True)
class SignalContext:
    """Everything a signal family may read about one request. Families only read it. (Not
    frozen: a frozen dataclass sets each of these fields through object.__setattr__, which
    cost ~3 µs per request on the path every refusal takes.)"""

    facts: RequestFacts
    policy: Policy
    evidence: Evidence
    now: float
    outcome: ProofOutcome  # the proof, checked and (first use or not) consumed
    signed: SignatureClaims | None  # a trusted client's signature, replacing the proof
    device: DeviceCheck
    account: Any  # Account | AccountProblem | None (identity.resolve)
    history: History
    identity_stats: IdentityStats | None
    env: BrowserEnv | str | None  # the Tokenward-Signals report, parsed
    browser_route: bool  # the route is for browsers and the request is not signed
    fallback: bool  # judged on local memory: the store was unavailable
    verified: bool  # did its work (fresh proof or signature): its body may be read
    content: ContentSettings
    transcript: Transcript | None
    templates: Sequence[str]  # template fingerprints counted across identities
    template_counts: Sequence[int]
    template_settings: TemplateSettings


Family = Callable[[SignalContext], list[Signal]]


def _proof(c: SignalContext) -> list[Signal]:
    if c.signed is not None:
        return [Signal("signature/ok", 0.0, c.signed.evidence())]
    return proof_signals(c.outcome, c.facts.received_at)


def _fallback(c: SignalContext) -> list[Signal]:
    return [Signal("store/fallback", 0.0, {"store": "local memory"})] if c.fallback else []


def _device(c: SignalContext) -> list[Signal]:
    return device_signals(c.device, browser_route=c.browser_route) if c.signed is None else []


def _client(c: SignalContext) -> list[Signal]:
    return client_signals(c.facts, c.policy.client, browser_route=c.browser_route, via_trusted_proxy=c.facts.via_proxy)


def _browser(c: SignalContext) -> list[Signal]:
    return browser_signals(c.env, c.facts, c.outcome.claims, c.policy.browser, now=c.now, browser_route=c.browser_route)


def _network(c: SignalContext) -> list[Signal]:
    return network_signals(c.facts, c.evidence.lists, c.policy.network)


def _identity(c: SignalContext) -> list[Signal]:
    if c.signed is not None:
        return []
    return identity_signals(c.account, c.facts, c.policy.identity, now=c.now, stats=c.identity_stats)


def _behaviour(c: SignalContext) -> list[Signal]:
    return behaviour_signals(c.history, c.policy.behaviour)


def _content(c: SignalContext) -> list[Signal]:
    if not c.verified or c.facts.call is None:
        return []
    return content_signals(c.facts.call, c.content, c.transcript)


def _templates(c: SignalContext) -> list[Signal]:
    return template_signals(c.templates, c.template_counts, c.template_settings)


FAMILIES: tuple[Family, ...] = (
    _proof,
    _fallback,
    _device,
    _client,
    _browser,
    _network,
    _identity,
    _behaviour,
    _content,
    _templates,
)


def collect(context: SignalContext) -> list[Signal]:
    signals: list[Signal] = []
    for family in FAMILIES:
        signals.extend(family(context))
    return signals
