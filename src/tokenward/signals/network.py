"""Network signals: is the client address in a datacenter, Tor, proxy or VPN list?

The lists are files the operator provides (docs/signals.md says where real ones come
from): one CIDR or single address per line, IPv4 or IPv6, ``#`` comments and blank lines
allowed. Each file is a named list; a hit on list ``tor`` is the signal ``network/tor``.

Lookups are on the request path, loading is not: :meth:`CidrLists.from_files` reads
and indexes the files once (about a second per million CIDRs), then every lookup is a
binary search per list over sorted, merged address ranges — a few microseconds whatever
the size. IPv4 ranges live in compact ``array('I')`` columns (8 bytes per merged range).
"""

from __future__ import annotations

import re
import socket
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..decision import Signal
from ..errors import ConfigurationError
from ..facts import RequestFacts

__all__ = [
    "NETWORK_WEIGHTS",
    "CidrListError",
    "CidrListSpec",
    "CidrLists",
    "NetworkSettings",
    "load_lists",
    "network_signals",
    "parse_ip",
    "subnet_of",
]

# Default weights of the usual list names; any other list name weighs DEFAULT_LIST_WEIGHT.
NETWORK_WEIGHTS: dict[str, float] = {
    "network/datacenter": 2.0,
    "network/tor": 4.0,
    "network/proxy": 3.0,
    "network/vpn": 1.0,
}
DEFAULT_LIST_WEIGHT = 2.0

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_V4_MAX = (1 << 32) - 1
_V6_MAX = (1 << 128) - 1
_V4_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96
_MAX_PROBLEMS = 20


class CidrListError(ConfigurationError):
    """A list file that cannot be used; ``problems`` holds ``file:line: message`` entries."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        more = "" if len(problems) <= _MAX_PROBLEMS else f"\n  ... ({len(problems) - _MAX_PROBLEMS} more)"
        super().__init__(
            f"{len(problems)} problem(s) in CIDR lists:\n"
            + "\n".join(f"  - {p}" for p in problems[:_MAX_PROBLEMS])
            + more
        )


# --------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)  # each request's address is parsed twice (its subnet, the lists)
def parse_ip(ip: str) -> tuple[int, int] | None:
    """``(4 or 6, address as int)``; IPv4-mapped IPv6 (``::ffff:a.b.c.d``) counts as IPv4.
    None when ``ip`` is not an address (zone ids like ``fe80::1%eth0`` are dropped)."""
    try:
        if ":" not in ip:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip.partition("%")[0]), "big")
    except (OSError, ValueError, TypeError):
        return None
    if value >> 32 == 0xFFFF:
        return 4, value & _V4_MAX
    return 6, value


@lru_cache(maxsize=65536)
def _v6_subnet(prefix48: int) -> str:
    return f"{IPv6Address(prefix48 << 80).compressed}/48"


def subnet_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network holding ``ip``, as text — the key under which
    one network's many addresses are counted together. Not an address: ``ip`` unchanged."""
    parsed = parse_ip(ip)
    if parsed is None:
        return ip
    family, value = parsed
    if family == 4:
        v = value >> 8
        return f"{v >> 16}.{(v >> 8) & 255}.{v & 255}.0/24"
    return _v6_subnet(value >> 80)


def _parse_cidr(text: str) -> tuple[int, int, int] | str:
    """``(family, first, last)`` of a CIDR or single address; a problem string if bad.
    Host bits are ignored (``10.1.2.3/8`` is ``10.0.0.0/8``), as operators' lists do."""
    addr, slash, plen_text = text.partition("/")
    parsed = parse_ip(addr)
    if parsed is None or "%" in addr:
        return f"not an IP address: {addr!r}"
    family, value = parsed
    mapped = family == 4 and ":" in addr
    bits = 32 if family == 4 else 128
    if slash:
        if not plen_text.isdigit() or len(plen_text) > 3:
            return f"bad prefix length: {plen_text!r}"
        plen = int(plen_text)
        if mapped:
            plen -= 96  # ::ffff:1.2.3.0/120 is 1.2.3.0/24
            if plen < 0:
                return f"prefix too short for an IPv4-mapped address: /{plen_text}"
        if plen > bits:
            return f"prefix length /{plen_text} is longer than the address"
    else:
        plen = bits
    host = (1 << (bits - plen)) - 1
    first = value & ~host & (_V4_MAX if family == 4 else _V6_MAX)
    return family, first, first | host


