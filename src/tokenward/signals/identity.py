"""Identity signals: who the account behind a request is, and how trustworthy it looks.

The account comes from a JWT the client sends (verified with PyJWT: an HMAC secret, an
RSA/EC/Ed25519 public key, or a local JWKS file) or from headers the site's own backend
sets in front of the gateway (believed only from a trusted proxy, unless configured to
be always trusted). Nothing here does I/O per request: keys are read when the resolver
is built (policy load), and verified tokens are cached by their exact text, so a user's
token costs one signature check, then a dictionary lookup plus the expiry check.

Expiry, not-before and issued-at are checked against the ``now`` the guard passes in
(with ``leeway``), never against the wall clock, so tests need no sleeping.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import disposable_email_domains
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..decision import Signal
from ..errors import ConfigurationError
from ..facts import RequestFacts

__all__ = [
    "IDENTITY_WEIGHTS",
    "Account",
    "AccountProblem",
    "AccountResolver",
    "IdentityConfigError",
    "IdentitySettings",
    "IdentityStats",
    "JwtSettings",
    "TrustedHeaderSettings",
    "email_is_disposable",
    "identity_signals",
    "is_new_account",
]

IDENTITY_WEIGHTS: dict[str, float] = {
    "identity/invalid-token": 4.0,
    "identity/expired-token": 1.0,
    "identity/spoofed-header": 4.0,
    "identity/no-account": 2.0,
    "identity/new-account": 2.0,
    "identity/disposable-email": 3.0,
    "identity/many-accounts-per-device": 3.0,
    "identity/new-account-wave": 3.0,
}
_W = IDENTITY_WEIGHTS

_HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGS = frozenset({"ES256", "ES384", "ES512", "ES256K"})
_OKP_ALGS = frozenset({"EdDSA"})
_ALL_ALGS = _HMAC_ALGS | _RSA_ALGS | _EC_ALGS | _OKP_ALGS
_MIN_HMAC_KEY = 32  # bytes; RFC 7518 §3.2: at least the hash size
_HEADER_NAME_RE = re.compile(r"^[a-z0-9-]+$")
_CACHE_SIZE = 4096


class IdentityConfigError(ConfigurationError):
    """The identity settings name a key that cannot be used (missing file, wrong type...)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JwtSettings(_Strict):
    algorithms: tuple[str, ...] = Field(
        min_length=1, description="accepted algorithms, e.g. [RS256]; never mix HS* with public-key ones"
    )
    key: SecretStr | None = Field(None, description="HMAC secret, or a PEM public key / certificate")
    key_env: str | None = Field(None, description="environment variable holding the key")
    key_file: Path | None = Field(None, description="file holding the key (PEM or the HMAC secret)")
    jwks_file: Path | None = Field(None, description="local JWKS file ({'keys': [...]}); keys chosen by kid")
    audience: tuple[str, ...] = Field((), description="accepted aud values (a token with aud needs this)")
    issuer: str | None = Field(None, description="required iss")
    leeway: float = Field(30.0, ge=0, le=600, description="seconds of clock leeway for exp/nbf/iat")
    require: tuple[str, ...] = Field(("exp",), description="claims a token must carry")
    header: str = Field("authorization", description="header carrying 'Bearer <jwt>'")
    cookie: str | None = Field(None, description="cookie carrying the jwt (used when the header is absent)")
    subject_claim: str = Field("sub", description="claim holding the account id")
    email_claim: str = Field("email")
    created_at_claim: str | None = Field(
        None, description="claim holding the account's creation time (unix seconds or ISO 8601)"
    )

    @field_validator("algorithms")
    @classmethod
    def _algs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in v if a not in _ALL_ALGS]
        if unknown:
            raise ValueError(f"unknown algorithm(s): {', '.join(unknown)} (known: {', '.join(sorted(_ALL_ALGS))})")
        if set(v) & _HMAC_ALGS and set(v) - _HMAC_ALGS:
            raise ValueError("HS* algorithms cannot be mixed with public-key algorithms (key confusion)")
        return v

    @field_validator("header")
    @classmethod
    def _header(cls, v: str) -> str:
        v = v.strip().lower()
        if not _HEADER_NAME_RE.match(v):
            raise ValueError("not a header name")
        return v

    @model_validator(mode="after")
    def _one_key(self) -> JwtSettings:
        given = [n for n in ("key", "key_env", "key_file", "jwks_file") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of key, key_env, key_file, jwks_file")
        return self


class TrustedHeaderSettings(_Strict):
    id: str = Field(description="header with the account id, set by the site's backend or edge")
    email: str | None = Field(None, description="header with the account's email")
    created_at: str | None = Field(None, description="header with the creation time (unix seconds or ISO 8601)")
    trust: Literal["proxy", "always"] = Field(
        "proxy",
        description="proxy: believed only from trusted_proxies; always: the app itself sets it (middleware)",
    )

    @field_validator("id", "email", "created_at")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().lower()
        if not _HEADER_NAME_RE.match(v):
            raise ValueError("not a header name")
        return v


class IdentitySettings(_Strict):
    """``identity:`` section of the policy."""

    jwt: JwtSettings | None = None
    header: TrustedHeaderSettings | None = None
    expect_account: bool = Field(False, description="requests without an account are a signal")
    new_account_age: float = Field(86_400.0, ge=0, description="seconds an account counts as new")
    disposable_email: bool = Field(True, description="flag disposable email domains")
    extra_disposable_domains: tuple[str, ...] = Field((), description="more domains to treat as disposable")
    allowed_email_domains: tuple[str, ...] = Field((), description="never flagged as disposable")
    max_accounts_per_device: int = Field(3, ge=1, description="accounts seen on one device per window")
    wave_share: float = Field(0.5, gt=0, le=1, description="share of requests from new accounts that makes a wave")
    wave_min_requests: int = Field(50, ge=1, description="requests in the window before the share counts")

    @field_validator("extra_disposable_domains", "allowed_email_domains")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip().lower().strip(".") for d in v if d.strip())


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    email: str | None = None
    created_at: float | None = None  # unix seconds
    claims: Mapping[str, Any] = field(default_factory=dict)
    source: Literal["jwt", "header"] = "jwt"


