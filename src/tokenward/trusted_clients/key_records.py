"""Key records and where they live: the operator's key file and the Store.

A :class:`KeyRecord` is one client key's public material and dates. The key file
(``clients.keys_file``) holds them for one instance; :class:`StoreKeys` puts them in the
Store (``sigkey:<keyid>``, revocations ``sigrevoked:<keyid>``) for several instances.
Both are written by ``tokenward keys``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..proof.signature import jwk_thumbprint, load_public_key, public_key_b64url
from ..store import Append, Get, Put, Range, Store
from .settings import ClientsError, check_routes

__all__ = [
    "FOREVER",
    "STORE_INDEX",
    "KeyFile",
    "KeyRecord",
    "Revocation",
    "StoreKeys",
    "new_key",
    "revocation_key",
    "store_key",
]

FOREVER = 10 * 365 * 86_400.0  # Store entries that should not expire (Put needs a ttl)
STORE_INDEX = "sigkeys"  # list of every keyid put in the Store, for `tokenward keys list`
_INDEX_MAX = 100_000


def store_key(keyid: str) -> str:
    return f"sigkey:{keyid}"


def revocation_key(keyid: str) -> str:
    return f"sigrevoked:{keyid}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One client key as the key file and the Store hold it (public material only)."""

    keyid: str
    client: str
    public_key: str  # base64url of the 32 raw bytes
    created_at: float
    routes: tuple[str, ...] = ()
    not_after: float | None = None  # retired from then on (rotation overlap)
    revoked_at: float | None = None

    def state(self, now: float) -> Literal["active", "retiring", "retired", "revoked"]:
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        if self.not_after is not None:
            return "retired" if now >= self.not_after else "retiring"
        return "active"

    def in_force(self, now: float) -> bool:
        return self.state(now) in ("active", "retiring")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keyid": self.keyid,
            "client": self.client,
            "public_key": self.public_key,
            "created_at": self.created_at,
            "routes": list(self.routes),
        }
        if self.not_after is not None:
            out["not_after"] = self.not_after
        if self.revoked_at is not None:
            out["revoked_at"] = self.revoked_at
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "key") -> KeyRecord:
        if not isinstance(data, Mapping):
            raise ClientsError([f"{where}: not a mapping"])
        problems = []
        for name in ("keyid", "client", "public_key"):
            if not isinstance(data.get(name), str) or not data[name]:
                problems.append(f"{where}.{name}: missing")
        routes = data.get("routes", [])
        if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
            problems.append(f"{where}.routes: not a list of paths")
        for name in ("created_at", "not_after", "revoked_at"):
            v = data.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
                problems.append(f"{where}.{name}: not a unix time")
        if not problems:
            try:
                load_public_key(data["public_key"])
            except ValueError as exc:
                problems.append(f"{where}.public_key: {exc}")
            try:
                check_routes(tuple(routes))
            except ValueError as exc:
                problems.append(f"{where}.routes: {exc}")
        if problems:
            raise ClientsError(problems)
        return cls(
            keyid=data["keyid"],
            client=data["client"],
            public_key=data["public_key"],
            created_at=float(data.get("created_at") or 0.0),
            routes=tuple(routes),
            not_after=data.get("not_after"),
            revoked_at=data.get("revoked_at"),
        )


