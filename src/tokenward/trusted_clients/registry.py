"""The registry: every key in force and its client, and what the guard asks of them.

It verifies signed requests (pure, no I/O) and tells the guard what to put in its store
batch: keys to fetch, the revocation to read, the limits and budgets a client counts
against.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..limits import LimitSpec
from ..money.budgets import BudgetSpec
from ..proof.signature import (
    WEB_BOT_AUTH_TAG,
    ResolvedKey,
    SignatureClaims,
    SignatureFailure,
    SignatureRules,
    SignedRequest,
    load_public_key,
    public_key_b64url,
    signature_failure,
    signature_tags_unverified,
    signed_keyids_unverified,
    verify_signature,
)
from ..store import Get
from .agents import AgentKeys, signature_agent
from .key_records import KeyFile, KeyRecord, Revocation, revocation_key, store_key
from .settings import ClientsError, ClientSpec, ClientsSettings, route_allowed

__all__ = ["ClientRegistry"]

_CACHE_MAX = 10_000  # keys learned from the Store, per instance


@dataclass(frozen=True, slots=True)
class _Key:
    resolved: ResolvedKey
    not_after: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class _Client:
    limits: tuple[LimitSpec, ...] | None
    budgets: tuple[BudgetSpec, ...] | None


class ClientRegistry:
    """Every key in force and its client; verifies signed requests (pure, no I/O) and
    tells the guard what to put in its store batch.

    Build it off the event loop (it reads the key file): ``ClientRegistry.load(settings,
    limits=policy.limits, budgets=policy.budgets)``."""

    def __init__(
        self,
        settings: ClientsSettings,
        records: Sequence[KeyRecord] = (),
        *,
        limits: Sequence[LimitSpec] = (),
        budgets: Sequence[BudgetSpec] = (),
    ):
        self.settings = settings
        self.rules = settings.rules()
        self.origins = settings.origins()
        self.store_keys = settings.keys_in_store
        self._specs = {c.name: c for c in settings.named}
        self._clients = {c.name: self._client(c, limits, budgets) for c in settings.named}
        self._agents = AgentKeys(settings.agents) if settings.agents else None
        self._agent_rules = SignatureRules.web_bot_auth(settings.agent_max_age, settings.max_future)
        self._keys: dict[str, _Key] = {}
        self._learned: OrderedDict[str, _Key] = OrderedDict()  # keys fetched from the Store
        problems: list[str] = []
        for c in settings.named:
            for k in c.keys:
                not_after = k.not_after.timestamp() if k.not_after is not None else None
                self._add(k.keyid, c.name, k.public_key, (), not_after, None, problems)
        for r in records:
            self._add(r.keyid, r.client, r.public_key, r.routes, r.not_after, r.revoked_at, problems)
        if problems:
            raise ClientsError(problems)

    @classmethod
    def load(
        cls, settings: ClientsSettings, *, limits: Sequence[LimitSpec] = (), budgets: Sequence[BudgetSpec] = ()
    ) -> ClientRegistry:
        """Read ``settings.keys_file`` (blocking) and build the registry."""
        records = KeyFile(settings.keys_file).load() if settings.keys_file is not None else []
        return cls(settings, records, limits=limits, budgets=budgets)

    @property
    def enabled(self) -> bool:
        """Anything to verify against: clients, keys or the Store."""
        return bool(self._keys or self.store_keys)

    def __repr__(self) -> str:
        return f"ClientRegistry({len(self._keys)} keys, store={self.store_keys})"

    # -- building ---------------------------------------------------------------------
    @staticmethod
    def _client(c: ClientSpec, limits: Sequence[LimitSpec], budgets: Sequence[BudgetSpec]) -> _Client:
        by_limit = {s.name: s for s in limits}
        by_budget = {s.name: s for s in budgets}
        problems = [
            f"client {c.name}: no limit named {n!r}" for n in c.limits or () if isinstance(n, str) and n not in by_limit
        ] + [
            f"client {c.name}: no budget named {n!r}"
            for n in c.budgets or ()
            if isinstance(n, str) and n not in by_budget
        ]
        if problems:
            raise ClientsError(problems)
        own_limits = None
        if c.limits is not None:
            own_limits = tuple(
                by_limit[x] if isinstance(x, str) else
                LimitSpec(name=f"{c.name}.{x.name}", key="account", limit=x.limit, window=x.window,
                          routes=x.routes, fallback="skip")
                for x in c.limits
            )  # fmt: skip
        own_budgets = None
        if c.budgets is not None:
            own_budgets = tuple(
                by_budget[x] if isinstance(x, str) else
                BudgetSpec(name=f"{c.name}.{x.name}", key="account", usd=x.usd, window=x.window,
                           routes=x.routes, fallback="skip")
                for x in c.budgets
            )  # fmt: skip
        return _Client(own_limits, own_budgets)

    def _entry(
        self, keyid: str, client: str, public_key: str, routes: tuple[str, ...],
        not_after: float | None, revoked_at: float | None,
    ) -> _Key:  # fmt: skip
        spec = self._specs.get(client)
        if spec is not None:
            if spec.routes:
                routes = spec.routes  # the policy's word wins over what a key was made with
            if keyid in spec.revoked:
                revoked_at = -math.inf
        return _Key(ResolvedKey(keyid, client, load_public_key(public_key), routes), not_after, revoked_at)

    def _add(
        self, keyid: str, client: str, public_key: str, routes: tuple[str, ...],
        not_after: float | None, revoked_at: float | None, problems: list[str],
    ) -> None:  # fmt: skip
        try:
            entry = self._entry(keyid, client, public_key, routes, not_after, revoked_at)
        except ValueError as exc:
            problems.append(f"key {keyid}: {exc}")
            return
        known = self._keys.get(keyid)
        if known is None:
            self._keys[keyid] = entry
            return
        r = known.resolved
        if r.client != client or public_key_b64url(r.public_key) != public_key_b64url(entry.resolved.public_key):
            problems.append(f"keyid {keyid} is defined twice with different keys or clients")
            return
        # The same key in the policy and the key file: the stricter dates win.
        self._keys[keyid] = _Key(
            replace(r, routes=r.routes or entry.resolved.routes),
            _earliest(known.not_after, entry.not_after),
            _earliest(known.revoked_at, entry.revoked_at),
        )

    # -- KeyLookup ----------------------------------------------------------------------
    def resolve_key(self, keyid: str, now: float) -> ResolvedKey | SignatureFailure:
        entry = self._keys.get(keyid) or self._learned.get(keyid)
        if entry is None:
            return signature_failure("unknown_key", keyid=keyid)
        if entry.revoked_at is not None and now >= entry.revoked_at:
            return signature_failure("key_revoked", keyid=keyid)
        if entry.not_after is not None and now >= entry.not_after:
            return signature_failure("key_revoked", "It was retired after a rotation.", keyid)
        return entry.resolved

    # -- the guard's calls, in order ------------------------------------------------------
    @staticmethod
    def signed(facts_headers: Mapping[str, str]) -> bool:
        """The request carries an RFC 9421 signature (header mapping in lower case)."""
        return "signature-input" in facts_headers or "signature" in facts_headers

    def prefetch(self, facts_headers: Mapping[str, str]) -> list[Get]:
        """Before verifying: the ``Get``s of keys this instance has not seen yet (Store
        keys only; usually none). Run them, then hand the answers to :meth:`learn`."""
        if not self.store_keys:
            return []
        return [
            Get(store_key(k))
            for k in signed_keyids_unverified(facts_headers, exclude_tag=WEB_BOT_AUTH_TAG)[:2]
            if k not in self._keys and k not in self._learned
        ]

    def learn(self, ops: Sequence[Get], results: Sequence[Any]) -> None:
        for op, raw in zip(ops, results, strict=True):
            if not isinstance(raw, bytes):
                continue  # unknown keys are not cached: verification says unknown_key
            try:
                r = KeyRecord.from_dict(json.loads(raw), "store")
                entry = self._entry(r.keyid, r.client, r.public_key, r.routes, r.not_after, None)
            except (ValueError, TypeError):
                continue
            if op.key != store_key(r.keyid) or r.keyid in self._keys:
                continue
            self._learned[r.keyid] = entry
            while len(self._learned) > _CACHE_MAX:
                self._learned.popitem(last=False)

    def verify(self, facts: Any, *, now: float) -> SignatureClaims | SignatureFailure | None:
        """Verify the request's signature and that its client may call this path. Pure.
        ``facts`` is a :class:`~tokenward.facts.RequestFacts`.

        None: nothing here is addressed to this gateway — no signature at all, or only
        Web Bot Auth signatures of agents it does not know (unverified bots, judged like
        any other request). Claims with ``key.kind == "agent"`` are a recognised agent."""
        if not self.signed(facts.headers):
            return None
        request = SignedRequest.from_facts(
            facts, public_origin=self.origins, trust_forwarded=self.settings.trust_forwarded
        )
        tags = signature_tags_unverified(facts.headers)
        if tags and all(t == WEB_BOT_AUTH_TAG for t in tags):
            return self._verify_agent(request, now)
        result = verify_signature(request, self, self.rules, now=now)
        if isinstance(result, SignatureClaims) and not route_allowed(result.key.routes, facts.path):
            return signature_failure("route_forbidden", keyid=result.keyid)
        return result

    def _verify_agent(self, request: SignedRequest, now: float) -> SignatureClaims | SignatureFailure | None:
        if self._agents is None:
            return None
        result = verify_signature(request, self._agents, self._agent_rules, now=now)
        if isinstance(result, SignatureFailure):
            return None if result.code == "unknown_key" else result
        announced = self._agents.announced.get(result.client)
        if announced is not None:
            sent = signature_agent(request.field("signature-agent"), result.label)
            if sent is None or sent.rstrip("/") != announced.rstrip("/"):
                return signature_failure("signature_invalid", "Signature-Agent is not this agent's.", result.keyid)
        return result

    def revocation_op(self, claims: SignatureClaims) -> Get | None:
        """For the request batch: the key's revocation entry (Store keys only)."""
        return Get(revocation_key(claims.keyid)) if self.store_keys and claims.key.kind == "client" else None

    @staticmethod
    def confirm(
        claims: SignatureClaims, *, first_use: bool, revocation: bytes | None, now: float
    ) -> SignatureClaims | SignatureFailure:
        """After the batch: refuse a revoked key or a nonce seen before."""
        r = Revocation.decode(revocation)
        if r is not None and now >= r.at:
            detail = "It was retired after a rotation." if r.reason == "rotated" else None
            return signature_failure("key_revoked", detail, claims.keyid)
        if not first_use:
            return signature_failure("signature_replayed", keyid=claims.keyid)
        return claims

    def limits_for(self, client: str, default: Sequence[LimitSpec]) -> Sequence[LimitSpec]:
        """The limits a client's request counts against (keyed as account ``client:<name>``)."""
        c = self._clients.get(client)
        return default if c is None or c.limits is None else c.limits

    def budgets_for(self, client: str, default: Sequence[BudgetSpec]) -> Sequence[BudgetSpec]:
        c = self._clients.get(client)
        return default if c is None or c.budgets is None else c.budgets

    def records(self, now: float | None = None) -> list[KeyRecord]:
        """Every key known to this registry (policy and key file), for listing."""
        out = []
        for keyid, e in self._keys.items():
            r = e.resolved
            out.append(
                KeyRecord(
                    keyid=keyid, client=r.client, public_key=public_key_b64url(r.public_key),
                    created_at=0.0, routes=r.routes, not_after=e.not_after,
                    revoked_at=None if e.revoked_at is None else max(e.revoked_at, 0.0),
                )
            )  # fmt: skip
        return out


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
