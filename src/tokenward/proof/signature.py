"""HTTP Message Signatures (RFC 9421) with Ed25519: per-request proof for trusted servers.

A signed request carries (docs/signed-requests.md)::

    Content-Digest: sha-256=:<base64 SHA-256 of the body>:                        (RFC 9530)
    Signature-Input: tokenward=("@method" "@target-uri" "content-digest" "content-type")
        ;created=1700000000;expires=1700000030;keyid="backend.Xy..";nonce="<random>";alg="ed25519"
    Signature: tokenward=:<base64 Ed25519 signature over the signature base>:

:func:`verify_signature` checks, cheapest first and the signature before any claim (as
Fernet checks its MAC before reading a timestamp): both fields parse as RFC 8941
dictionaries; the signature covers what this gateway requires; its key is known and in
force; the signature base rebuilt from what the gateway *received* verifies under that
key; only then are the signed claims believed — ``created`` inside the clock-skew window,
``expires`` not passed, ``Content-Digest`` equal to the digest of the body bytes.
Single use of the nonce is *not* decided here: the guard consumes
:attr:`SignatureClaims.consume_key` in the Store, in the request's batch.
:meth:`SignatureRules.web_bot_auth` is the profile for verified agents (Web Bot Auth):
tag ``web-bot-auth``, ``@authority`` and ``signature-agent`` covered, ``expires``
required, no body digest.

The signature base is built here rather than by the ``http-message-signatures`` package
(which the tests use as the independent implementation to interoperate with): its
verifier reads the wall clock itself, reports every failure as one exception type with
a sentence, checks timestamps before the signature and resolves keys through its own
callback. The gateway needs an injectable ``now``, one wire code per failure, no
exceptions on the hot path and exactly the components it supports. Structured-field
parsing and serialisation come from ``http-sf`` (RFC 8941/9651, by the RFC's author).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote, urlsplit

import http_sf
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_sf.innerlist import ser_innerlist as _ser_innerlist
from http_sf.item import ser_item as _ser_item

if TYPE_CHECKING:
    from ..facts import RequestFacts

__all__ = [
    "ALGORITHM",
    "CONSUME_GRACE",
    "DEFAULT_COMPONENTS",
    "SIGNATURE_CODES",
    "WEB_BOT_AUTH_TAG",
    "KeyLookup",
    "Origin",
    "ResolvedKey",
    "SignatureClaims",
    "SignatureFailure",
    "SignatureRules",
    "SignedRequest",
    "content_digest",
    "jwk_thumbprint",
    "load_private_key",
    "load_public_key",
    "parse_origin",
    "private_key_b64url",
    "private_key_pem",
    "public_key_b64url",
    "ser_innerlist",
    "ser_item",
    "sign_request",
    "signature_base",
    "signature_failure",
    "signature_tags_unverified",
    "signed_keyids_unverified",
    "verify_signature",
]

ALGORITHM = "ed25519"  # the RFC 9421 registry name
WEB_BOT_AUTH_TAG = "web-bot-auth"
DEFAULT_COMPONENTS = ("@method", "@target-uri", "content-digest", "content-type")
# A consumed nonce is remembered this long past the end of its signature's acceptance
# window, so gateway instances whose clocks differ slightly cannot reopen it for replay.
CONSUME_GRACE = 5.0

# Wire codes of signed-request refusals and the HTTP status each travels with.
SIGNATURE_CODES: dict[str, int] = {
    "signature_required": 401,  # the route needs a signed request and none came
    "signature_invalid": 401,  # malformed, uncovered essentials, or does not verify for this request
    "signature_expired": 401,  # created too old or in the future, or expires passed
    "signature_replayed": 401,  # nonce already used (decided by the guard's Consume)
    "digest_mismatch": 401,  # Content-Digest does not match the body received
    "unknown_key": 401,  # keyid not known to this gateway
    "key_revoked": 401,  # keyid revoked, or retired after a rotation overlap
    "route_forbidden": 403,  # a verified client calling a route it is not allowed
}

_MESSAGES = {
    "signature_required": "This endpoint needs a signed request (HTTP Message Signatures, RFC 9421).",
    "signature_invalid": "The request signature is not valid for this request.",
    "signature_expired": "The request signature is outside its validity window; sign every request afresh "
    "and check the client's clock.",
    "signature_replayed": "This signature was already used; every request needs a fresh nonce and signature.",
    "digest_mismatch": "The Content-Digest header does not match the request body.",
    "unknown_key": "The signing key is not known to this gateway.",
    "key_revoked": "The signing key has been revoked.",
    "route_forbidden": "This client is not allowed to call this route.",
}

_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_PARAMS = frozenset({"created", "expires", "keyid", "nonce", "alg", "tag"})
_MAX_LABELS = 8
_MAX_FIELD = 8192  # bytes of Signature-Input / Signature considered at all
_MAX_KEYID = 256
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left alone when a decoded path has to be re-encoded (no raw path available).
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """A verification key in force, and whose it is."""

    keyid: str
    client: str  # the client's name (or the agent's, for kind "agent")
    public_key: Ed25519PublicKey = field(repr=False)
    routes: tuple[str, ...] = ()  # route patterns the client may call (checked by the registry)
    kind: Literal["client", "agent"] = "client"  # a trusted client, or a Web Bot Auth agent


@dataclass(frozen=True, slots=True)
class SignatureClaims:
    """What a verified signature tells us. Produced only after the Ed25519 signature, the
    validity window and the body digest checked out."""

    key: ResolvedKey
    label: str
    nonce: str
    created: int
    expires: int | None
    tag: str | None
    covered: tuple[str, ...]
    consume_ttl: float  # seconds the nonce must stay consumed (acceptance window + grace)
    signature_id: str = ""  # base64url SHA-256 of the signature bytes (single use when there is no nonce)

    @property
    def client(self) -> str:
        return self.key.client

    @property
    def keyid(self) -> str:
        return self.key.keyid

    @property
    def consume_key(self) -> str:
        """The Store key that makes this signature single-use (its nonce; for a Web Bot
        Auth signature without one, the signature itself)."""
        return f"sig:{self.key.keyid}:{self.nonce}" if self.nonce else f"sig:{self.key.keyid}:#{self.signature_id}"

    @property
    def account(self) -> str:
        """What limits and budgets of a signed request are keyed by."""
        return f"{self.key.kind}:{self.key.client}"

    def evidence(self) -> dict[str, Any]:
        """For the decision log (no secrets in here: the nonce is spent once used)."""
        return {
            self.key.kind: self.key.client,
            "keyid": self.key.keyid,
            "created": self.created,
            "expires": self.expires,
            "covered": list(self.covered),
            **({"tag": self.tag} if self.tag else {}),
        }


@dataclass(frozen=True, slots=True)
class SignatureFailure:
    code: str  # one of SIGNATURE_CODES
    message: str  # for the client: what to fix, silent about anything secret
    keyid: str | None = None  # the claimed keyid, when one was readable (unverified)

    @property
    def status(self) -> int:
        return SIGNATURE_CODES[self.code]


def signature_failure(code: str, detail: str | None = None, keyid: str | None = None) -> SignatureFailure:
    message = _MESSAGES[code] if detail is None else f"{_MESSAGES[code]} {detail}"
    return SignatureFailure(code, message, keyid)


class KeyLookup(Protocol):
    """Where verification keys come from (the client registry implements it)."""

    def resolve_key(self, keyid: str, now: float) -> ResolvedKey | SignatureFailure:
        """The key in force for ``keyid`` at ``now``, or ``unknown_key`` / ``key_revoked``."""
        ...


@dataclass(frozen=True, slots=True)
class SignatureRules:
    """What a gateway requires of a signature. Defaults are the documented safe ones."""

    max_age: float = 30.0  # seconds a signature is accepted after its `created`
    max_future: float = 5.0  # seconds `created` may be ahead of the gateway's clock
    require_target: bool = True  # @method and the whole target (URI, or authority + path + query) covered
    require_digest: bool = True  # `content-digest` must be covered
    require_nonce: bool = True
    min_nonce: int = 16  # characters
    max_nonce: int = 128
    tag: str | None = None  # consider only signatures with this tag
    require_authority: bool = False  # `@authority` (or `@target-uri`) must be covered
    require_expires: bool = False
    cover_when_present: tuple[str, ...] = ()  # header fields that must be covered when the request has them

    @classmethod
    def web_bot_auth(cls, max_age: float = 300.0, max_future: float = 5.0) -> SignatureRules:
        """The Web Bot Auth profile: tag ``web-bot-auth``, ``@authority`` covered (and
        ``signature-agent`` when sent), ``created`` and ``expires`` required, nonce optional."""
        return cls(
            max_age=max_age, max_future=max_future, require_target=False, require_digest=False,
            require_nonce=False, tag=WEB_BOT_AUTH_TAG, require_authority=True, require_expires=True,
            cover_when_present=("signature-agent",),
        )  # fmt: skip

    def __post_init__(self) -> None:
        if not (0 < self.max_age <= 3600 and 0 <= self.max_future <= 300):
            raise ValueError("max_age must be within (0, 3600] and max_future within [0, 300] seconds")
        if not 1 <= self.min_nonce <= self.max_nonce <= 1024:
            raise ValueError("need 1 <= min_nonce <= max_nonce <= 1024")


# -- the request as the gateway received it -------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """A public origin of the gateway (``https://api.example.com``, maybe with a path
    prefix that a front proxy strips: ``https://example.com/llm``)."""

    scheme: str
    authority: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.prefix}"


