"""The request as the gateway received it (:class:`SignedRequest`), and the public
origins (:class:`Origin`) it is rebuilt against: the parts a signature can cover."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from ...facts import RequestFacts

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left alone when a decoded path has to be re-encoded (no raw path available).
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


@dataclass(frozen=True, slots=True)
class Origin:
    """A public origin of the gateway (``https://api.example.com``, maybe with a path
    prefix that a front proxy strips: ``https://example.com/llm``)."""

    scheme: str
    authority: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.prefix}"


def parse_origin(text: str) -> Origin:
    """``scheme://host[:port][/prefix]`` -> :class:`Origin` (ValueError when it is not one)."""
    parts = urlsplit(text.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"not an origin (scheme://host[:port][/prefix]): {text!r}")
    if "@" in parts.netloc:
        raise ValueError(f"an origin has no user info: {text!r}")
    return Origin(parts.scheme, normalize_authority(parts.scheme, parts.netloc), parts.path.rstrip("/"))


def normalize_authority(scheme: str, authority: str) -> str:
    """Lower-case host, default port dropped (RFC 9421 §2.2.3, RFC 9110 §4.2.3)."""
    authority = authority.strip().lower()
    host, sep, port = authority.rpartition(":")
    if sep and "]" not in port and port.isdigit() and int(port) == _DEFAULT_PORTS.get(scheme):
        return host
    return authority


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parts of a request a signature can cover, as received.

    ``fields`` maps lower-case field names to their field lines in order, each stripped
    of surrounding whitespace (RFC 9421 §2.1). ``target_uri`` is the normalized absolute
    URI (lower-case scheme and host, no default port, path and query as sent)."""

    method: str
    scheme: str
    authority: str
    path: str
    query: str | None  # without the "?"; None when the request has no query
    fields: Mapping[str, tuple[str, ...]]
    body: bytes

    @property
    def target_uri(self) -> str:
        return f"{self.scheme}://{self.authority}{self.request_target}"

    @property
    def request_target(self) -> str:
        return self.path if self.query is None else f"{self.path}?{self.query}"

    def field(self, name: str) -> str | None:
        lines = self.fields.get(name)
        return None if lines is None else ", ".join(lines)

    @classmethod
    def from_url(
        cls, method: str, url: str, headers: Iterable[tuple[str, str]] | Mapping[str, str], body: bytes
    ) -> SignedRequest:
        """From an absolute URL as put on the wire (client side and tests)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return cls(
            method=method.upper(),
            scheme=scheme,
            authority=normalize_authority(scheme, parts.netloc),
            path=parts.path or "/",
            query=parts.query or None,
            fields=_field_lines(headers.items() if isinstance(headers, Mapping) else headers),
            body=body,
        )

    @classmethod
    def from_facts(
        cls,
        facts: RequestFacts,
        *,
        public_origin: Sequence[Origin] = (),
        trust_forwarded: bool = False,
    ) -> SignedRequest:
        """Rebuild what the client addressed from what the gateway received.

        The scheme and authority come from the configured public origin (the one whose
        authority is the request's Host, else the first), or else from the connection's
        scheme and the ``Host`` header — or ``X-Forwarded-Proto``/``X-Forwarded-Host``
        when ``trust_forwarded`` and the peer is a trusted proxy. The path and query are
        the raw ones as received (``facts.raw_path``/``facts.query`` when the HTTP layer
        provides them)."""
        headers = facts.headers
        forwarded = trust_forwarded and facts.via_proxy
        scheme = str(getattr(facts, "scheme", None) or "http").lower()
        host = headers.get("host", "")
        if forwarded:
            scheme = _first(headers.get("x-forwarded-proto")) or scheme
            host = _first(headers.get("x-forwarded-host")) or host
        authority = normalize_authority(scheme, host)
        prefix = ""
        if public_origin:
            chosen = next((o for o in public_origin if o.authority == authority), public_origin[0])
            scheme, authority, prefix = chosen.scheme, chosen.authority, chosen.prefix
        raw_path = getattr(facts, "raw_path", None)
        if isinstance(raw_path, bytes):
            raw_path = raw_path.decode("latin-1")
        path = raw_path or quote(facts.path, safe=_PATH_SAFE)
        query = getattr(facts, "query", None)
        if isinstance(query, bytes):
            query = query.decode("latin-1")
        return cls(
            method=facts.method.upper(),
            scheme=scheme,
            authority=authority,
            path=prefix + path,
            query=query or None,
            fields=_field_lines((k.decode("latin-1"), v.decode("latin-1")) for k, v in facts.raw_headers),
            body=facts.body,
        )


def _first(value: str | None) -> str | None:
    if value is None:
        return None
    first = value.split(",", 1)[0].strip()
    return first or None


def _field_lines(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name.lower(), []).append(value.strip(" \t"))
    return {k: tuple(v) for k, v in out.items()}