@dataclass(frozen=True, slots=True)
class _Ranges:
    """Sorted, disjoint, non-adjacent inclusive ranges ``[starts[i], ends[i]]``."""

    starts: Sequence[int]
    ends: Sequence[int]

    def __contains__(self, x: int) -> bool:
        i = bisect_right(self.starts, x) - 1
        return i >= 0 and x <= self.ends[i]

    def __len__(self) -> int:
        return len(self.starts)


def _merge(keys: list[int], shift: int, compact: bool) -> _Ranges:
    """Merge ranges encoded as ``first << shift | last`` (sorted ints are much faster to
    sort than tuples); overlapping and adjacent ranges become one."""
    keys.sort()
    mask = (1 << shift) - 1
    starts: list[int] = []
    ends: list[int] = []
    add_start, add_end = starts.append, ends.append
    cur_s = cur_e = -2
    for k in keys:
        s = k >> shift
        if s <= cur_e + 1:
            e = k & mask
            if e > cur_e:
                cur_e = e
        else:
            if cur_s >= 0:
                add_start(cur_s)
                add_end(cur_e)
            cur_s, cur_e = s, k & mask
    if cur_s >= 0:
        add_start(cur_s)
        add_end(cur_e)
    if compact:
        return _Ranges(array("I", starts), array("I", ends))
    return _Ranges(starts, ends)


_NETMASK4 = tuple((_V4_MAX << (32 - p)) & _V4_MAX for p in range(33))
_HOSTMASK4 = tuple(_V4_MAX >> p for p in range(33))
_PLEN4 = {str(p): p for p in range(33)}


def _read_lines(lines: Iterable[str]) -> tuple[list[int], list[int], list[tuple[int, str]]]:
    """Parse list lines into encoded ranges (``first << bits | last``) per family.

    The IPv4 case is inlined: it is most of every real list and this loop is the whole
    cost of loading a million entries.
    """
    v4: list[int] = []
    v6: list[int] = []
    bad: list[tuple[int, str]] = []
    pton, af4 = socket.inet_pton, socket.AF_INET
    frombytes = int.from_bytes
    netmask, hostmask, plen4 = _NETMASK4, _HOSTMASK4, _PLEN4
    for lineno, line in enumerate(lines, 1):
        if "#" in line:
            line = line.partition("#")[0]
        text = line.strip()
        if not text:
            continue
        addr, slash, plen_text = text.partition("/")
        if ":" not in addr:
            p = plen4.get(plen_text) if slash else 32
            if p is not None:
                try:
                    value = frombytes(pton(af4, addr), "big")
                except OSError:
                    pass
                else:
                    first = value & netmask[p]
                    v4.append(first << 32 | first | hostmask[p])
                    continue
        parsed = _parse_cidr(text)
        if isinstance(parsed, str):
            bad.append((lineno, parsed))
            continue
        family, first, last = parsed
        if family == 4:
            v4.append(first << 32 | last)
        else:
            v6.append(first << 128 | last)
    return v4, v6, bad


