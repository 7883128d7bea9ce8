"""A device key for Python callers (tests, simulators, native apps): docs/protocol.md §4.2.

Browsers keep theirs in WebCrypto (see tokenward.js). This one lives in memory.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..proof.challenge import solve
from ..proof.device import device_id, signed_message

__all__ = ["DeviceKey"]


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class DeviceKey:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None):
        self._key = private_key or ec.generate_private_key(ec.SECP256R1())
        self.spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.id = device_id(self.spki)

    def __repr__(self) -> str:
        return f"DeviceKey({self.id})"

    def registration_body(self) -> bytes:
        return json.dumps({"public_key": _b64e(self.spki)}).encode()

    def register(self, client: Any, base_url: str) -> str:
        """Register with a gateway through an ``httpx``-style client (solves the proof)."""
        challenge = client.post(f"{base_url}/.tokenward/challenge", json={"route": "/.tokenward/device"}).json()
        body = self.registration_body()
        nonce = solve(challenge["challenge"], body, challenge["difficulty"])
        reply = client.post(
            f"{base_url}/.tokenward/device",
            content=body,
            headers={"content-type": "application/json", "Tokenward-Proof": f"v1.{challenge['challenge']}.{nonce}"},
        )
        reply.raise_for_status()
        device: str = reply.json()["device"]
        if device != self.id:
            raise RuntimeError(f"the gateway named this device {device!r}, expected {self.id!r}")
        return device

    def header(self, proof_header: str, body: bytes) -> str:
        """The ``Tokenward-Device`` value for one request."""
        der = self._key.sign(signed_message(proof_header, body), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"v1.{self.id}.{_b64e(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
