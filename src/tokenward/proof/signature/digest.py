"""``Content-Digest`` (RFC 9530): computing it for a body (signing) and checking every
member we can compute against the body received (verification)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from .fields import _parse_dictionary_unverified
from .request import SignedRequest

_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """The Content-Digest field value for ``body`` (RFC 9530)."""
    hasher = _DIGESTS.get(algorithm)
    if hasher is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}: sha-256 or sha-512")
    return f"{algorithm}=:{base64.b64encode(hasher(body).digest()).decode()}:"


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
