"""The admin token: who may read metrics and the dashboard.

A scraper sends ``Authorization: Bearer <token>``; a browser signs in once on the
dashboard's sign-in form and then carries a cookie derived from the token (an HMAC, so the
token itself is never stored in the browser). Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["COOKIE", "bearer_ok", "cookie_ok", "cookie_value", "presented"]

COOKIE = "tokenward_admin"


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"tokenward dashboard session v1", hashlib.sha256).hexdigest()


def bearer_ok(token: str, authorization: str | None) -> bool:
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def cookie_ok(token: str, cookie: str | None) -> bool:
    return cookie is not None and hmac.compare_digest(cookie.encode(), cookie_value(token).encode())


def presented(token: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when raw ASGI headers carry the admin token (bearer) or the session cookie."""
    for name, value in headers:
        if name == b"authorization" and bearer_ok(token, value.decode("latin-1")):
            return True
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == COOKIE and cookie_ok(token, val):
                    return True
    return False
