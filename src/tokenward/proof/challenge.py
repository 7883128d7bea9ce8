"""Stateless signed challenges and body-bound proof-of-work (wire protocol v1, docs/protocol.md).

A challenge token is opaque to clients. Inside (before base64url):

    version(1) | kid(4) | issued_at_ms(8) | ttl_ms(4) | difficulty(1) | route_tag(16)
    | challenge_id(16) | HMAC-SHA256(key, all of the above)(32)

As in Fernet, the MAC is checked in constant time before any claim is read; functions
that look at unverified bytes say so in their name, and ``now`` is always passed in.
Single use is *not* decided here: the guard consumes ``challenge_id`` in the Store.

A ring scoped to an epoch (``KeyRing.scoped``: the lifetime of a memory store) signs
version-2 tokens, whose 32-byte MAC is two 16-byte HMAC-SHA256 tags: one over the head
alone, one over the epoch and the head. A token whose first tag verifies but whose
second does not was signed with our key under another epoch (before a restart, or by
another process): it is ``proof_expired``, like a challenge that outlived its lifetime,
and the client solves the fresh challenge the refusal carries. Unscoped rings (a shared,
persistent store) sign and accept version 1 only, unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .keys import KEY_ID_SIZE, KeyRing

__all__ = [
    "MAX_DIFFICULTY",
    "PROOF_VERSION",
    "Challenge",
    "ProofClaims",
    "ProofFailure",
    "issue_challenge",
    "leading_zero_bits",
    "proof_hash",
    "solve",
    "verify_proof",
]

PROOF_VERSION = 1
MAX_DIFFICULTY = 40  # 2^40 hashes is days of browser time: anything above is a config error
_TOKEN_VERSION = 1  # one HMAC-SHA256 over the head: valid wherever the key is held
_SCOPED_VERSION = 2  # two 16-byte tags, the second binding the ring's epoch
_TAG = 16
_HEAD = struct.Struct(">B4sQIB16s16s")  # version, kid, issued_at_ms, ttl_ms, difficulty, ...
_MAC_SIZE = 32
_TOKEN_SIZE = _HEAD.size + _MAC_SIZE
_TOKEN_CHARS = (_TOKEN_SIZE * 8 + 5) // 6
_MAX_NONCE = 2**64
_EMPTY_SHA = hashlib.sha256(b"").digest()
assert _HEAD.size == 1 + KEY_ID_SIZE + 8 + 4 + 1 + 16 + 16  # layout sanity at import time


@lru_cache(maxsize=1024)
def route_tag(route: str) -> bytes:
    return hashlib.sha256(b"tokenward/route/" + route.encode()).digest()[:16]


@dataclass(frozen=True, slots=True)
class Challenge:
    token: str
    difficulty: int
    issued_at: float
    expires_at: float
    challenge_id: bytes

    def to_wire(self) -> dict[str, Any]:
        """The challenge response body (docs/protocol.md §1), also embedded in refusals."""
        return {
            "v": PROOF_VERSION,
            "challenge": self.token,
            "difficulty": self.difficulty,
            "expires_at": int(self.expires_at),
        }

    def wire_json(self) -> bytes:
        """``orjson.dumps(self.to_wire())``, without building the dict: the token is
        base64url and the numbers are integers, so nothing needs escaping."""
        return b'{"v":%d,"challenge":"%s","difficulty":%d,"expires_at":%d}' % (
            PROOF_VERSION, self.token.encode(), self.difficulty, int(self.expires_at),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProofClaims:
    """What a verified proof tells us. Produced only after the MAC and the work checked out."""

    challenge_id: bytes
    kid: bytes
    difficulty: int
    issued_at: float
    expires_at: float
    nonce: int


@dataclass(frozen=True, slots=True)
class ProofFailure:
    code: str  # a wire code from docs/protocol.md §3
    message: str


def issue_challenge(keys: KeyRing, route: str, difficulty: int, ttl: float, now: float) -> Challenge:
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be within 0..{MAX_DIFFICULTY}, got {difficulty}")
    key = keys.signing
    issued_ms = int(now * 1000)
    ttl_ms = int(ttl * 1000)
    cid = secrets.token_bytes(16)
    version = _TOKEN_VERSION if keys.epoch is None else _SCOPED_VERSION
    head = _HEAD.pack(version, key.kid, issued_ms, ttl_ms, difficulty, route_tag(route), cid)
    mac = _mac(key.secret, head, keys.epoch)
    token = base64.urlsafe_b64encode(head + mac).rstrip(b"=").decode()
    return Challenge(
        token=token,
        difficulty=difficulty,
        issued_at=issued_ms / 1000,
        expires_at=(issued_ms + ttl_ms) / 1000,
        challenge_id=cid,
    )


def _mac(secret: bytes, head: bytes, epoch: bytes | None) -> bytes:
    if epoch is None:
        return hmac.new(secret, head, hashlib.sha256).digest()
    return hmac.new(secret, head, hashlib.sha256).digest()[:_TAG] + _epoch_tag(secret, head, epoch)


def _epoch_tag(secret: bytes, head: bytes, epoch: bytes) -> bytes:
    return hmac.new(secret, b"tokenward/epoch\x00" + epoch + head, hashlib.sha256).digest()[:_TAG]


def _check_mac(secret: bytes, head: bytes, mac: bytes, epoch: bytes | None) -> ProofFailure | None:
    """None when the token is ours and valid under ``epoch``; else why not. The key's
    own tag is checked first, so only a token signed with our key learns anything more
    than "does not verify"."""
    version = head[0]
    if version == _TOKEN_VERSION:
        ours = hmac.compare_digest(mac, hmac.new(secret, head, hashlib.sha256).digest())
        scoped_ok = ours and epoch is None
    else:
        ours = hmac.compare_digest(mac[:_TAG], hmac.new(secret, head, hashlib.sha256).digest()[:_TAG])
        # the key's own tag was just checked: only the epoch's is left (one HMAC, not two)
        scoped_ok = ours and epoch is not None and hmac.compare_digest(mac[_TAG:], _epoch_tag(secret, head, epoch))
    if not ours:
        return ProofFailure("proof_invalid", "The challenge signature does not verify.")
    if not scoped_ok:
        return ProofFailure(
            "proof_expired",
            "The challenge was issued before this gateway restarted (or by another instance); solve a fresh one.",
        )
    return None


def proof_hash(challenge: str, body_sha: bytes, signals_sha: bytes, nonce: int) -> bytes:
    return hashlib.sha256(challenge.encode() + b"\x00" + body_sha + signals_sha + nonce.to_bytes(8, "big")).digest()


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def _split_header_unverified(header: str) -> tuple[str, int] | ProofFailure:
    parts = header.strip().split(".")
    if len(parts) != 3 or parts[0] != f"v{PROOF_VERSION}":
        return ProofFailure("proof_invalid", "Tokenward-Proof must look like v1.<challenge>.<nonce>.")
    token, nonce_text = parts[1], parts[2]
    if len(token) != _TOKEN_CHARS or not (nonce_text.isascii() and nonce_text.isdigit()):
        return ProofFailure("proof_invalid", "Tokenward-Proof is malformed.")
    if len(nonce_text) > 20 or int(nonce_text) >= _MAX_NONCE:
        return ProofFailure("proof_invalid", "The proof nonce is out of range.")
    return token, int(nonce_text)


def verify_proof(
    keys: KeyRing,
    header: str,
    *,
    route: str,
    body: bytes,
    signals_header: bytes | None,
    now: float,
    min_difficulty: int = 0,
) -> ProofClaims | ProofFailure:
    """Check a ``Tokenward-Proof`` header, cheapest first (docs/protocol.md §2).

    Order: format, signature, expiry, route, then the work over this body and signals.
    A nonce that does not yield the difficulty over *these* bytes is ``body_mismatch``:
    the protocol carries no separate body hash, so a changed body and a wrong nonce are
    indistinguishable, and both mean "solve again for the bytes you send".
    """
    split = _split_header_unverified(header)
    if isinstance(split, ProofFailure):
        return split
    token, nonce = split
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return ProofFailure("proof_invalid", "The challenge is not valid base64url.")
    if len(raw) != _TOKEN_SIZE or raw[0] not in (_TOKEN_VERSION, _SCOPED_VERSION):
        return ProofFailure("proof_invalid", "The challenge is not one this server issued.")
    head, mac = raw[: _HEAD.size], raw[_HEAD.size :]
    key = keys.get(raw[1 : 1 + KEY_ID_SIZE])
    if key is None:
        return ProofFailure("proof_invalid", "The challenge signature does not verify.")
    bad = _check_mac(key.secret, head, mac, keys.epoch)
    if bad is not None:
        return bad
    _, kid, issued_ms, ttl_ms, difficulty, tag, cid = _HEAD.unpack(head)
    expires_at = (issued_ms + ttl_ms) / 1000
    if now >= expires_at:
        return ProofFailure("proof_expired", "The challenge has expired; solve a fresh one.")
    if not hmac.compare_digest(tag, route_tag(route)):
        return ProofFailure("route_mismatch", "The challenge was issued for another route.")
    body_sha = hashlib.sha256(body).digest()
    signals_sha = hashlib.sha256(signals_header).digest() if signals_header else _EMPTY_SHA
    if leading_zero_bits(proof_hash(token, body_sha, signals_sha, nonce)) < difficulty:
        return ProofFailure(
            "body_mismatch",
            "The proof does not match this request's body and signals; solve again for the exact bytes you send.",
        )
    if difficulty < min_difficulty:
        return ProofFailure("challenge", "A harder proof is needed for this request.")
    return ProofClaims(
        challenge_id=cid,
        kid=kid,
        difficulty=difficulty,
        issued_at=issued_ms / 1000,
        expires_at=expires_at,
        nonce=nonce,
    )


def solve(challenge: str, body: bytes, difficulty: int, signals_header: bytes | None = None) -> int:
    """Find a nonce for a challenge: the reference solver (Python clients, tests, benchmarks)."""
    body_sha = hashlib.sha256(body).digest()
    signals_sha = hashlib.sha256(signals_header).digest() if signals_header else _EMPTY_SHA
    prefix = hashlib.sha256(challenge.encode() + b"\x00" + body_sha + signals_sha)
    limit = 1 << (256 - difficulty)
    for nonce in range(_MAX_NONCE):
        h = prefix.copy()
        h.update(nonce.to_bytes(8, "big"))
        if int.from_bytes(h.digest(), "big") < limit:
            return nonce
    raise RuntimeError("no nonce found")  # pragma: no cover - 2^64 hashes
