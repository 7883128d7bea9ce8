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

Where things are: :mod:`.claims` (wire codes, :class:`SignatureClaims`,
:class:`SignatureFailure`, :class:`SignatureRules`), :mod:`.request` (the request as
received: :class:`SignedRequest`, :class:`Origin`), :mod:`.fields` (the
``Signature-Input``/``Signature`` structured fields, read without verifying),
:mod:`.base` (the signature base, RFC 9421 §2), :mod:`.digest` (``Content-Digest``,
RFC 9530), :mod:`.verify` (:func:`verify_signature`), :mod:`.sign`
(:func:`sign_request`), :mod:`.key_material` (loading and serialising Ed25519 keys).
"""

from .base import signature_base
from .claims import (
    ALGORITHM,
    CONSUME_GRACE,
    DEFAULT_COMPONENTS,
    SIGNATURE_CODES,
    WEB_BOT_AUTH_TAG,
    KeyLookup,
    ResolvedKey,
    SignatureClaims,
    SignatureFailure,
    SignatureRules,
    signature_failure,
)
from .digest import content_digest
from .fields import ser_innerlist, ser_item, signature_tags_unverified, signed_keyids_unverified
from .key_material import (
    jwk_thumbprint,
    load_private_key,
    load_public_key,
    private_key_b64url,
    private_key_pem,
    public_key_b64url,
)
from .request import Origin, SignedRequest, parse_origin
from .sign import sign_request
from .verify import verify_signature

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
