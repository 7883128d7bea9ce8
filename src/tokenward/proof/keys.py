"""The challenge-signing key ring: sign with the newest key, verify with any.

Keys are 32 random bytes. A key's id is derived from the key itself, so every gateway
instance that loads the same keys agrees on ids without coordination. Rotation: put the
new key first and keep the old one until the longest challenge lifetime has passed.

A key file holds secrets: :func:`write_key_file` creates it readable by its owner only
(0600) and :meth:`KeyRing.from_file` refuses one that its group or others can read, as
ssh does with private keys, so a loose file is fixed rather than silently trusted.

A ring may be *scoped* to an epoch (:meth:`KeyRing.scoped`): challenges it signs are
valid only under the same epoch. The guard scopes its ring to the lifetime of the store
that remembers consumed challenges (proof/scope.py), so a challenge can never outlive
the memory of its use.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["KEY_ID_SIZE", "Key", "KeyRing", "KeyRingError", "encode_key", "write_key_file"]

KEY_ID_SIZE = 4
_KEY_SIZE = 32


class KeyRingError(ConfigurationError):
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
    """Ordered keys; the first one signs. ``epoch``: see :meth:`scoped`."""

    def __init__(self, keys: Sequence[Key], *, epoch: bytes | None = None):
        if not keys:
            raise KeyRingError("a key ring needs at least one key")
        self._keys = tuple(keys)
        self._by_id = {k.kid: k for k in self._keys}
        if len(self._by_id) != len(self._keys):
            raise KeyRingError("the key ring holds the same key twice")
        self.epoch = epoch

    def __repr__(self) -> str:
        scope = f", epoch={self.epoch.hex()[:8]}" if self.epoch is not None else ""
        return f"KeyRing({', '.join(k.kid.hex() for k in self._keys)}{scope})"

    def scoped(self, epoch: bytes | None) -> KeyRing:
        """The same keys, signing challenges valid only under ``epoch`` (None: under no
        epoch, i.e. wherever these keys are held)."""
        return KeyRing(self._keys, epoch=epoch)

    @property
    def keys(self) -> tuple[Key, ...]:
        """Newest first."""
        return self._keys

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
        found = [Key.from_secret(_decode_key(t, f"{where}[{i}]")) for i, t in numbered if t and not t.startswith("#")]
        if not found:
            raise KeyRingError(f"{where}: no key in it")
        try:
            return cls(found)
        except KeyRingError as exc:
            raise KeyRingError(f"{where}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """One base64url key per line, newest first; ``#`` starts a comment line.
        Every problem is a one-line :class:`KeyRingError` naming the file."""
        p = Path(path)
        try:
            mode = p.stat().st_mode
            if not stat.S_ISREG(mode):
                raise KeyRingError(f"key file {p} is not a regular file")
            if mode & 0o077:
                raise KeyRingError(
                    f"key file {p} can be read by its group or others (mode {stat.S_IMODE(mode):04o}): "
                    f"run `chmod 600 {p}`"
                )
            raw = p.read_bytes()
        except OSError as exc:
            raise KeyRingError(f"cannot read key file {p}: {exc.strerror}") from None
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyRingError(f"{p} is not a key file (one base64url key per line, from `tokenward keygen`)") from None
        try:
            return cls.from_strings(text.splitlines(), where=str(p))
        except KeyRingError as exc:
            raise KeyRingError(
                f"{exc} (a key file holds one base64url key per line, from `tokenward keygen`)"
            ) from None

    @classmethod
    def from_env(cls, name: str = "TOKENWARD_KEYS") -> KeyRing | None:
        """Comma-separated base64url keys, newest first; None when the variable is unset."""
        value = os.environ.get(name)
        if not value:
            return None
        return cls.from_strings(value.split(","), where=name)


def write_key_file(path: str | Path, secrets_: Sequence[bytes]) -> None:
    """Write keys (newest first) to ``path``, readable by its owner only (0600) from the
    first byte: the file is made 0600 under a temporary name and renamed into place, so
    neither a reader nor a crash ever sees it half written or with looser permissions."""
    p = Path(path)
    text = "".join(encode_key(s) + "\n" for s in secrets_)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