@dataclass(frozen=True, slots=True)
class AccountProblem:
    """A credential that was sent but cannot be believed. ``code``: expired, not-yet-valid,
    malformed, bad-signature, bad-audience, bad-issuer, missing-claim, unknown-key,
    bad-algorithm, no-subject, untrusted-header."""

    code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class IdentityStats:
    """Numbers the guard reads from the store for this request (None: not measured)."""

    accounts_on_device: int | None = None  # distinct accounts seen on the request's device, per window
    new_account_share: float | None = None  # share of recent requests made by new accounts
    recent_requests: int | None = None  # how many requests that share is computed over


# --------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------
def _load_pem(data: bytes, algorithms: tuple[str, ...]) -> Any:
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise IdentityConfigError(f"not a PEM public key or certificate: {exc}") from exc
    allowed = (
        _RSA_ALGS
        if isinstance(key, rsa.RSAPublicKey)
        else _EC_ALGS
        if isinstance(key, ec.EllipticCurvePublicKey)
        else _OKP_ALGS
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
        else frozenset()
    )
    if not set(algorithms) <= allowed:
        raise IdentityConfigError(
            f"a {type(key).__name__} cannot verify {', '.join(sorted(set(algorithms) - allowed))}"
        )
    return key


def _static_key(cfg: JwtSettings) -> Any:
    if cfg.key is not None:
        raw = cfg.key.get_secret_value().encode()
        where = "key"
    elif cfg.key_env is not None:
        value = os.environ.get(cfg.key_env)
        if value is None:
            raise IdentityConfigError(f"environment variable {cfg.key_env} is not set")
        raw, where = value.encode(), f"${cfg.key_env}"
    elif cfg.key_file is not None:
        try:
            raw = cfg.key_file.read_bytes()
        except OSError as exc:
            raise IdentityConfigError(f"{cfg.key_file}: {exc.strerror or exc}") from exc
        where = str(cfg.key_file)
    else:
        raise IdentityConfigError("no key configured")
    if set(cfg.algorithms) <= _HMAC_ALGS:
        secret = raw.strip() if cfg.key_file is not None else raw
        if b"-----BEGIN" in secret:
            raise IdentityConfigError(f"{where}: a PEM key cannot be an HMAC secret")
        if len(secret) < _MIN_HMAC_KEY:
            raise IdentityConfigError(f"{where}: an HMAC secret needs at least {_MIN_HMAC_KEY} bytes")
        return secret
    try:
        return _load_pem(raw, cfg.algorithms)
    except IdentityConfigError as exc:
        raise IdentityConfigError(f"{where}: {exc}") from exc


