"""The policy file: one YAML document that says what is protected and how.

Validation is separate from evaluation and reports every problem at once, each with
its location (``routes[2].api``). Nothing here fills a default silently that changes
what is protected: the defaults are listed in docs/policy.md and in the shipped
``policies/default.yaml``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .content import ConversationSettings, PurposeSettings, TemplateSettings
from .decision import Flavour
from .errors import ConfigurationError
from .limits import LimitSpec
from .money.alerts import AlertSettings
from .money.budgets import BudgetSpec
from .money.prices import PriceTable
from .money.spike import BreakerSettings, SpikeSettings
from .origins import CorsSettings
from .proof.challenge import MAX_DIFFICULTY
from .scoring import DEFAULT_THRESHOLDS, RiskEngine, Rule, Threshold, check_cidrs
from .signals.behaviour import BehaviourSettings
from .signals.browser import BrowserSettings
from .signals.http_client import ClientSettings
from .signals.identity import IdentitySettings
from .signals.network import NetworkSettings
from .signals.prompt import ContentSettings
from .trusted_clients import ClientsSettings

__all__ = [
    "STANDARD_ROUTES",
    "Mode",
    "Policy",
    "PolicyError",
    "Problem",
    "RouteSettings",
    "load_policy",
    "parse_policy",
    "read_policy_data",
    "route_key",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Mode(StrEnum):
    ENFORCE = "enforce"
    SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class PolicyError(ConfigurationError):
    """A policy that cannot be used; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem], source: str = "policy"):
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProofSettings(_Strict):
    difficulty: int = Field(16, ge=0, le=MAX_DIFFICULTY, description="leading zero bits")
    ttl: float = Field(120.0, gt=0, le=3600, description="challenge lifetime, seconds")
    keys_file: Path | None = Field(
        None, description="base64url signing keys, newest first; else TOKENWARD_KEYS or random"
    )


class DeviceRamp(_Strict):
    """Device trust that is earned (docs/risk.md, "Device trust"): a device starts with a
    share of every device-keyed limit and budget, which grows with the calls it had
    answered in full, up to the whole of them."""

    enabled: bool = Field(True, description="scale device-keyed limits and budgets by the device's clean history")
    start: float = Field(
        0.25, gt=0, le=1, description="share of device-keyed limits and budgets a device without clean calls gets"
    )
    full_after: int = Field(
        5, ge=1, description="clean calls (answered, in full or degraded: not refused) to reach the whole"
    )
    window: float = Field(30 * 86_400, gt=0, le=366 * 86_400, description="seconds clean calls are counted over")

    def share(self, clean: float) -> float:
        """The share of its device-keyed limits and budgets a device with ``clean`` calls gets."""
        if not self.enabled:
            return 1.0
        return self.start + (1.0 - self.start) * min(1.0, max(0.0, clean) / self.full_after)


class DeviceSettings(_Strict):
    enabled: bool = Field(True, description="accept device registrations and device signatures")
    registration_difficulty: int | None = Field(
        None,
        ge=0,
        le=MAX_DIFFICULTY,
        description="proof bits to register a device (default: proof.difficulty + 4)",
    )
    ttl: float = Field(30 * 86_400, gt=0, description="seconds a registered device key is kept after registration")
    ramp: DeviceRamp = Field(default_factory=lambda: DeviceRamp(), description="device trust that is earned")


class DegradeSettings(_Strict):
    max_tokens: int | None = Field(None, ge=1, description="cap the output of degraded calls")
    model: str | None = Field(None, description="send degraded calls to this (cheaper) model")


class MoneySettings(_Strict):
    estimator: Literal["auto", "tiktoken", "bytes"] = Field(
        "auto", description="input token estimate for reservations: tiktoken (shipped vocabularies) or bytes/2"
    )
    max_output_tokens: int = Field(4096, ge=1, description="output allowance reserved when a call names none")
    hold: float = Field(3600, gt=0, description="seconds a reservation is held if its call never settles")


class EmergencyLimit(_Strict):
    limit: float = Field(60, gt=0, description="requests per window, per gateway instance")
    window: float = Field(60, gt=0)


