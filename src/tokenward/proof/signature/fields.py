"""The ``Signature-Input`` and ``Signature`` fields as RFC 8941 structured fields:
parsing them (bounded, never raising) and serialising items and inner lists. The
``*_unverified`` readers let the gateway look at what a request *claims* before any
signature is checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import http_sf
from http_sf.innerlist import ser_innerlist as _ser_innerlist
from http_sf.item import ser_item as _ser_item

_MAX_LABELS = 8
_MAX_FIELD = 8192  # bytes of Signature-Input / Signature considered at all
_MAX_KEYID = 256


def ser_item(item: Any) -> str:
    """RFC 8941 serialisation of an item ``(bare value, parameters)``."""
    return _ser_item(item)


def ser_innerlist(inner: Any) -> str:
    """RFC 8941 serialisation of an inner list ``([items], parameters)``."""
    return _ser_innerlist(inner)


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


def _tag(member: Any) -> Any:
    return member[1].get("tag") if isinstance(member, tuple) and isinstance(member[1], dict) else None
