"""Verifying a signed request: select the signature, check its structure against the
gateway's rules, resolve its key, verify the signature base, and only then believe the
signed claims (validity window, body digest). See the package docstring for the order."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature

from .base import Component, _signature_base, _Unusable
from .claims import (
    ALGORITHM,
    CONSUME_GRACE,
    KeyLookup,
    SignatureClaims,
    SignatureFailure,
    SignatureRules,
    signature_failure,
)
from .digest import _check_digest
from .fields import _MAX_KEYID, _MAX_LABELS, _parse_dictionary_unverified, _tag, ser_item
from .key_material import _b64url
from .request import SignedRequest

_PARAMS = frozenset({"created", "expires", "keyid", "nonce", "alg", "tag"})


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