def parse_origin(text: str) -> Origin:
    """``scheme://host[:port][/prefix]`` -> :class:`Origin` (ValueError when it is not one)."""
    parts = urlsplit(text.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"not an origin (scheme://host[:port][/prefix]): {text!r}")
    if "@" in parts.netloc:
        raise ValueError(f"an origin has no user info: {text!r}")
    return Origin(parts.scheme, normalize_authority(parts.scheme, parts.netloc), parts.path.rstrip("/"))


def normalize_authority(scheme: str, authority: str) -> str:
    """Lower-case host, default port dropped (RFC 9421 §2.2.3, RFC 9110 §4.2.3)."""
    authority = authority.strip().lower()
    host, sep, port = authority.rpartition(":")
    if sep and "]" not in port and port.isdigit() and int(port) == _DEFAULT_PORTS.get(scheme):
        return host
    return authority


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parts of a request a signature can cover, as received.

    ``fields`` maps lower-case field names to their field lines in order, each stripped
    of surrounding whitespace (RFC 9421 §2.1). ``target_uri`` is the normalized absolute
    URI (lower-case scheme and host, no default port, path and query as sent)."""

    method: str
    scheme: str
    authority: str
    path: str
    query: str | None  # without the "?"; None when the request has no query
    fields: Mapping[str, tuple[str, ...]]
    body: bytes

    @property
    def target_uri(self) -> str:
        return f"{self.scheme}://{self.authority}{self.request_target}"

    @property
    def request_target(self) -> str:
        return self.path if self.query is None else f"{self.path}?{self.query}"

    def field(self, name: str) -> str | None:
        lines = self.fields.get(name)
        return None if lines is None else ", ".join(lines)

    @classmethod
    def from_url(
        cls, method: str, url: str, headers: Iterable[tuple[str, str]] | Mapping[str, str], body: bytes
    ) -> SignedRequest:
        """From an absolute URL as put on the wire (client side and tests)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return cls(
            method=method.upper(),
            scheme=scheme,
            authority=normalize_authority(scheme, parts.netloc),
            path=parts.path or "/",
            query=parts.query or None,
            fields=_field_lines(headers.items() if isinstance(headers, Mapping) else headers),
            body=body,
        )

    @classmethod
    def from_facts(
        cls,
        facts: RequestFacts,
        *,
        public_origin: Sequence[Origin] = (),
        trust_forwarded: bool = False,
    ) -> SignedRequest:
        """Rebuild what the client addressed from what the gateway received.

        The scheme and authority come from the configured public origin (the one whose
        authority is the request's Host, else the first), or else from the connection's
        scheme and the ``Host`` header — or ``X-Forwarded-Proto``/``X-Forwarded-Host``
        when ``trust_forwarded`` and the peer is a trusted proxy. The path and query are
        the raw ones as received (``facts.raw_path``/``facts.query`` when the HTTP layer
        provides them)."""
        headers = facts.headers
        forwarded = trust_forwarded and facts.via_proxy
        scheme = str(getattr(facts, "scheme", None) or "http").lower()
        host = headers.get("host", "")
        if forwarded:
            scheme = _first(headers.get("x-forwarded-proto")) or scheme
            host = _first(headers.get("x-forwarded-host")) or host
        authority = normalize_authority(scheme, host)
        prefix = ""
        if public_origin:
            chosen = next((o for o in public_origin if o.authority == authority), public_origin[0])
            scheme, authority, prefix = chosen.scheme, chosen.authority, chosen.prefix
        raw_path = getattr(facts, "raw_path", None)
        if isinstance(raw_path, bytes):
            raw_path = raw_path.decode("latin-1")
        path = raw_path or quote(facts.path, safe=_PATH_SAFE)
        query = getattr(facts, "query", None)
        if isinstance(query, bytes):
            query = query.decode("latin-1")
        return cls(
            method=facts.method.upper(),
            scheme=scheme,
            authority=authority,
            path=prefix + path,
            query=query or None,
            fields=_field_lines((k.decode("latin-1"), v.decode("latin-1")) for k, v in facts.raw_headers),
            body=facts.body,
        )


