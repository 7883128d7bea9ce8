"""The signature base (RFC 9421 §2): the bytes an Ed25519 signature covers, built from
the covered components of the request as received."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import http_sf

from .fields import ser_innerlist, ser_item
from .request import SignedRequest


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
