"""docs/protocol.md §4.2 written out with ``cryptography`` alone, independently of the
gateway's code (src/tokenward/proof/device.py), to check what the browser SDK sends.

    device id = base64url(SHA-256(SPKI DER)[:16]), no padding
    message   = utf8("tokenward-device-v1") || 0x00 || utf8(Tokenward-Proof) || 0x00 || SHA-256(body)
    header    = "v1.<device id>.<base64url(raw r||s, 64 bytes)>"
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def spec_device_id(spki: bytes) -> str:
    return b64e(hashlib.sha256(spki).digest()[:16])


def p256_key(spki: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(spki)
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    return key


def device_message(proof_header: str, body: bytes) -> bytes:
    return b"tokenward-device-v1\x00" + proof_header.encode() + b"\x00" + hashlib.sha256(body).digest()


def check_device_header(
    header: str, proof_header: str, body: bytes, keys: dict[str, ec.EllipticCurvePublicKey]
) -> tuple[str, str | None]:
    """``("ok", id)``, ``("unknown", id)``, ``("bad-signature", id)`` or ``("malformed", None)``."""
    parts = header.split(".")
    if len(parts) != 3 or parts[0] != "v1":
        return "malformed", None
    device = parts[1]
    try:
        signature = b64d(parts[2])
    except ValueError:
        return "malformed", device
    if len(device) != 22 or len(signature) != 64 or "=" in header:
        return "malformed", device
    key = keys.get(device)
    if key is None:
        return "unknown", device
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, device_message(proof_header, body), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "bad-signature", device
    return "ok", device