def ser_item(item: Any) -> str:
    """RFC 8941 serialisation of an item ``(bare value, parameters)``."""
    return _ser_item(item)


def ser_innerlist(inner: Any) -> str:
    """RFC 8941 serialisation of an inner list ``([items], parameters)``."""
    return _ser_innerlist(inner)


def _first(value: str | None) -> str | None:
    if value is None:
        return None
    first = value.split(",", 1)[0].strip()
    return first or None


def _field_lines(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name.lower(), []).append(value.strip(" \t"))
    return {k: tuple(v) for k, v in out.items()}


# -- signature base (RFC 9421 §2) --------------------------------------------------------


class _Unusable(Exception):
    """The signature cannot be checked against this request; the text says why."""


Component = tuple[str, dict[str, Any]]  # (name, parameters) as parsed by http-sf


def _component_value(request: SignedRequest, name: str, params: Mapping[str, Any]) -> str:
    if name.startswith("@"):
        if params:
            raise _Unusable(f"component parameters on {name} are not supported")
        if name == "@method":
            return request.method
        if name == "@target-uri":
            return request.target_uri
        if name == "@authority":
            return request.authority
        if name == "@scheme":
            return request.scheme
        if name == "@request-target":
            return request.request_target
        if name == "@path":
            return request.path
        if name == "@query":
            return "?" + (request.query or "")
        raise _Unusable(f"component {name} is not supported")
    unsupported = set(params) - {"sf", "key", "bs"}
    if unsupported:
        raise _Unusable(f"parameter {sorted(unsupported)[0]} on {name} is not supported")
    lines = request.fields.get(name)
    if lines is None:
        raise _Unusable(f"it covers {name}, which the request does not carry")
    if params.get("bs"):
        if len(params) > 1:
            raise _Unusable(f"bs cannot be combined with other parameters on {name}")
        return ", ".join(":" + base64.b64encode(line.encode("latin-1")).decode() + ":" for line in lines)
    value = ", ".join(lines)
    if "key" in params or params.get("sf"):
        try:
            parsed = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
        except (http_sf.StructuredFieldError, ValueError, UnicodeEncodeError) as exc:
            raise _Unusable(f"{name} is not a structured dictionary") from exc
        if "key" in params:
            member: Any = parsed.get(params["key"]) if isinstance(parsed, dict) else None
            if member is None:
                raise _Unusable(f"{name} has no member {params['key']!r}")
            return ser_item(member) if not isinstance(member[0], list) else ser_innerlist(member)
        return http_sf.ser(parsed)
    return value


