"""What signature verification needs and produces: the wire codes of refusals, the
rules a gateway sets (:class:`SignatureRules`), where keys come from (:class:`KeyLookup`),
and the result — :class:`SignatureClaims` when a signature verified, else a
:class:`SignatureFailure` (docs/signed-requests.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
    retry_after: int | None = None  # seconds after which a new signature will do (a gateway that just started)

    @property
    def status(self) -> int:
        return SIGNATURE_CODES[self.code]


def signature_failure(
    code: str, detail: str | None = None, keyid: str | None = None, *, retry_after: int | None = None
) -> SignatureFailure:
    message = _MESSAGES[code] if detail is None else f"{_MESSAGES[code]} {detail}"
    return SignatureFailure(code, message, keyid, retry_after)


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
