"""A tokenward client written from DESIGN.md §3 alone: it imports nothing from tokenward.

Used by the protocol tests to show that the wire protocol, not our own helpers, is what
the gateway accepts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx


def get_challenge(base: str, route: str, client: httpx.Client | None = None) -> dict[str, Any]:
    c = client or httpx.Client()
    r = c.post(f"{base}/.tokenward/challenge", json={"route": route})
    r.raise_for_status()
    return r.json()


def meets(challenge: str, body: bytes, difficulty: int, signals: bytes, nonce: int) -> bool:
    """H = SHA-256(utf8(challenge) || 0x00 || SHA-256(body) || SHA-256(signals) || nonce_be64)."""
    prefix = challenge.encode("utf-8") + b"\x00" + hashlib.sha256(body).digest() + hashlib.sha256(signals).digest()
    h = hashlib.sha256(prefix + nonce.to_bytes(8, "big")).digest()
    return int.from_bytes(h, "big") >> (256 - difficulty) == 0 if difficulty else True


def solve(
    challenge: str, body: bytes, difficulty: int, signals: bytes = b"", fails_for: tuple[bytes, bytes] | None = None
) -> int:
    """The first nonce that meets the difficulty over these bytes.

    A nonce also meets it over *other* bytes with probability 2**-difficulty (that is what
    the binding is worth: the work, redone). A test that sends other bytes on purpose passes
    ``fails_for=(body, signals)`` so that the nonce chosen does not happen to fit them too.
    """
    nonce = 0
    while True:
        if meets(challenge, body, difficulty, signals, nonce) and not (
            fails_for is not None and meets(challenge, fails_for[0], difficulty, fails_for[1], nonce)
        ):
            return nonce
        nonce += 1


def proof_header(
    challenge: dict[str, Any], body: bytes, signals: bytes = b"", fails_for: tuple[bytes, bytes] | None = None
) -> str:
    nonce = solve(challenge["challenge"], body, challenge["difficulty"], signals, fails_for)
    return f"v1.{challenge['challenge']}.{nonce}"


def chat_body(text: str = "What is tokenward?") -> bytes:
    return json.dumps({"model": "demo-1", "messages": [{"role": "user", "content": text}]}).encode()