def signature_base(request: SignedRequest, components: Sequence[Component], params: Mapping[str, Any]) -> bytes:
    """The bytes an Ed25519 signature covers (raises ValueError when it cannot be built)."""
    try:
        return _signature_base(request, components, params)
    except _Unusable as exc:
        raise ValueError(str(exc)) from None


def _signature_base(request: SignedRequest, components: Sequence[Component], params: Mapping[str, Any]) -> bytes:
    lines = []
    for name, cparams in components:
        value = _component_value(request, name, cparams)
        if "\n" in value or "\r" in value:
            raise _Unusable(f"the value of {name} contains a line break")
        lines.append(f"{ser_item((name, cparams))}: {value}")
    lines.append(f'"@signature-params": {ser_innerlist((list(components), dict(params)))}')
    text = "\n".join(lines)
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise _Unusable("the signature base is not ASCII") from None


# -- verification ------------------------------------------------------------------------


def _parse_dictionary_unverified(value: str) -> dict[str, Any] | None:
    if len(value) > _MAX_FIELD:
        return None
    try:
        parsed = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    except (http_sf.StructuredFieldError, ValueError, UnicodeEncodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def signature_tags_unverified(fields: Mapping[str, str]) -> list[str | None]:
    """The ``tag`` of each signature a request carries (lower-case header mapping), in
    label order; ``[]`` when none parses. Nothing is verified."""
    raw = fields.get("signature-input")
    parsed = _parse_dictionary_unverified(raw) if raw is not None else None
    if not parsed:
        return []
    return [t if isinstance(t := _tag(m), str) else None for m in list(parsed.values())[:_MAX_LABELS]]


def signed_keyids_unverified(fields: Mapping[str, str], *, exclude_tag: str | None = None) -> list[str]:
    """The keyids a request *claims* to be signed with (lower-case header mapping), in
    label order, leaving out signatures tagged ``exclude_tag``; for fetching keys the
    gateway has not seen yet. Nothing is verified."""
    raw = fields.get("signature-input")
    parsed = _parse_dictionary_unverified(raw) if raw is not None else None
    if not parsed:
        return []
    out = []
    for member in list(parsed.values())[:_MAX_LABELS]:
        if exclude_tag is not None and _tag(member) == exclude_tag:
            continue
        keyid = member[1].get("keyid") if isinstance(member, tuple) and isinstance(member[0], list) else None
        if isinstance(keyid, str) and 0 < len(keyid) <= _MAX_KEYID:
            out.append(keyid)
    return out


def _check_structure(
    components: Sequence[Component], params: Mapping[str, Any], request: SignedRequest, rules: SignatureRules
) -> str | None:
    """Why this Signature-Input does not meet the gateway's requirements (None: it does)."""
    names = []
    for item in components:
        name, cparams = item
        if not isinstance(name, str) or name != name.lower() or not name:
            return "must name covered components as lower-case strings"
        names.append((name, tuple(sorted(cparams.items()))))
    if len(set(names)) != len(names):
        return "covers a component twice"
    plain = {n for n, p in names if not p}
    if rules.require_target:
        if "@method" not in plain:
            return "must cover @method"
        target = "@request-target" in plain or ("@path" in plain and ("@query" in plain or request.query is None))
        if "@target-uri" not in plain and not ("@authority" in plain and target):
            return "must cover @target-uri (or @authority, @path and, when there is a query, @query)"
    if rules.require_authority and "@authority" not in plain and "@target-uri" not in plain:
        return "must cover @authority"
    if rules.require_digest and "content-digest" not in plain and ("content-digest", (("sf", True),)) not in names:
        return "must cover content-digest"
    for name in rules.cover_when_present:
        if name in request.fields and name not in plain:
            return f"must cover {name}, which the request carries"
    unknown = set(params) - _PARAMS
    if unknown:
        return f"has an unknown signature parameter {sorted(unknown)[0]!r}"
    created = params.get("created")
    if type(created) is not int:
        return "needs an integer created parameter"
    expires = params.get("expires")
    if expires is not None and (type(expires) is not int or expires < created):
        return "needs an integer expires not before created"
    if rules.require_expires and expires is None:
        return "needs an expires parameter"
    keyid = params.get("keyid")
    if not isinstance(keyid, str) or not 0 < len(keyid) <= _MAX_KEYID:
        return "needs a keyid parameter"
    nonce = params.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        return "needs a string nonce"
    if rules.require_nonce and (nonce is None or not rules.min_nonce <= len(nonce) <= rules.max_nonce):
        return f"needs a nonce of {rules.min_nonce} to {rules.max_nonce} characters"
    alg = params.get("alg")
    if alg is not None and alg != ALGORITHM:
        return f'needs alg="{ALGORITHM}" (or no alg)'
    tag = params.get("tag")
    if tag is not None and not isinstance(tag, str):
        return "needs a string tag"
    return None


def _tag(member: Any) -> Any:
    return member[1].get("tag") if isinstance(member, tuple) and isinstance(member[1], dict) else None


def _select(
    inputs: dict[str, Any], signatures: dict[str, Any], keys: KeyLookup, rules: SignatureRules, now: float
) -> tuple[str, Any, Any] | SignatureFailure:
    """The signature to check: the first whose keyid this gateway knows, else the first
    (only those with the rules' tag, when they name one)."""
    labels = [label for label in inputs if label in signatures][:_MAX_LABELS]
    if not labels:
        return signature_failure("signature_invalid", "Signature-Input and Signature share no label.")
    if rules.tag is not None:
        labels = [label for label in labels if _tag(inputs[label]) == rules.tag]
        if not labels:
            return signature_failure("signature_required", f'No signature has tag="{rules.tag}".')
    for label in labels:
        member = inputs[label]
        keyid = member[1].get("keyid") if isinstance(member, tuple) else None
        if isinstance(keyid, str) and not isinstance(keys.resolve_key(keyid, now), SignatureFailure):
            return label, member, signatures[label]
    return labels[0], inputs[labels[0]], signatures[labels[0]]


def verify_signature(
    request: SignedRequest, keys: KeyLookup, rules: SignatureRules, *, now: float
) -> SignatureClaims | SignatureFailure:
    """Verify the request's RFC 9421 signature. Pure: no I/O, ``now`` passed in."""
    raw_input, raw_signature = request.field("signature-input"), request.field("signature")
    if raw_input is None and raw_signature is None:
        return signature_failure("signature_required")
    if raw_input is None or raw_signature is None:
        return signature_failure("signature_invalid", "Both Signature-Input and Signature are needed.")
    inputs = _parse_dictionary_unverified(raw_input)
    signatures = _parse_dictionary_unverified(raw_signature)
    if not inputs or not signatures:
        return signature_failure("signature_invalid", "Signature-Input or Signature is not a valid structured field.")
    selected = _select(inputs, signatures, keys, rules, now)
    if isinstance(selected, SignatureFailure):
        return selected
    label, member, signature = selected
    if not isinstance(member, tuple) or not isinstance(member[0], list):
        return signature_failure("signature_invalid", f"Signature-Input {label} is not an inner list.")
    components: list[Component] = member[0]
    params: dict[str, Any] = member[1]
    problem = _check_structure(components, params, request, rules)
    claimed = params.get("keyid") if isinstance(params.get("keyid"), str) else None
    if problem is not None:
        return signature_failure("signature_invalid", f"Signature-Input {label} {problem}.", claimed)
    keyid: str = params["keyid"]
    key = keys.resolve_key(keyid, now)
    if isinstance(key, SignatureFailure):
        return key
    if not isinstance(signature, tuple) or not isinstance(signature[0], bytes) or len(signature[0]) != 64:
        return signature_failure("signature_invalid", f"Signature {label} is not a 64-byte Ed25519 signature.", keyid)
    try:
        base = _signature_base(request, components, params)
    except _Unusable as exc:
        return signature_failure("signature_invalid", f"Signature {label} cannot be checked: {exc}.", keyid)
    try:
        key.public_key.verify(signature[0], base)
    except InvalidSignature:
        detail = f"Signature {label} does not verify: the method, URL or covered headers differ from what was signed."
        return signature_failure("signature_invalid", detail, keyid)
    # -- verified: the claims below can be believed ---------------------------------------
    created: int = params["created"]
    expires: int | None = params.get("expires")
    if created > now + rules.max_future:
        return signature_failure("signature_expired", "Its created time is in the future.", keyid)
    end = created + rules.max_age
    if expires is not None:
        end = min(end, expires)
    if now >= end:
        return signature_failure("signature_expired", None, keyid)
    digest = _check_digest(request)
    if digest is not None:
        return signature_failure("digest_mismatch", digest, keyid)
    tag = params.get("tag")
    return SignatureClaims(
        signature_id=_b64url(hashlib.sha256(signature[0]).digest())[:22],
        key=key,
        label=label,
        nonce=params.get("nonce") or "",
        created=created,
        expires=expires,
        tag=tag,
        covered=tuple(ser_item(c) for c in components),
        consume_ttl=max(0.0, end - now) + CONSUME_GRACE,
    )


def _check_digest(request: SignedRequest) -> str | None:
    """Check every Content-Digest member we can compute (None: all match)."""
    raw = request.field("content-digest")
    if raw is None:
        return None  # not covered (the structure check decides whether it must be)
    parsed = _parse_dictionary_unverified(raw)
    if not parsed:
        return "Content-Digest is not a valid structured dictionary."
    checked = 0
    for alg, member in parsed.items():
        hasher = _DIGESTS.get(alg)
        if hasher is None:
            continue
        value = member[0] if isinstance(member, tuple) else None
        if not isinstance(value, bytes) or not hmac.compare_digest(value, hasher(request.body).digest()):
            return f"The {alg} digest differs from the body received."
        checked += 1
    if not checked:
        return "Content-Digest has no sha-256 or sha-512 member."
    return None


# -- signing -----------------------------------------------------------------------------


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """The Content-Digest field value for ``body`` (RFC 9530)."""
    hasher = _DIGESTS.get(algorithm)
    if hasher is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}: sha-256 or sha-512")
    return f"{algorithm}=:{base64.b64encode(hasher(body).digest()).decode()}:"