def _jwks(path: Path) -> dict[str | None, Any]:
    try:
        data = json.loads(path.read_text())
        keyset = jwt.PyJWKSet.from_dict(data)
    except (OSError, ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as exc:
        raise IdentityConfigError(f"{path}: not a usable JWKS file: {exc}") from exc
    keys: dict[str | None, Any] = {}
    for k in keyset.keys:
        if k.key_id in keys:
            raise IdentityConfigError(f"{path}: two keys with kid {k.key_id!r}")
        keys[k.key_id] = k
    return keys


def _created_at(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value / 1000 if value > 1e11 else value)  # milliseconds slip through often
    if isinstance(value, str) and value:
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return _created_at(float(text))
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None  # a local time of unknown zone is no evidence
        return dt.timestamp()
    return None


# --------------------------------------------------------------------------------------
# Resolver
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Verified:
    account: Account | AccountProblem
    exp: float | None
    nbf: float | None


class AccountResolver:
    """Finds the account of a request. Build it at policy load (it reads key files)."""

    def __init__(self, cfg: IdentitySettings):
        self.cfg = cfg
        self._key: Any = None
        self._jwks: dict[str | None, Any] = {}
        if cfg.jwt is not None:
            if cfg.jwt.jwks_file is not None:
                self._jwks = _jwks(cfg.jwt.jwks_file)
            else:
                self._key = _static_key(cfg.jwt)
        self._cache: OrderedDict[str, _Verified] = OrderedDict()

    def __repr__(self) -> str:
        return f"AccountResolver(jwt={self.cfg.jwt is not None}, header={self.cfg.header is not None})"

    def resolve(
        self, facts: RequestFacts, *, now: float, via_trusted_proxy: bool = False
    ) -> Account | AccountProblem | None:
        """The request's account; a problem for a credential that cannot be believed;
        None when the request carries no credential this resolver knows."""
        if self.cfg.jwt is not None:
            token = self._token(self.cfg.jwt, facts)
            # An opaque bearer value (an API key such as sk-...) is not a JWT credential.
            if token is not None and token.count(".") == 2:
                return self.verify_token(token, now=now)
        hcfg = self.cfg.header
        if hcfg is not None:
            account_id = facts.headers.get(hcfg.id)
            if account_id is not None:
                if hcfg.trust == "proxy" and not via_trusted_proxy:
                    return AccountProblem("untrusted-header", f"{hcfg.id} from an untrusted peer")
                account_id = account_id.strip()
                if not account_id:
                    return AccountProblem("malformed", f"empty {hcfg.id}")
                email = facts.headers.get(hcfg.email) if hcfg.email else None
                created = _created_at(facts.headers.get(hcfg.created_at)) if hcfg.created_at else None
                return Account(id=account_id[:256], email=email, created_at=created, source="header")
        return None

    @staticmethod
    def _token(jcfg: JwtSettings, facts: RequestFacts) -> str | None:
        value = facts.headers.get(jcfg.header)
        if value is not None:
            scheme, _, rest = value.strip().partition(" ")
            if rest and scheme.lower() == "bearer":
                return rest.strip()
            if jcfg.header != "authorization":
                return value.strip()
        if jcfg.cookie is not None:
            cookies = facts.headers.get("cookie")
            if cookies:
                for part in cookies.split(";"):
                    name, eq, val = part.strip().partition("=")
                    if eq and name == jcfg.cookie:
                        return val.strip().strip('"')
        return None

    def verify_token(self, token: str, *, now: float) -> Account | AccountProblem:
        """Verify a JWT (signature, algorithm, audience, issuer, required claims once per
        distinct token; validity times on every call, against ``now``)."""
        jcfg = self.cfg.jwt
        if jcfg is None:
            return AccountProblem("malformed", "no jwt settings")
        hit = self._cache.get(token)
        if hit is None:
            hit = self._verify_uncached(jcfg, token)
            self._cache[token] = hit
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(token)
        if isinstance(hit.account, AccountProblem):
            return hit.account
        leeway = jcfg.leeway
        if hit.exp is not None and now >= hit.exp + leeway:
            return AccountProblem("expired", "the token has expired")
        if hit.nbf is not None and now + leeway < hit.nbf:
            return AccountProblem("not-yet-valid", "the token is not valid yet")
        return hit.account

    def _verify_uncached(self, jcfg: JwtSettings, token: str) -> _Verified:
        if len(token) > 8192 or token.count(".") != 2:
            return _Verified(AccountProblem("malformed", "not a JWT"), None, None)
        key = self._key
        try:
            if self._jwks:
                kid = jwt.get_unverified_header(token).get("kid")
                jwk = self._jwks.get(kid)
                if jwk is None and kid is None and len(self._jwks) == 1:
                    jwk = next(iter(self._jwks.values()))
                if jwk is None:
                    return _Verified(AccountProblem("unknown-key", f"no key with kid {kid!r}"), None, None)
                key = jwk.key
            claims = jwt.decode(
                token,
                key,
                algorithms=list(jcfg.algorithms),
                audience=list(jcfg.audience) or None,
                issuer=jcfg.issuer,
                options={
                    "verify_exp": False,  # checked against the injected clock, per call
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": list(jcfg.require),
                },
            )
        except jwt.InvalidSignatureError:
            return _Verified(AccountProblem("bad-signature", "the signature does not verify"), None, None)
        except jwt.InvalidAudienceError:
            return _Verified(AccountProblem("bad-audience", "the token is for another audience"), None, None)
        except jwt.InvalidIssuerError:
            return _Verified(AccountProblem("bad-issuer", "the token is from another issuer"), None, None)
        except jwt.MissingRequiredClaimError as exc:
            return _Verified(AccountProblem("missing-claim", f"missing claim {exc.claim}"), None, None)
        except jwt.InvalidAlgorithmError:
            return _Verified(AccountProblem("bad-algorithm", "algorithm not accepted"), None, None)
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError) as exc:
            return _Verified(AccountProblem("malformed", type(exc).__name__), None, None)
        times: dict[str, float | None] = {}
        for name in ("exp", "nbf", "iat"):
            v = claims.get(name)
            if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
                return _Verified(AccountProblem("malformed", f"{name} is not a number"), None, None)
            times[name] = float(v) if v is not None else None
        subject = claims.get(jcfg.subject_claim)
        if not isinstance(subject, str | int) or isinstance(subject, bool) or subject == "":
            return _Verified(AccountProblem("no-subject", f"no {jcfg.subject_claim} claim"), None, None)
        email = claims.get(jcfg.email_claim)
        created = _created_at(claims.get(jcfg.created_at_claim)) if jcfg.created_at_claim else None
        account = Account(
            id=str(subject)[:256],
            email=email if isinstance(email, str) else None,
            created_at=created,
            claims=claims,
            source="jwt",
        )
        # A token issued in the future counts as not yet valid.
        nbf = times["nbf"]
        if times["iat"] is not None:
            nbf = times["iat"] if nbf is None else max(nbf, times["iat"])
        return _Verified(account, times["exp"], nbf)


