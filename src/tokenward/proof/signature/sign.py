"""Signing a request (client side, the SDK and tests): the ``Signature-Input`` and
``Signature`` values for a :class:`SignedRequest`."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .base import Component, signature_base
from .claims import ALGORITHM, DEFAULT_COMPONENTS
from .fields import ser_innerlist
from .request import SignedRequest


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