def sign_request(
    request: SignedRequest,
    private_key: Ed25519PrivateKey,
    *,
    keyid: str,
    created: int,
    nonce: str | None,
    expires: int | None = None,
    components: Sequence[str] = DEFAULT_COMPONENTS,
    label: str = "tokenward",
    tag: str | None = None,
    include_alg: bool = True,
) -> tuple[str, str]:
    """Sign ``request`` -> (``Signature-Input`` value, ``Signature`` value).

    Header components the request does not carry are left out (``content-type`` on a
    GET), so the default list fits every request; ``@``-components are always kept."""
    covered: list[Component] = [(name, {}) for name in components if name.startswith("@") or name in request.fields]
    params: dict[str, Any] = {"created": created}
    if expires is not None:
        params["expires"] = expires
    params["keyid"] = keyid
    if nonce is not None:
        params["nonce"] = nonce
    if tag is not None:
        params["tag"] = tag
    if include_alg:
        params["alg"] = ALGORITHM
    base = signature_base(request, covered, params)
    signature = private_key.sign(base)
    sig_input = f"{label}={ser_innerlist((covered, params))}"
    return sig_input, f"{label}=:{base64.b64encode(signature).decode()}:"


# -- keys --------------------------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    text = text.strip()
    alt = b"-_" if ("-" in text or "_" in text) else None
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=alt, validate=True)