class UpstreamSettings(_Strict):
    url: str
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="added to every upstream request (credentials)"
    )
    forward_client_auth: bool = Field(False, description="pass the client's Authorization / x-api-key headers upstream")
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(300.0, gt=0, description="max silence between upstream bytes")
    max_connections: int = Field(256, ge=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("headers", mode="before")
    @classmethod
    def _expand_env(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for name, value in v.items():
            if isinstance(value, str):
                missing = [m for m in _ENV_REF.findall(value) if m not in os.environ]
                if missing:
                    raise ValueError(f"header {name!r} refers to unset environment variable(s): " + ", ".join(missing))
                value = _ENV_REF.sub(lambda m: os.environ[m.group(1)], value)
            out[name] = value
        return out


class AdminSettings(_Strict):
    """The operator's surfaces: metrics and the dashboard (docs/observability.md)."""

    token_env: str = Field(
        "TOKENWARD_ADMIN_TOKEN",
        description="environment variable holding the admin token (unset: no dashboard, no metrics on the main port)",
    )
    host: str = Field("127.0.0.1", description="address of the admin listener")
    port: int | None = Field(None, ge=1, le=65_535, description="admin listener port (none: no admin listener)")
    metrics: bool = Field(True, description="count decisions in Prometheus metrics (false: no metrics at all)")

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("must be an environment variable name")
        return v

    def token(self) -> str | None:
        """The admin token from the environment; a short one is refused (guessable)."""
        value = os.environ.get(self.token_env, "").strip()
        if not value:
            return None
        if len(value) < MIN_ADMIN_TOKEN:
            raise ConfigurationError(
                f"{self.token_env} is {len(value)} characters: use at least {MIN_ADMIN_TOKEN} "
                "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return value


MIN_ADMIN_TOKEN = 16


def route_key(path: str) -> str:
    """What routes are matched on: the path in lower case without one trailing slash."""
    key = path.lower()
    if len(key) > 1 and key.endswith("/"):
        key = key[:-1]
    return key


class RouteTable:
    """Which route a (canonical, docs/policy.md) path belongs to. Matching ignores case and
    one trailing slash, as some upstream frameworks do: a route is never missed for them."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, routes: Sequence[RouteSettings]):
        self._exact = {route_key(r.path): r for r in routes if not r.path.endswith("/*")}
        self._prefixes = sorted(
            ((r.path[:-1].lower(), r) for r in routes if r.path.endswith("/*")), key=lambda p: -len(p[0])
        )

    def route_for(self, path: str) -> RouteSettings | None:
        key = route_key(path)
        route = self._exact.get(key)
        if route is not None:
            return route
        for prefix, r in self._prefixes:
            if key.startswith(prefix) or key == prefix[:-1]:
                return r
        return None


class RouteSettings(_Strict):
    path: str = Field(description="exact path, or a prefix ending in /*")
    api: Flavour = Field(Flavour.CUSTOM, description="openai | anthropic | custom")
    protect: bool = Field(True, description="false: forward without any proof")
    methods: tuple[str, ...] = Field(("POST",), description="methods that need a proof")
    difficulty: int | None = Field(None, ge=0, le=MAX_DIFFICULTY)
    ttl: float | None = Field(None, gt=0, le=3600)
    mode: Mode | None = None
    max_body_bytes: int | None = Field(None, ge=0)
    clients: Literal["browser", "server", "any"] = Field(
        "any",
        description="who is meant to call it: browser routes weigh SDK fingerprints and missing browser evidence",
    )
    weights: dict[str, float] = Field(default_factory=dict, description="overrides of the top-level weights")
    thresholds: tuple[Threshold, ...] | None = Field(None, description="replaces the top-level thresholds")
    store_failure: Literal["fail_closed", "fail_open"] | None = Field(
        None, description="when the store cannot answer (default: the top-level setting)"
    )
    signed: Literal["accept", "require", "ignore"] = Field(
        "accept", description="signed requests of trusted clients: accept (instead of a proof), require, ignore"
    )
    model: str | None = Field(None, description="the model a custom route's calls are priced as")
    max_output_tokens: int | None = Field(None, ge=1, description="output cap for this route's calls")
    degrade: DegradeSettings | None = Field(None, description="what a degrade decision does on this route")
    purpose: PurposeSettings | None = Field(None, description="what the route is for (docs/content.md)")
    content: ContentSettings | None = Field(None, description="replaces the top-level content settings")
    templates: TemplateSettings | None = Field(None, description="replaces the top-level template settings")
    conversation: ConversationSettings | None = Field(None, description="server: the gateway holds the conversation")
    cors: CorsSettings | None = Field(
        None, description="pages on these other origins may call the route (docs/browser-sdk.md)"
    )

    @field_validator("conversation", mode="before")
    @classmethod
    def _conversation(cls, v: Any) -> Any:
        return ConversationSettings.coerce(v)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        if "*" in v[:-1] or (v.endswith("*") and not v.endswith("/*")):
            raise ValueError("only a trailing /* wildcard is allowed")
        if v.startswith("/.tokenward"):
            raise ValueError("/.tokenward/ is reserved for the gateway's own endpoints")
        plain = v[:-2] if v.endswith("/*") else v
        if any(c in plain for c in "\\;%?#") or "//" in plain or any(s in (".", "..") for s in plain.split("/")):
            raise ValueError("must be a plain path: no '.' or '..' segments, '//', '\\', ';', '%', '?' or '#'")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(m.upper() for m in v)

    @model_validator(mode="after")
    def _cors_protected(self) -> RouteSettings:
        if self.cors is not None and not self.protect:
            raise ValueError("cors is for protected routes: an unprotected route's upstream answers its own CORS")
        return self


STANDARD_ROUTES: tuple[dict[str, Any], ...] = (
    {"path": "/v1/chat/completions", "api": "openai"},
    {"path": "/v1/completions", "api": "openai"},
    {"path": "/v1/responses", "api": "openai"},
    {"path": "/v1/embeddings", "api": "openai"},
    {"path": "/v1/messages", "api": "anthropic"},
)


class Policy(_Strict):
    version: Literal[1] = 1
    mode: Mode = Mode.ENFORCE
    upstream: UpstreamSettings | None = None
    store: str = Field("memory://", description="memory:// (default)")
    log: str = Field("sqlite:///./tokenward.db", description="sqlite:///PATH")
    trusted_proxies: tuple[str, ...] = Field((), description="CIDRs whose X-Forwarded-For is believed")
    max_body_bytes: int = Field(1_048_576, ge=0, description="request bodies above: 413")
    max_json_depth: int = Field(
        64, ge=8, le=200, description="protected calls whose JSON body nests deeper: 400 bad_request"
    )
    max_messages: int = Field(10_000, ge=1, description="protected calls with more messages: 400 bad_request")
    max_header_bytes: int = Field(
        32_768, ge=4096, le=262_144, description="requests whose headers add up to more: 431 headers_too_large"
    )
    max_url_bytes: int = Field(8192, ge=1024, le=65_536, description="longer request targets: 414 uri_too_long")
    header_timeout: float = Field(
        10.0, ge=1, le=60, description="seconds to send a request's headers, and to start one on an idle connection"
    )
    body_timeout: float = Field(30.0, gt=0, le=600, description="seconds to send a request's body: 408 request_timeout")
    proof: ProofSettings = Field(default_factory=ProofSettings)
    routes: tuple[RouteSettings, ...] = Field(
        default_factory=lambda: tuple(RouteSettings(**r) for r in STANDARD_ROUTES)
    )
    other_routes: Literal["pass", "refuse"] = Field("refuse", description="what happens to paths no route names")
    ambiguous_paths: Literal["refuse", "canonicalize"] = Field(
        "refuse",
        description="paths servers read differently (dot segments, encoded dots, '//', '\\'): 400, or resolve and "
        "forward the resolved path",
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="signal name (or family/*) -> weight, replacing its default"
    )
    thresholds: tuple[Threshold, ...] = Field(DEFAULT_THRESHOLDS, description="risk -> action, highest first")
    rules: tuple[Rule, ...] = Field((), description="ordered allow/deny/challenge/weigh rules")
    limits: tuple[LimitSpec, ...] = Field(
        (
            LimitSpec(name="per-device", key="device", limit=120, window=60),
            LimitSpec(name="per-subnet", key="subnet", limit=1200, window=60),
        ),
        description="rate limits by device, account, ip, subnet, route or global",
    )
    behaviour: BehaviourSettings = Field(default_factory=BehaviourSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)
    browser: BrowserSettings = Field(default_factory=BrowserSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    content: ContentSettings = Field(default_factory=ContentSettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
    clients: ClientsSettings = Field(
        default_factory=ClientsSettings, description="trusted server clients with signing keys (RFC 9421)"
    )
    store_failure: Literal["fail_closed", "fail_open"] = Field(
        "fail_closed",
        description="fail_closed: 503 store_unavailable; fail_open: judge on local memory under `emergency`",
    )
    emergency: EmergencyLimit = Field(default_factory=EmergencyLimit)
    prices: PriceTable = Field(default_factory=PriceTable.examples, description="USD per 1M tokens by model")
    budgets: tuple[BudgetSpec, ...] = Field((), description="spend budgets reserved before each call")
    money: MoneySettings = Field(default_factory=MoneySettings)
    spike: SpikeSettings = Field(default_factory=SpikeSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    devices: DeviceSettings = Field(default_factory=DeviceSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)

    _engines: dict[str, RiskEngine] = PrivateAttr(default_factory=dict)
    _default_engine: RiskEngine = PrivateAttr()

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_cidrs(v)

    @field_validator("routes")
    @classmethod
    def _unique_paths(cls, routes: tuple[RouteSettings, ...]) -> tuple[RouteSettings, ...]:
        seen: set[str] = set()
        for r in routes:
            key = route_key(r.path)
            if key in seen:
                raise ValueError(f"route {r.path} is listed twice (routes match regardless of case and a trailing /)")
            seen.add(key)
        return routes

    @field_validator("rules", "limits", "budgets")
    @classmethod
    def _unique_names(cls, items: tuple[Any, ...]) -> tuple[Any, ...]:
        names = [i.name for i in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names must be unique: {', '.join(dupes)}")
        return items

    def model_post_init(self, context: Any, /) -> None:
        # Route lookups and risk engines are used on every request: build them once.
        self._engines = {
            r.path: RiskEngine(
                {**self.weights, **r.weights},
                r.thresholds if r.thresholds is not None else self.thresholds,
                [rule for rule in self.rules if not rule.route or r.path in rule.route],
            )
            for r in self.routes
            if r.protect
        }
        self._default_engine = RiskEngine(self.weights, self.thresholds, self.rules)

    def engine_for(self, route: RouteSettings | None) -> RiskEngine:
        if route is not None:
            engine = self._engines.get(route.path)
            if engine is not None:
                return engine
        return self._default_engine

    def engines(self) -> dict[str, RiskEngine]:
        """Every protected route's engine by path (callers cache it: private attributes
        of pydantic models are slow to reach on the request path)."""
        return dict(self._engines)

    def output_cap_for(self, route: RouteSettings) -> int:
        return self.money.max_output_tokens if route.max_output_tokens is None else route.max_output_tokens

    def store_failure_for(self, route: RouteSettings) -> str:
        return self.store_failure if route.store_failure is None else route.store_failure

    def registration_difficulty(self) -> int:
        d = self.devices.registration_difficulty
        return min(MAX_DIFFICULTY, self.proof.difficulty + 4) if d is None else d

    # -- evaluation helpers (pure) -----------------------------------------------
    @cached_property
    def route_table(self) -> RouteTable:
        # A cached property, not a private attribute: those cost microseconds to reach,
        # and routes are looked up on every request.
        return RouteTable(self.routes)

    def route_for(self, path: str) -> RouteSettings | None:
        return self.route_table.route_for(path)

    def difficulty_for(self, route: RouteSettings) -> int:
        return self.proof.difficulty if route.difficulty is None else route.difficulty

    def ttl_for(self, route: RouteSettings) -> float:
        return self.proof.ttl if route.ttl is None else route.ttl

    def mode_for(self, route: RouteSettings) -> Mode:
        return self.mode if route.mode is None else route.mode

    def body_cap_for(self, route: RouteSettings | None) -> int:
        if route is None or route.max_body_bytes is None:
            return self.max_body_bytes
        return route.max_body_bytes


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_policy(data: Any, source: str = "policy") -> Policy:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([Problem("", "the policy must be a mapping of settings")], source)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting (check the spelling; see docs/policy.md)"
            problems.append(Problem(_where(err["loc"]), msg))
        raise PolicyError(problems, source) from None


def read_policy_data(path: str | Path | None) -> dict[str, Any]:
    """The raw mapping in a policy file (``{}`` for no file), for callers that overlay
    command-line settings before validating."""
    if path is None:
        return {}
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PolicyError([Problem("", f"cannot read: {exc.strerror}")], str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise PolicyError([Problem(where, f"not valid YAML: {exc}")], str(p)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyError([Problem("", "the policy must be a mapping of settings")], str(p))
    return data


def load_policy(path: str | Path | None, *, upstream: str | None = None) -> Policy:
    """Read and validate a policy file (``None``: the default policy).

    ``upstream`` replaces ``upstream.url`` (the ``--upstream`` option of ``serve``).
    """
    data = read_policy_data(path)
    if upstream is not None:
        section = data.get("upstream")
        data["upstream"] = {**(section if isinstance(section, dict) else {}), "url": upstream}
    return parse_policy(data, str(path) if path is not None else "default policy")
