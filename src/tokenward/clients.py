"""Trusted server clients: named identities, their Ed25519 keys, and where the keys live.

A client is a backend the owner trusts (its own app server, a partner). It signs every
request (RFC 9421, :mod:`tokenward.proof.signature`) with one of its keys; a verified
request skips the browser proof-of-work but not its route's budgets, limits or content
rules, which are keyed by the account ``client:<name>``.

Keys come from three places, merged by keyid:

* the policy (``clients.named[].keys``), for a handful of static clients;
* a key file the operator controls (``clients.keys_file``, JSON or YAML), written by
  ``tokenward keys``; read when the registry is built (start and policy reload);
* the Store (``clients.keys_in_store``), for several gateway instances: a key is
  ``sigkey:<keyid>`` (fetched once per instance, then cached: a keyid's public key never
  changes) and its revocation ``sigrevoked:<keyid>``, read in every signed request's
  batch so a revocation takes effect on every instance with the next request.

Rotation: ``tokenward keys rotate`` adds a key and gives the old ones a ``not_after``
(the overlap); both verify until then.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import http_sf
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .limits import LimitSpec
from .money.budgets import BudgetSpec
from .proof.signature import (
    WEB_BOT_AUTH_TAG,
    Origin,
    ResolvedKey,
    SignatureClaims,
    SignatureFailure,
    SignatureRules,
    SignedRequest,
    jwk_thumbprint,
    load_public_key,
    parse_origin,
    public_key_b64url,
    signature_failure,
    signature_tags_unverified,
    signed_keyids_unverified,
    verify_signature,
)
from .store import Append, Get, Put, Range, Store

__all__ = [
    "FOREVER",
    "AgentSpec",
    "ClientBudget",
    "ClientKeySpec",
    "ClientLimit",
    "ClientRegistry",
    "ClientSpec",
    "ClientsError",
    "ClientsSettings",
    "KeyFile",
    "KeyRecord",
    "Revocation",
    "StoreKeys",
    "load_jwks",
    "new_key",
    "revocation_key",
    "route_allowed",
    "store_key",
]

FOREVER = 10 * 365 * 86_400.0  # Store entries that should not expire (Put needs a ttl)
STORE_INDEX = "sigkeys"  # list of every keyid put in the Store, for `tokenward keys list`
_INDEX_MAX = 100_000
_CACHE_MAX = 10_000  # keys learned from the Store, per instance
_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
_KEYID = r"^[A-Za-z0-9_.:+/=-]{1,128}$"


class ClientsError(ValueError):
    """Client or key configuration that cannot be used; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str], source: str = "clients"):
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


def store_key(keyid: str) -> str:
    return f"sigkey:{keyid}"


def revocation_key(keyid: str) -> str:
    return f"sigrevoked:{keyid}"


def route_allowed(patterns: Iterable[str], path: str) -> bool:
    """``*`` is every route, ``/v1/*`` a prefix, anything else an exact path."""
    for p in patterns:
        if p == "*" or p == path:
            return True
        if p.endswith("/*") and (path.startswith(p[:-1]) or path == p[:-2]):
            return True
    return False


# -- the policy section ---------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_routes(v: tuple[str, ...]) -> tuple[str, ...]:
    for r in v:
        if r != "*" and (not r.startswith("/") or "*" in r[:-1] or (r.endswith("*") and not r.endswith("/*"))):
            raise ValueError(f"{r!r}: a route is '*', an exact path, or a prefix ending in /*")
    return v


class ClientKeySpec(_Strict):
    keyid: str = Field(pattern=_KEYID)
    public_key: str = Field(description="Ed25519: base64url of the 32 raw bytes, or a PEM PUBLIC KEY")
    not_after: datetime | None = Field(None, description="retired from then on (the end of a rotation overlap)")

    @field_validator("public_key")
    @classmethod
    def _loads(cls, v: str) -> str:
        load_public_key(v)  # ValueError -> a policy problem at this key's location
        return v


class ClientLimit(_Strict):
    """A rate limit counted per client."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    limit: float = Field(gt=0, description="requests per window")
    window: float = Field(gt=0, le=86_400 * 7, description="seconds")
    routes: tuple[str, ...] = Field((), description="route paths it applies to; empty: all")


class ClientBudget(_Strict):
    """A spend budget counted per client."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    usd: float = Field(gt=0, description="dollars per window")
    window: float = Field(gt=0, le=86_400 * 31, description="seconds")
    routes: tuple[str, ...] = Field((), description="route paths it applies to; empty: all")


