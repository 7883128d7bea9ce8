"""Which other origins' pages may call a route: the ``cors`` setting of the policy
(docs/browser-sdk.md, "SDK on another origin"), validated and normalized the way browsers
send an ``Origin``. The gateway's handling of preflights and answers is in
``tokenward.http.cors``; this module stays below the policy, which reads it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["EXPOSED", "SDK_REQUEST_HEADERS", "CorsSettings", "normalize_origin"]

# What the SDK (src/tokenward/sdk/tokenward.js) and protocol clients send to a protected
# route: the proof, its signals and device signature, the server-held conversation id,
# and the usual Content-Type / Authorization (a JWT for identity.jwt).
SDK_REQUEST_HEADERS = (
    "Content-Type", "Authorization", "Tokenward-Proof", "Tokenward-Signals", "Tokenward-Device",
    "Tokenward-Conversation",
)  # fmt: skip
# What a page may read of an answer beyond the CORS-safelisted response headers: the SDK
# reads Tokenward-Device ("unknown": register again); pages read the rest (docs/protocol.md).
EXPOSED = (
    "Tokenward-Request-Id", "Tokenward-Decision", "Tokenward-Device", "Tokenward-Conversation",
    "Retry-After", "WWW-Authenticate",
)  # fmt: skip

_SCHEME_HOST = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 5.6.2)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalize_origin(text: str) -> str:
    """The one spelling a browser sends for ``text`` (``scheme://host[:port]``, lower case,
    no default port), or ``ValueError`` saying what to write instead."""
    if text.strip() in ("*", "null"):
        raise ValueError(
            f"{text.strip()!r} is not accepted: any site could then have its visitors' browsers call this "
            "route (and solve its proofs); list the exact origins, e.g. 'https://app.example'"
        )
    m = _SCHEME_HOST.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not an origin: write scheme://host[:port], e.g. 'https://app.example'")
    scheme = m["scheme"].lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{text!r}: only http:// and https:// origins are accepted")
    rest = m["rest"]
    if "*" in rest:
        raise ValueError(f"{text!r}: wildcards are not accepted; list each origin")
    if any(c in rest for c in "/?#"):
        cut = min(i for i in (rest.find(c) for c in "/?#") if i >= 0)
        raise ValueError(
            f"{text!r} has a path, query or fragment: an origin is scheme://host[:port] only "
            f"(write {scheme + '://' + rest[:cut]!r})"
        )
    if "@" in rest:
        raise ValueError(f"{text!r}: an origin has no user name or password")
    if not rest.isascii():
        try:
            hint = f" (write {scheme + '://' + rest.encode('idna').decode('ascii')!r})"
        except UnicodeError:
            hint = ""
        raise ValueError(f"{text!r}: write an internationalized host name in its punycode form{hint}")
    rest = rest.lower()
    host, port = rest, ""
    if rest.startswith("["):
        end = rest.find("]")
        host, after = rest[: end + 1], rest[end + 1 :]
        if after:
            if not after.startswith(":"):
                raise ValueError(f"{text!r} is not an origin: write scheme://host[:port]")
            port = after[1:]
        if not _IPV6.fullmatch(host):
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address")
    elif ":" in rest:
        host, _, port = rest.partition(":")
    if not rest.startswith("[") and (not host or not _HOSTNAME.fullmatch(host)):
        raise ValueError(f"{text!r}: {host!r} is not a host name")
    if port:
        if not port.isdigit() or not 0 < int(port) < 65_536:
            raise ValueError(f"{text!r}: {port!r} is not a port")
        port = str(int(port))
        if port == _DEFAULT_PORTS[scheme]:
            port = ""
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def _header_names(names: Sequence[str]) -> tuple[str, ...]:
    for name in names:
        if not _TOKEN.fullmatch(name) or name == "*":
            raise ValueError(f"{name!r} is not a header name (wildcards are not accepted)")
    return tuple(names)


class CorsSettings(BaseModel):
    """A route's ``cors`` setting: which other origins' pages may call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origins: tuple[str, ...] = Field(
        min_length=1, description="exact origins (scheme://host[:port]) whose pages may call the route"
    )
    credentials: bool = Field(
        False, description="let those pages send cookies (Access-Control-Allow-Credentials: true)"
    )
    headers: tuple[str, ...] = Field((), description="request headers allowed besides the SDK's")
    expose: tuple[str, ...] = Field((), description="response headers the page may read besides tokenward's")
    max_age: int = Field(600, ge=0, le=86_400, description="seconds a browser may reuse a preflight answer")

    @field_validator("origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for text in v:
            origin = normalize_origin(text)
            if origin not in out:
                out.append(origin)
        return tuple(out)

    @field_validator("headers", "expose")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _header_names(v)

    @cached_property
    def allowed(self) -> frozenset[bytes]:
        return frozenset(o.encode("ascii") for o in self.origins)

    @cached_property
    def preflight_headers(self) -> list[tuple[bytes, bytes]]:
        names = [*SDK_REQUEST_HEADERS, *(h for h in self.headers if h.lower() not in _SDK_LOWER)]
        out = [
            (b"access-control-allow-headers", ", ".join(names).encode()),
            (b"access-control-max-age", str(self.max_age).encode()),
        ]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    @cached_property
    def answer_headers(self) -> list[tuple[bytes, bytes]]:
        names = [*EXPOSED, *(h for h in self.expose if h.lower() not in _EXPOSED_LOWER)]
        out = [_VARY, (b"access-control-expose-headers", ", ".join(names).encode())]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out


_SDK_LOWER = frozenset(h.lower() for h in SDK_REQUEST_HEADERS)
_EXPOSED_LOWER = frozenset(h.lower() for h in EXPOSED)
_VARY = (b"vary", b"Origin")
