"""The policy's ``clients:`` section: trusted clients, their keys and routes, known agents.

Also what every module of :mod:`tokenward.trusted_clients` shares: the configuration
error (:class:`ClientsError`) and route patterns (:func:`route_allowed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigurationError
from ..proof.signature import Origin, SignatureRules, load_public_key, parse_origin

__all__ = [
    "AgentSpec",
    "ClientBudget",
    "ClientKeySpec",
    "ClientLimit",
    "ClientSpec",
    "ClientsError",
    "ClientsSettings",
    "check_routes",
    "route_allowed",
]

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
_KEYID = r"^[A-Za-z0-9_.:+/=-]{1,128}$"


class ClientsError(ConfigurationError):
    """Client or key configuration that cannot be used; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str], source: str = "clients"):
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


def route_allowed(patterns: Iterable[str], path: str) -> bool:
    """``*`` is every route, ``/v1/*`` a prefix, anything else an exact path."""
    for p in patterns:
        if p == "*" or p == path:
            return True
        if p.endswith("/*") and (path.startswith(p[:-1]) or path == p[:-2]):
            return True
    return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_routes(v: tuple[str, ...]) -> tuple[str, ...]:
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

    _routes = field_validator("routes")(check_routes)


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
    max_future: float = Field(
        5.0,
        ge=0,
        le=60,
        description="seconds created may be ahead of the gateway's clock "
        "(on the memory store, also the seconds signed requests wait after a start)",
    )
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
