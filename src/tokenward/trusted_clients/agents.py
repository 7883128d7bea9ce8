"""Web Bot Auth agents: verified bots the operator recognises by their key directory.

Not trusted clients: a recognised agent is named in the decision, and its route rules
still apply. Its keys are read from a local JWKS file (a saved copy of the agent's
``/.well-known/http-message-signatures-directory``); keyids are RFC 7638 thumbprints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import http_sf

from ..proof.signature import ResolvedKey, SignatureFailure, jwk_thumbprint, load_public_key, signature_failure
from .settings import AgentSpec, ClientsError

__all__ = ["AgentKeys", "load_jwks", "signature_agent"]


def load_jwks(path: Path) -> dict[str, Any]:
    """The Ed25519 keys of a JWKS file by RFC 7638 thumbprint (other key types are
    skipped: an agent may publish several). ClientsError when there is none."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ClientsError([f"cannot read: {exc.strerror}"], str(path)) from None
    except json.JSONDecodeError as exc:
        raise ClientsError([f"not valid JSON: {exc}"], str(path)) from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        raise ClientsError(['expected a JWKS: {"keys": [...]}'], str(path))
    out = {}
    for jwk in keys:
        if isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            try:
                key = load_public_key(jwk)
            except ValueError as exc:
                raise ClientsError([f"bad key: {exc}"], str(path)) from None
            out[jwk_thumbprint(key)] = key
    if not out:
        raise ClientsError(["no Ed25519 key in this directory"], str(path))
    return out


class AgentKeys:
    """Web Bot Auth keys by thumbprint (a KeyLookup)."""

    def __init__(self, agents: Sequence[AgentSpec]):
        self.keys: dict[str, ResolvedKey] = {}
        self.announced: dict[str, str | None] = {}
        problems: list[str] = []
        for a in agents:
            try:
                found = load_jwks(a.directory)
            except ClientsError as exc:
                problems.append(f"agent {a.name}: {exc}")
                continue
            for keyid, key in found.items():
                self.keys[keyid] = ResolvedKey(keyid, a.name, key, ("*",), "agent")
            self.announced[a.name] = a.signature_agent
        if problems:
            raise ClientsError(problems)

    def resolve_key(self, keyid: str, now: float) -> ResolvedKey | SignatureFailure:
        return self.keys.get(keyid) or signature_failure("unknown_key", keyid=keyid)


def signature_agent(value: str | None, label: str) -> str | None:
    """The Signature-Agent URL for ``label``: a structured string (early drafts) or a
    dictionary member (later ones)."""
    if value is None:
        return None
    for kind in ("item", "dictionary"):
        try:
            parsed: Any = http_sf.parse(value.encode("latin-1"), tltype=kind)
        except (http_sf.StructuredFieldError, ValueError, UnicodeEncodeError):
            continue
        if kind == "dictionary":
            parsed = parsed.get(label) if isinstance(parsed, dict) else None
        if isinstance(parsed, tuple) and isinstance(parsed[0], str):
            return parsed[0]
    return None