def load_public_key(value: str | bytes | Mapping[str, Any] | Ed25519PublicKey) -> Ed25519PublicKey:
    """An Ed25519 public key from base64url (or base64) of its 32 raw bytes, a PEM
    ``PUBLIC KEY``, or an OKP JWK. ValueError when it is none of these."""
    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, Mapping):
        if value.get("kty") != "OKP" or value.get("crv") != "Ed25519" or not isinstance(value.get("x"), str):
            raise ValueError("not an Ed25519 OKP JWK")
        value = value["x"]
    if isinstance(value, bytes) and len(value) == 32:
        return Ed25519PublicKey.from_public_bytes(value)
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise ValueError("not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        return key
    try:
        raw = _b64decode(text)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a base64url Ed25519 public key") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this decodes to {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(value: str | bytes | Ed25519PrivateKey) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM ``PRIVATE KEY`` (PKCS#8), base64url of its 32-byte
    seed, or the raw seed bytes. ValueError when it is none of these."""
    if isinstance(value, Ed25519PrivateKey):
        return value
    if isinstance(value, bytes) and len(value) == 32:
        return Ed25519PrivateKey.from_private_bytes(value)
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else value
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        return key
    try:
        raw = _b64decode(text)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a base64url Ed25519 private key") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 private key seed is 32 bytes, this decodes to {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_key_b64url(key: Ed25519PublicKey) -> str:
    return _b64url(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def private_key_b64url(key: Ed25519PrivateKey) -> str:
    return _b64url(
        key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    )


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def jwk_thumbprint(key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of the key's OKP JWK (RFC 8037), base64url: a stable key id."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": public_key_b64url(key)}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())