class CidrLists:
    """Named address lists with fast membership lookups. Immutable once built."""

    def __init__(self, lists: Mapping[str, tuple[_Ranges, _Ranges]], entries: Mapping[str, int]):
        self._lists = dict(lists)
        self._entries = dict(entries)
        # (name, starts, ends) per family, only lists that hold addresses of that family.
        self._v4 = tuple((n, r.starts, r.ends) for n, (r, _) in self._lists.items() if len(r))
        self._v6 = tuple((n, r.starts, r.ends) for n, (_, r) in self._lists.items() if len(r))

    @classmethod
    def empty(cls) -> CidrLists:
        return cls({}, {})

    @classmethod
    def from_lines(
        cls, lists: Mapping[str, Iterable[str]], *, strict: bool = True, source: str | None = None
    ) -> CidrLists:
        """Build from named line iterables (the file format, one entry per line)."""
        built: dict[str, tuple[_Ranges, _Ranges]] = {}
        entries: dict[str, int] = {}
        problems: list[str] = []
        for name, lines in lists.items():
            if not _NAME_RE.match(name):
                raise CidrListError([f"{name!r}: list names are lower-case letters, digits, - and _"])
            v4, v6, bad = _read_lines(lines)
            if strict:
                problems.extend(f"{source or name}:{lineno}: {why}" for lineno, why in bad)
            entries[name] = len(v4) + len(v6)
            built[name] = (_merge(v4, 32, compact=True), _merge(v6, 128, compact=False))
        if problems:
            raise CidrListError(problems)
        return cls(built, entries)

    @classmethod
    def from_files(cls, files: Mapping[str, str | Path], *, strict: bool = True) -> CidrLists:
        """Read ``{list name: path}``. Blocking I/O: call it at policy load, off the event
        loop (``await asyncio.to_thread(CidrLists.from_files, files)``)."""
        built: dict[str, tuple[_Ranges, _Ranges]] = {}
        entries: dict[str, int] = {}
        problems: list[str] = []
        for name, path in files.items():
            try:
                text = Path(path).read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
                continue
            try:
                one = cls.from_lines({name: text.splitlines()}, strict=strict, source=str(path))
            except CidrListError as exc:
                problems.extend(exc.problems)
                continue
            built[name] = one._lists[name]
            entries[name] = one._entries[name]
        if problems:
            raise CidrListError(problems)
        return cls(built, entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._lists)

    def entries(self, name: str) -> int:
        """Lines loaded into list ``name`` (before merging)."""
        return self._entries.get(name, 0)

    def ranges(self, name: str) -> int:
        """Disjoint ranges list ``name`` holds after merging."""
        v4, v6 = self._lists[name]
        return len(v4) + len(v6)

    def lookup(self, ip: str) -> tuple[str, ...]:
        """Names of the lists holding ``ip`` (empty for a non-address)."""
        parsed = parse_ip(ip)
        if parsed is None:
            return ()
        family, value = parsed
        hits: list[str] = []
        for name, starts, ends in self._v4 if family == 4 else self._v6:
            i = bisect_right(starts, value) - 1
            if i >= 0 and value <= ends[i]:
                hits.append(name)
        return tuple(hits)

    def contains(self, name: str, ip: str) -> bool:
        parsed = parse_ip(ip)
        if parsed is None or name not in self._lists:
            return False
        return parsed[1] in self._lists[name][0 if parsed[0] == 4 else 1]

    def __repr__(self) -> str:
        return "CidrLists(" + ", ".join(f"{n}={self._entries[n]}" for n in self._lists) + ")"


# --------------------------------------------------------------------------------------
# Settings and signals
# --------------------------------------------------------------------------------------
class CidrListSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path = Field(description="one CIDR or address per line; # comments")
    weight: float | None = Field(None, description="default weight of network/<name> (policy weights still override)")


class NetworkSettings(BaseModel):
    """``network:`` section of the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lists: dict[str, CidrListSpec] = Field(
        default_factory=dict, description="list name -> file (or {file, weight}); a hit is network/<name>"
    )
    strict: bool = Field(True, description="a malformed line fails the load (false: skip it)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("lists"), dict):
            data = {
                **data,
                "lists": {k: {"file": v} if isinstance(v, str | Path) else v for k, v in data["lists"].items()},
            }
        return data

    @field_validator("lists")
    @classmethod
    def _names(cls, v: dict[str, CidrListSpec]) -> dict[str, CidrListSpec]:
        bad = [n for n in v if not _NAME_RE.match(n)]
        if bad:
            raise ValueError(f"list names are lower-case letters, digits, - and _: {', '.join(bad)}")
        return v

    def weight_of(self, name: str) -> float:
        spec = self.lists.get(name)
        if spec is not None and spec.weight is not None:
            return spec.weight
        return NETWORK_WEIGHTS.get(f"network/{name}", DEFAULT_LIST_WEIGHT)


def load_lists(cfg: NetworkSettings) -> CidrLists:
    """Load the configured lists (blocking I/O: policy load time, off the event loop)."""
    if not cfg.lists:
        return CidrLists.empty()
    return CidrLists.from_files({n: s.file for n, s in cfg.lists.items()}, strict=cfg.strict)


def network_signals(facts: RequestFacts, lists: CidrLists, cfg: NetworkSettings) -> list[Signal]:
    """One ``network/<list>`` signal per list holding the client address."""
    hits = lists.lookup(facts.client_ip)
    if not hits:
        return []
    return [Signal(f"network/{name}", cfg.weight_of(name), {"ip": facts.client_ip}) for name in hits]
