"""One canonical path per request, decided once at the edge.

A route is matched on a path, and the upstream (or the wrapped app) acts on a path. If the
two can read the same bytes differently, a client can be judged as one route and served
as another: ``POST /static/../v1/chat/completions`` matched an unprotected ``/static/*``
and reached the model, because the HTTP client resolved the dot segments after the gateway
had judged the request. So every spelling that servers, frameworks and client libraries
disagree about is refused here with ``400 bad_request`` before anything else looks at the
request (docs/policy.md, ``ambiguous_paths``):

* dot segments (``/./``, ``/../``), as typed or percent-encoded;
* encoded ``/``, ``\\``, ``%`` (double decoding), ``;`` (path parameters) and control bytes;
* backslashes, empty segments (``//``), ``;`` and any byte outside RFC 3986's path
  characters, raw or encoded non-ASCII, invalid percent-escapes;
* anything that does not start with ``/`` (``*``, a scheme-less authority).

What is left decodes one way only. Routes match it regardless of case and of one trailing
slash (``Policy.route_for``: some frameworks ignore both, and a route must not be missed
because of them), and the upstream receives the request target's bytes exactly as sent.

With ``ambiguous_paths: canonicalize`` the gateway resolves what it can instead (dot
segments, empty segments, backslashes, encoded unreserved characters) and forwards the
*canonical* path, so what was judged is still what is served. Encoded slashes, encoded
``%``, ``;``, control bytes and non-ASCII stay refused: there is no one right reading of them.

Pure functions, no I/O. The common case (a plain ASCII path) takes one ``translate``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

__all__ = ["CanonicalPath", "canonical_path", "canonical_query"]

_UNRESERVED = frozenset((string.ascii_letters + string.digits + "-._~").encode())
# RFC 3986 pchar without ";" (path parameters, read differently by Java and other servers)
# plus "/" and "%" (checked escape by escape below).
_PATH_BYTES = _UNRESERVED | frozenset(b"!$&'()*+,=:@/%")
_PATH_BYTES_SORTED = bytes(sorted(_PATH_BYTES))
_PLAIN = bytes(sorted(_UNRESERVED | {ord("/")}))  # a path of only these needs no decoding
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Query strings are passed verbatim; only bytes no client should send are refused.
_QUERY_BAD = bytes(range(0x20)) + b"\x7f" + bytes(range(0x80, 0x100)) + b" #"

_ENCODED_REFUSED = {
    ord("/"): "an encoded slash (%2F)",
    ord("\\"): "an encoded backslash (%5C)",
    ord("%"): "an encoded percent sign (%25)",
    ord(";"): "an encoded semicolon (%3B)",
}


@dataclass(frozen=True, slots=True)
class CanonicalPath:
    """``path``: decoded, what routes are matched on and the log shows; ``raw``: the bytes
    the upstream receives."""

    path: str
    raw: bytes


def canonical_path(raw: bytes, *, canonicalize: bool = False) -> CanonicalPath | str:
    """The one reading of a request target's path, or why there is none (a sentence)."""
    if not raw.startswith(b"/"):
        return "The request path must start with '/'."
    if not raw.translate(None, _PLAIN) and b"//" not in raw and b"/." not in raw:
        path = raw.decode("ascii")
        return CanonicalPath(path, raw)
    if canonicalize:
        raw = raw.replace(b"\\", b"/")
    bad = raw.translate(None, _PATH_BYTES_SORTED)
    if bad:
        return _refusal_for_byte(bad[0])
    decoded = bytearray()
    out = bytearray()  # the canonical raw form (canonicalize mode)
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b != 0x25:  # "%"
            decoded.append(b)
            out.append(b)
            i += 1
            continue
        pair = raw[i + 1 : i + 3]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            return "The request path has an invalid percent-escape."
        value = int(pair, 16)
        if value in _ENCODED_REFUSED:
            return f"The request path contains {_ENCODED_REFUSED[value]}."
        if value < 0x20 or value == 0x7F:
            return "The request path contains an encoded control character."
        if value >= 0x80:
            return "The request path contains non-ASCII characters."
        if value == 0x2E and not canonicalize:  # "."
            return "The request path contains an encoded dot (%2E)."
        decoded.append(value)
        if value in _UNRESERVED:
            out.append(value)  # the canonical form spells unreserved characters plainly
        else:
            out += b"%" + pair.upper()
        i += 3
    if canonicalize:
        segments = _resolve(bytes(out).split(b"/")[1:])
        if segments is None:
            return "The request path climbs above the root."
        raw = b"/" + b"/".join(segments)
        return canonical_path(raw, canonicalize=False)
    if _has_dot_or_empty_segment(raw) or _has_dot_or_empty_segment(bytes(decoded)):
        return "The request path contains '.' or '..' segments or an empty segment ('//')."
    path = decoded.decode("ascii")
    return CanonicalPath(path, raw)


def canonical_query(query: bytes) -> str | None:
    """Why a query string cannot be passed on verbatim, or None."""
    if query and query.translate(None, _QUERY_BAD) != query:
        return "The query string contains control characters, spaces or non-ASCII bytes."
    return None


def _has_dot_or_empty_segment(raw: bytes) -> bool:
    # Segments after the leading "/"; one trailing empty segment (a trailing slash) is fine.
    segments = raw.split(b"/")[1:]
    if segments and segments[-1] == b"" and len(segments) > 1:
        segments = segments[:-1]
    elif segments == [b""]:
        return False
    return any(s in (b"", b".", b"..") for s in segments)


def _resolve(segments: list[bytes]) -> list[bytes] | None:
    """RFC 3986 remove_dot_segments over segments, dropping empty ones but a trailing one."""
    trailing = bool(segments) and segments[-1] in (b"", b".", b"..")
    out: list[bytes] = []
    for s in segments:
        if s in (b"", b"."):
            continue
        if s == b"..":
            if not out:
                return None
            out.pop()
            continue
        out.append(s)
    if trailing and out:
        out.append(b"")
    return out


def _refusal_for_byte(b: int) -> str:
    if b == ord("\\"):
        return "The request path contains a backslash."
    if b == ord(";"):
        return "The request path contains ';' (path parameters are not accepted)."
    if b >= 0x80:
        return "The request path contains non-ASCII characters."
    if b < 0x20 or b == 0x7F:
        return "The request path contains a control character."
    return f"The request path contains a character that must be percent-encoded ({chr(b)!r})."