def new_key(
    client: str, routes: Sequence[str], now: float, keyid: str | None = None
) -> tuple[KeyRecord, Ed25519PrivateKey]:
    """A fresh Ed25519 key pair for ``client``; the keyid defaults to
    ``<client>.<first 16 characters of the key's JWK thumbprint>``."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    record = KeyRecord(
        keyid=keyid or f"{client}.{jwk_thumbprint(public)[:16]}",
        client=client,
        public_key=public_key_b64url(public),
        created_at=round(now, 3),
        routes=check_routes(tuple(routes)),
    )
    return record, private


class KeyFile:
    """The operator's key file: ``{"version": 1, "keys": [KeyRecord...]}``, JSON unless
    the name ends in .yaml/.yml. Written atomically (a reader never sees half a file)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def _yaml(self) -> bool:
        return self.path.suffix.lower() in (".yaml", ".yml")

    def load(self) -> list[KeyRecord]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ClientsError([f"cannot read: {exc.strerror}"], str(self.path)) from None
        try:
            data = yaml.safe_load(text) if self._yaml else json.loads(text) if text.strip() else {}
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ClientsError([f"not valid {'YAML' if self._yaml else 'JSON'}: {exc}"], str(self.path)) from None
        if data is None:
            return []
        if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
            raise ClientsError(['expected {"version": 1, "keys": [...]}'], str(self.path))
        if data.get("version", 1) != 1:
            raise ClientsError([f"unsupported version {data.get('version')!r}"], str(self.path))
        records, problems = [], []
        for i, item in enumerate(data.get("keys", [])):
            try:
                records.append(KeyRecord.from_dict(item, f"keys[{i}]"))
            except ClientsError as exc:
                problems.extend(exc.problems)
        keyids = [r.keyid for r in records]
        problems += [f"keyid {k} is listed twice" for k in sorted({k for k in keyids if keyids.count(k) > 1})]
        if problems:
            raise ClientsError(problems, str(self.path))
        return records

    def save(self, records: Sequence[KeyRecord]) -> None:
        data = {"version": 1, "keys": [r.to_dict() for r in records]}
        text = yaml.safe_dump(data, sort_keys=False) if self._yaml else json.dumps(data, indent=2) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            if self.path.exists():
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            else:
                os.chmod(tmp, 0o644)  # public keys only; who may *write* it is what matters
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True, slots=True)
class Revocation:
    """``sigrevoked:<keyid>`` in the Store: the key is refused from ``at`` on."""

    at: float
    reason: str = "revoked"  # or "rotated" (the end of an overlap)

    def encode(self) -> bytes:
        return json.dumps({"at": self.at, "reason": self.reason}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Revocation | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return cls(float(data["at"]), str(data.get("reason", "revoked")))
        except (ValueError, KeyError, TypeError):
            return cls(0.0, "unreadable")  # fail closed: something revoked it


class StoreKeys:
    """Keys in the Store, for several gateway instances (``tokenward keys --store``).
    Every call is one batch; nothing here is on the request path."""

    def __init__(self, store: Store):
        self.store = store

    async def put(self, record: KeyRecord) -> None:
        stored = replace(record, revoked_at=None)  # revocation lives in its own entry
        await self.store.execute(
            [
                Put(store_key(record.keyid), json.dumps(stored.to_dict()).encode(), FOREVER),
                Append(STORE_INDEX, record.keyid.encode(), _INDEX_MAX, FOREVER),
            ]
        )
        if record.revoked_at is not None:
            await self.revoke(record.keyid, record.revoked_at, "revoked")
        if record.not_after is not None:
            await self.revoke(record.keyid, record.not_after, "rotated")

    async def get(self, keyid: str) -> KeyRecord | None:
        raw, revoked = await self.store.execute([Get(store_key(keyid)), Get(revocation_key(keyid))])
        return self._record(raw, revoked)

    async def all(self) -> list[KeyRecord]:
        (index,) = await self.store.execute([Range(STORE_INDEX)])
        keyids = list(dict.fromkeys(k.decode() for k in index))
        ops = [op for k in keyids for op in (Get(store_key(k)), Get(revocation_key(k)))]
        results = await self.store.execute(ops) if ops else []
        out = []
        for i in range(0, len(results), 2):
            record = self._record(results[i], results[i + 1])
            if record is not None:
                out.append(record)
        return out

    async def revoke(self, keyid: str, at: float, reason: str = "revoked") -> None:
        """Refuse ``keyid`` from ``at`` on (an earlier revocation stands). Operator-only:
        the common case (first revocation) is one atomic put-if-absent."""
        entry = Revocation(at, reason).encode()
        (created,) = await self.store.execute([Put(revocation_key(keyid), entry, FOREVER, only_new=True)])
        if created:
            return
        (current,) = await self.store.execute([Get(revocation_key(keyid))])
        known = Revocation.decode(current)
        if known is not None and known.at <= at:
            return
        await self.store.execute([Put(revocation_key(keyid), entry, FOREVER)])

    @staticmethod
    def _record(raw: bytes | None, revoked: bytes | None) -> KeyRecord | None:
        if raw is None:
            return None
        record = KeyRecord.from_dict(json.loads(raw), "store")
        r = Revocation.decode(revoked)
        if r is None:
            return record
        if r.reason == "rotated":
            return replace(record, not_after=r.at)
        return replace(record, revoked_at=r.at)