class ClientSpec(_Strict):
    name: str = Field(pattern=_NAME)
    routes: tuple[str, ...] = Field(
        (),
        description="routes it may call: '*', exact paths, prefixes ending in /*; empty: those its keys were made for",
    )
    keys: tuple[ClientKeySpec, ...] = Field((), description="keys in the policy itself (also: keys_file, the Store)")
    revoked: tuple[str, ...] = Field((), description="keyids refused from wherever they come")
    limits: tuple[str | ClientLimit, ...] | None = Field(
        None, description="null: the policy's limits; else exactly these (policy limit names or inline limits)"
    )
    budgets: tuple[str | ClientBudget, ...] | None = Field(
        None, description="null: the policy's budgets; else exactly these (policy budget names or inline budgets)"
    )

    _routes = field_validator("routes")(_check_routes)


class AgentSpec(_Strict):
    """A Web Bot Auth agent the operator recognises, with its key directory as a local
    file (a JWKS of Ed25519 OKP keys, e.g. a saved copy of the agent's
    /.well-known/http-message-signatures-directory); keyids are the keys' thumbprints."""

    name: str = Field(pattern=_NAME)
    directory: Path = Field(description="JWKS file: {keys: [{kty: OKP, crv: Ed25519, x: ...}]}")
    signature_agent: str | None = Field(
        None, description="the Signature-Agent URL it announces; when set, requests must carry and sign it"
    )


class ClientsSettings(_Strict):
    """The policy's ``clients:`` section (docs/signed-requests.md)."""

    keys_file: Path | None = Field(None, description="keys written by `tokenward keys` (JSON or YAML)")
    keys_in_store: bool = Field(False, description="also read keys and revocations from the Store (multi-instance)")
    max_age: float = Field(30.0, gt=0, le=600, description="seconds a signature is accepted after its created time")
    max_future: float = Field(5.0, ge=0, le=60, description="seconds created may be ahead of the gateway's clock")
    public_origin: tuple[str, ...] = Field(
        (), description="scheme://host[:port][/prefix] the clients address; else the request's scheme and Host"
    )
    trust_forwarded: bool = Field(
        False, description="believe X-Forwarded-Proto/-Host from trusted proxies when no public_origin is set"
    )
    named: tuple[ClientSpec, ...] = Field((), description="the clients")
    agents: tuple[AgentSpec, ...] = Field((), description="Web Bot Auth agents (verified bots, not trusted clients)")
    agent_max_age: float = Field(300.0, gt=0, le=3600, description="seconds an agent's signature is accepted")

    @field_validator("public_origin", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @field_validator("public_origin")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for o in v:
            parse_origin(o)
        return v

    @model_validator(mode="after")
    def _unique(self) -> ClientsSettings:
        names = [c.name for c in self.named]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"client names must be unique: {', '.join(dupes)}")
        agents = [a.name for a in self.agents]
        dupes = sorted({n for n in agents if agents.count(n) > 1})
        if dupes:
            raise ValueError(f"agent names must be unique: {', '.join(dupes)}")
        keyids = [k.keyid for c in self.named for k in c.keys]
        dupes = sorted({k for k in keyids if keyids.count(k) > 1})
        if dupes:
            raise ValueError(f"a keyid belongs to one client: {', '.join(dupes)}")
        return self

    def rules(self) -> SignatureRules:
        return SignatureRules(max_age=self.max_age, max_future=self.max_future)

    def origins(self) -> tuple[Origin, ...]:
        return tuple(parse_origin(o) for o in self.public_origin)

    def problems(self, limit_names: Iterable[str], budget_names: Iterable[str]) -> list[tuple[str, str]]:
        """Cross-section checks for the policy: ``(location, message)`` for every client
        limit or budget name that the policy does not define."""
        limits, budgets = set(limit_names), set(budget_names)
        out = []
        for i, c in enumerate(self.named):
            for j, item in enumerate(c.limits or ()):
                if isinstance(item, str) and item not in limits:
                    out.append((f"clients.named[{i}].limits[{j}]", f"no limit named {item!r} in limits"))
            for j, budget in enumerate(c.budgets or ()):
                if isinstance(budget, str) and budget not in budgets:
                    out.append((f"clients.named[{i}].budgets[{j}]", f"no budget named {budget!r} in budgets"))
        return out


