"""Device keys: an ECDSA P-256 key per browser that signs every protected request.

The device id is derived from the public key (base64url of the first 16 bytes of
SHA-256 over its SubjectPublicKeyInfo DER), so a key never changes behind an id and the
gateway can cache parsed keys by id for as long as it likes. Wire format: docs/protocol.md §4.2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "DeviceClaim",
    "DeviceKeys",
    "device_id",
    "parse_device_header_unverified",
    "signed_message",
]

_CONTEXT = b"tokenward-device-v1"
_MAX_SPKI = 200  # a P-256 SPKI is 91 bytes


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def device_id(spki_der: bytes) -> str:
    return _b64e(hashlib.sha256(spki_der).digest()[:16])


def signed_message(proof_header: str, body: bytes) -> bytes:
    return _CONTEXT + b"\x00" + proof_header.encode() + b"\x00" + hashlib.sha256(body).digest()


@dataclass(frozen=True, slots=True)
class DeviceClaim:
    """What a ``Tokenward-Device`` header claims, before anything is verified."""

    device: str
    signature: bytes


def parse_device_header_unverified(value: str) -> DeviceClaim | str:
    parts = value.strip().split(".")
    if len(parts) != 3 or parts[0] != "v1" or len(parts[1]) != 22 or len(parts[2]) > 100:
        return "Tokenward-Device must look like v1.<device id>.<signature>"
    try:
        signature = _b64d(parts[2])
        _b64d(parts[1])
    except (binascii.Error, ValueError):
        return "Tokenward-Device is not base64url"
    if len(signature) != 64:
        return "a device signature is 64 bytes (raw r||s)"
    return DeviceClaim(parts[1], signature)


def load_public_key(spki_der: bytes) -> ec.EllipticCurvePublicKey | str:
    """Parse a registration's key; a problem sentence if it is not an ECDSA P-256 key."""
    if len(spki_der) > _MAX_SPKI:
        return "the public key is too large"
    try:
        key = serialization.load_der_public_key(spki_der)
    except UnsupportedAlgorithm:  # a well-formed SPKI of an algorithm nobody asked for
        return "the public key must be ECDSA P-256"
    except (ValueError, TypeError):
        return "the public key is not a DER SubjectPublicKeyInfo"
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return "the public key must be ECDSA P-256"
    return key


class DeviceKeys:
    """Parsed public keys by device id: a bounded local cache in front of the Store."""

    def __init__(self, capacity: int = 50_000):
        self._cap = capacity
        self._keys: OrderedDict[str, ec.EllipticCurvePublicKey] = OrderedDict()

    def cached(self, device: str) -> ec.EllipticCurvePublicKey | None:
        key = self._keys.get(device)
        if key is not None:
            self._keys.move_to_end(device)
        return key

    def remember(self, device: str, spki_der: bytes) -> ec.EllipticCurvePublicKey | None:
        """Cache the stored key of ``device`` (ignored if it does not hash to the id)."""
        if device_id(spki_der) != device:
            return None
        key = load_public_key(spki_der)
        if isinstance(key, str):
            return None
        self._keys[device] = key
        if len(self._keys) > self._cap:
            self._keys.popitem(last=False)
        return key

    @staticmethod
    def verify(key: ec.EllipticCurvePublicKey, claim: DeviceClaim, proof_header: str, body: bytes) -> bool:
        r = int.from_bytes(claim.signature[:32], "big")
        s = int.from_bytes(claim.signature[32:], "big")
        try:
            key.verify(encode_dss_signature(r, s), signed_message(proof_header, body), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True
