"""The challenge-signing key ring: sign with the newest key, verify with any.

Keys are 32 random bytes. A key's id is derived from the key itself, so every gateway
instance that loads the same keys agrees on ids without coordination. Rotation: put the
new key first and keep the old one until the longest challenge lifetime has passed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KEY_ID_SIZE", "Key", "KeyRing", "KeyRingError"]

KEY_ID_SIZE = 4
_KEY_SIZE = 32


class KeyRingError(ValueError):
    """A key ring could not be built from what was configured."""


@dataclass(frozen=True, slots=True)
class Key:
    secret: bytes
    kid: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"Key(kid={self.kid.hex()}, secret=***)"

    @classmethod
    def from_secret(cls, secret: bytes) -> Key:
        if len(secret) != _KEY_SIZE:
            raise KeyRingError(f"a signing key must be {_KEY_SIZE} bytes, got {len(secret)}")
        kid = hashlib.sha256(b"tokenward/kid/" + secret).digest()[:KEY_ID_SIZE]
        return cls(secret=secret, kid=kid)


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (ValueError, TypeError) as exc:
        raise KeyRingError(f"{where}: not a base64url key") from exc
    if len(raw) != _KEY_SIZE:
        raise KeyRingError(f"{where}: a key must decode to {_KEY_SIZE} bytes, got {len(raw)}")
    return raw


def encode_key(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).rstrip(b"=").decode()


class KeyRing:
    """Ordered keys; the first one signs."""

    def __init__(self, keys: Sequence[Key]):
        if not keys:
            raise KeyRingError("a key ring needs at least one key")
        self._keys = tuple(keys)
        self._by_id = {k.kid: k for k in self._keys}
        if len(self._by_id) != len(self._keys):
            raise KeyRingError("the key ring holds the same key twice")

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(k.kid.hex() for k in self._keys)})"

    @property
    def signing(self) -> Key:
        return self._keys[0]

    def get(self, kid: bytes) -> Key | None:
        return self._by_id.get(kid)

    @classmethod
    def generate(cls) -> KeyRing:
        """A fresh random key: fine for one process; challenges do not survive a restart."""
        return cls([Key.from_secret(secrets.token_bytes(_KEY_SIZE))])

    @classmethod
    def from_strings(cls, keys: Iterable[str], where: str = "keys") -> KeyRing:
        numbered = [(i, t.strip()) for i, t in enumerate(keys)]
        return cls(
            [Key.from_secret(_decode_key(t, f"{where}[{i}]")) for i, t in numbered if t and not t.startswith("#")]
        )

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """One base64url key per line, newest first; ``#`` starts a comment line."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise KeyRingError(f"cannot read key file {p}: {exc.strerror}") from exc
        return cls.from_strings(text.splitlines(), where=str(p))

    @classmethod
    def from_env(cls, name: str = "TOKENWARD_KEYS") -> KeyRing | None:
        """Comma-separated base64url keys, newest first; None when the variable is unset."""
        value = os.environ.get(name)
        if not value:
            return None
        return cls.from_strings(value.split(","), where=name)
