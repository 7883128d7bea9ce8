"""Ed25519 key material for signed requests: loading public and private keys from the
forms operators paste (base64url, PEM, JWK), serialising them, and the RFC 7638
thumbprint used as a stable key id."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


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