# --------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------
def email_is_disposable(email: str, cfg: IdentitySettings) -> str | None:
    """The disposable domain (or parent domain) of ``email``, or None.

    Uses the maintained ``disposable-email-domains`` blocklist plus the policy's extras;
    ``allowed_email_domains`` always wins.
    """
    domain = email.rpartition("@")[2].strip().lower().rstrip(".")
    if not domain:
        return None
    labels = domain.split(".")
    blocklist = disposable_email_domains.blocklist
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        if candidate in cfg.allowed_email_domains:
            return None
        if candidate in blocklist or candidate in cfg.extra_disposable_domains:
            return candidate
    return None


def is_new_account(account: Account | AccountProblem | None, cfg: IdentitySettings, now: float) -> bool:
    """Is this a known account younger than ``new_account_age``? (What the guard counts
    for the share of new accounts in current traffic.)"""
    return (
        isinstance(account, Account)
        and account.created_at is not None
        and now - account.created_at < cfg.new_account_age
    )


def identity_signals(
    account: Account | AccountProblem | None,
    facts: RequestFacts,
    cfg: IdentitySettings,
    *,
    now: float,
    stats: IdentityStats | None = None,
) -> list[Signal]:
    """Signals about the request's account (what :meth:`AccountResolver.resolve` gave)."""
    out: list[Signal] = []
    if account is None:
        if cfg.expect_account:
            out.append(Signal("identity/no-account", _W["identity/no-account"], {}))
        return out
    if isinstance(account, AccountProblem):
        if cfg.expect_account:
            # A credential that cannot be believed is no account: it must never weigh
            # less than sending none (its own signal comes on top).
            out.append(Signal("identity/no-account", _W["identity/no-account"], {"credential": account.code}))
        if account.code in ("expired", "not-yet-valid"):
            out.append(Signal("identity/expired-token", _W["identity/expired-token"], {"reason": account.code}))
        elif account.code == "untrusted-header":
            out.append(Signal("identity/spoofed-header", _W["identity/spoofed-header"], {"reason": account.message}))
        else:
            out.append(Signal("identity/invalid-token", _W["identity/invalid-token"], {"reason": account.code}))
        return out

    age = None if account.created_at is None else now - account.created_at
    new = age is not None and age < cfg.new_account_age
    if new and age is not None:
        out.append(
            Signal("identity/new-account", _W["identity/new-account"], {"account": account.id, "age_s": round(age)})
        )
    if cfg.disposable_email and account.email:
        domain = email_is_disposable(account.email, cfg)
        if domain is not None:
            out.append(Signal("identity/disposable-email", _W["identity/disposable-email"], {"domain": domain}))
    if stats is not None:
        if stats.accounts_on_device is not None and stats.accounts_on_device > cfg.max_accounts_per_device:
            out.append(
                Signal(
                    "identity/many-accounts-per-device",
                    _W["identity/many-accounts-per-device"],
                    {"accounts": stats.accounts_on_device},
                )
            )
        if (
            new
            and stats.new_account_share is not None
            and stats.new_account_share >= cfg.wave_share
            and (stats.recent_requests or 0) >= cfg.wave_min_requests
        ):
            out.append(
                Signal(
                    "identity/new-account-wave",
                    _W["identity/new-account-wave"],
                    {"share": round(stats.new_account_share, 3), "requests": stats.recent_requests},
                )
            )
    return out