# -- key records (key file and Store) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One client key as the key file and the Store hold it (public material only)."""

    keyid: str
    client: str
    public_key: str  # base64url of the 32 raw bytes
    created_at: float
    routes: tuple[str, ...] = ()
    not_after: float | None = None  # retired from then on (rotation overlap)
    revoked_at: float | None = None

    def state(self, now: float) -> Literal["active", "retiring", "retired", "revoked"]:
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        if self.not_after is not None:
            return "retired" if now >= self.not_after else "retiring"
        return "active"

    def in_force(self, now: float) -> bool:
        return self.state(now) in ("active", "retiring")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keyid": self.keyid,
            "client": self.client,
            "public_key": self.public_key,
            "created_at": self.created_at,
            "routes": list(self.routes),
        }
        if self.not_after is not None:
            out["not_after"] = self.not_after
        if self.revoked_at is not None:
            out["revoked_at"] = self.revoked_at
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "key") -> KeyRecord:
        if not isinstance(data, Mapping):
            raise ClientsError([f"{where}: not a mapping"])
        problems = []
        for name in ("keyid", "client", "public_key"):
            if not isinstance(data.get(name), str) or not data[name]:
                problems.append(f"{where}.{name}: missing")
        routes = data.get("routes", [])
        if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
            problems.append(f"{where}.routes: not a list of paths")
        for name in ("created_at", "not_after", "revoked_at"):
            v = data.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
                problems.append(f"{where}.{name}: not a unix time")
        if not problems:
            try:
                load_public_key(data["public_key"])
            except ValueError as exc:
                problems.append(f"{where}.public_key: {exc}")
            try:
                _check_routes(tuple(routes))
            except ValueError as exc:
                problems.append(f"{where}.routes: {exc}")
        if problems:
            raise ClientsError(problems)
        return cls(
            keyid=data["keyid"],
            client=data["client"],
            public_key=data["public_key"],
            created_at=float(data.get("created_at") or 0.0),
            routes=tuple(routes),
            not_after=data.get("not_after"),
            revoked_at=data.get("revoked_at"),
        )


def new_key(
    client: str, routes: Sequence[str], now: float, keyid: str | None = None
) -> tuple[KeyRecord, Ed25519PrivateKey]:
    """A fresh Ed25519 key pair for ``client``; the keyid defaults to
    ``<client>.<first 16 characters of the key's JWK thumbprint>``."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    record = KeyRecord(
        keyid=keyid or f"{client}.{jwk_thumbprint(public)[:16]}",
        client=client,
        public_key=public_key_b64url(public),
        created_at=round(now, 3),
        routes=_check_routes(tuple(routes)),
    )
    return record, private


class KeyFile:
    """The operator's key file: ``{"version": 1, "keys": [KeyRecord...]}``, JSON unless
    the name ends in .yaml/.yml. Written atomically (a reader never sees half a file)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def _yaml(self) -> bool:
        return self.path.suffix.lower() in (".yaml", ".yml")

    def load(self) -> list[KeyRecord]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ClientsError([f"cannot read: {exc.strerror}"], str(self.path)) from None
        try:
            data = yaml.safe_load(text) if self._yaml else json.loads(text) if text.strip() else {}
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ClientsError([f"not valid {'YAML' if self._yaml else 'JSON'}: {exc}"], str(self.path)) from None
        if data is None:
            return []
        if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
            raise ClientsError(['expected {"version": 1, "keys": [...]}'], str(self.path))
        if data.get("version", 1) != 1:
            raise ClientsError([f"unsupported version {data.get('version')!r}"], str(self.path))
        records, problems = [], []
        for i, item in enumerate(data.get("keys", [])):
            try:
                records.append(KeyRecord.from_dict(item, f"keys[{i}]"))
            except ClientsError as exc:
                problems.extend(exc.problems)
        keyids = [r.keyid for r in records]
        problems += [f"keyid {k} is listed twice" for k in sorted({k for k in keyids if keyids.count(k) > 1})]
        if problems:
            raise ClientsError(problems, str(self.path))
        return records

    def save(self, records: Sequence[KeyRecord]) -> None:
        data = {"version": 1, "keys": [r.to_dict() for r in records]}
        text = yaml.safe_dump(data, sort_keys=False) if self._yaml else json.dumps(data, indent=2) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            if self.path.exists():
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            else:
                os.chmod(tmp, 0o644)  # public keys only; who may *write* it is what matters
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True, slots=True)
class Revocation:
    """``sigrevoked:<keyid>`` in the Store: the key is refused from ``at`` on."""

    at: float
    reason: str = "revoked"  # or "rotated" (the end of an overlap)

    def encode(self) -> bytes:
        return json.dumps({"at": self.at, "reason": self.reason}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Revocation | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return cls(float(data["at"]), str(data.get("reason", "revoked")))
        except (ValueError, KeyError, TypeError):
            return cls(0.0, "unreadable")  # fail closed: something revoked it


class StoreKeys:
    """Keys in the Store, for several gateway instances (``tokenward keys --store``).
    Every call is one batch; nothing here is on the request path."""

    def __init__(self, store: Store):
        self.store = store

    async def put(self, record: KeyRecord) -> None:
        stored = replace(record, revoked_at=None)  # revocation lives in its own entry
        await self.store.execute(
            [
                Put(store_key(record.keyid), json.dumps(stored.to_dict()).encode(), FOREVER),
                Append(STORE_INDEX, record.keyid.encode(), _INDEX_MAX, FOREVER),
            ]
        )
        if record.revoked_at is not None:
            await self.revoke(record.keyid, record.revoked_at, "revoked")
        if record.not_after is not None:
            await self.revoke(record.keyid, record.not_after, "rotated")

    async def get(self, keyid: str) -> KeyRecord | None:
        raw, revoked = await self.store.execute([Get(store_key(keyid)), Get(revocation_key(keyid))])
        return self._record(raw, revoked)

    async def all(self) -> list[KeyRecord]:
        (index,) = await self.store.execute([Range(STORE_INDEX)])
        keyids = list(dict.fromkeys(k.decode() for k in index))
        ops = [op for k in keyids for op in (Get(store_key(k)), Get(revocation_key(k)))]
        results = await self.store.execute(ops) if ops else []
        out = []
        for i in range(0, len(results), 2):
            record = self._record(results[i], results[i + 1])
            if record is not None:
                out.append(record)
        return out

    async def revoke(self, keyid: str, at: float, reason: str = "revoked") -> None:
        """Refuse ``keyid`` from ``at`` on (an earlier revocation stands). Operator-only:
        the common case (first revocation) is one atomic put-if-absent."""
        entry = Revocation(at, reason).encode()
        (created,) = await self.store.execute([Put(revocation_key(keyid), entry, FOREVER, only_new=True)])
        if created:
            return
        (current,) = await self.store.execute([Get(revocation_key(keyid))])
        known = Revocation.decode(current)
        if known is not None and known.at <= at:
            return
        await self.store.execute([Put(revocation_key(keyid), entry, FOREVER)])

    @staticmethod
    def _record(raw: bytes | None, revoked: bytes | None) -> KeyRecord | None:
        if raw is None:
            return None
        record = KeyRecord.from_dict(json.loads(raw), "store")
        r = Revocation.decode(revoked)
        if r is None:
            return record
        if r.reason == "rotated":
            return replace(record, not_after=r.at)
        return replace(record, revoked_at=r.at)


def load_jwks(path: Path) -> dict[str, Any]:
    """The Ed25519 keys of a JWKS file by RFC 7638 thumbprint (other key types are
    skipped: an agent may publish several). ClientsError when there is none."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ClientsError([f"cannot read: {exc.strerror}"], str(path)) from None
    except json.JSONDecodeError as exc:
        raise ClientsError([f"not valid JSON: {exc}"], str(path)) from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        raise ClientsError(['expected a JWKS: {"keys": [...]}'], str(path))
    out = {}
    for jwk in keys:
        if isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            try:
                key = load_public_key(jwk)
            except ValueError as exc:
                raise ClientsError([f"bad key: {exc}"], str(path)) from None
            out[jwk_thumbprint(key)] = key
    if not out:
        raise ClientsError(["no Ed25519 key in this directory"], str(path))
    return out


class _Agents:
    """Web Bot Auth keys by thumbprint (a KeyLookup)."""

    def __init__(self, agents: Sequence[AgentSpec]):
        self.keys: dict[str, ResolvedKey] = {}
        self.announced: dict[str, str | None] = {}
        problems: list[str] = []
        for a in agents:
            try:
                found = load_jwks(a.directory)
            except ClientsError as exc:
                problems.append(f"agent {a.name}: {exc}")
                continue
            for keyid, key in found.items():
                self.keys[keyid] = ResolvedKey(keyid, a.name, key, ("*",), "agent")
            self.announced[a.name] = a.signature_agent
        if problems:
            raise ClientsError(problems)

    def resolve_key(self, keyid: str, now: float) -> ResolvedKey | SignatureFailure:
        return self.keys.get(keyid) or signature_failure("unknown_key", keyid=keyid)


def _signature_agent(value: str | None, label: str) -> str | None:
    """The Signature-Agent URL for ``label``: a structured string (early drafts) or a
    dictionary member (later ones)."""
    if value is None:
        return None
    for kind in ("item", "dictionary"):
        try:
            parsed: Any = http_sf.parse(value.encode("latin-1"), tltype=kind)
        except (http_sf.StructuredFieldError, ValueError, UnicodeEncodeError):
            continue
        if kind == "dictionary":
            parsed = parsed.get(label) if isinstance(parsed, dict) else None
        if isinstance(parsed, tuple) and isinstance(parsed[0], str):
            return parsed[0]
    return None


# -- the registry: what the guard asks --------------------------------------------------


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
        self._agents = _Agents(settings.agents) if settings.agents else None
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
            sent = _signature_agent(request.field("signature-agent"), result.label)
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
