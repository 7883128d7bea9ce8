"""The admin listener (``tokenward serve --admin-port``): metrics and the dashboard.

It runs in its own small process next to the gateway's workers, on loopback unless told
otherwise, so scraping and browsing never take a worker's time. It reads what the workers
write: their metrics files (prometheus-client's multiprocess mode) and the decision log
(SQLite or PostgreSQL, so the dashboard shows every instance that logs there).

Who may read what (docs/observability.md):

* ``/metrics``: the admin token as a bearer token when one is configured; without one,
  open, which the CLI allows only on a loopback address.
* ``/.tokenward/dashboard``: only with an admin token configured (else 404), signed in
  with it once (``/.tokenward/signin``), then a session cookie derived from it.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..metrics import CONTENT_TYPE
from .auth import COOKIE, bearer_ok, cookie_value, presented

__all__ = ["DASHBOARD", "admin_app", "is_loopback"]

DASHBOARD = "/.tokenward/dashboard"
SIGNIN = "/.tokenward/signin"
_FORM_CAP = 4096


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_app(
    *,
    render_metrics: Callable[[], bytes],
    token: str | None,
    log_uri: str | None,
    dashboard_routes: Callable[[str], list[BaseRoute]] | None = None,
) -> Starlette:
    """``render_metrics``: the exposition to serve; ``log_uri``: the decision log the
    dashboard reads (None: no dashboard)."""

    async def metrics(request: Request) -> Response:
        if token is not None and not bearer_ok(token, request.headers.get("authorization")):
            return _unauthorized()
        body = await asyncio.to_thread(render_metrics)  # reads the workers' files
        return Response(body, media_type=CONTENT_TYPE)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes: list[BaseRoute] = [
        Route("/metrics", metrics),
        Route("/.tokenward/metrics", metrics),
        Route("/.tokenward/health", health),
    ]
    if token is not None and log_uri is not None:
        if dashboard_routes is None:
            from .dashboard import dashboard_routes as default_routes

            dashboard_routes = default_routes
        routes += [
            Route(SIGNIN, _signin(token), methods=["GET", "POST"]),
            Mount(DASHBOARD, app=_SignedIn(Starlette(routes=dashboard_routes(log_uri)), token)),
            Route("/", lambda request: RedirectResponse(DASHBOARD + "/", status_code=302)),
        ]
    return Starlette(routes=routes)


def _unauthorized() -> Response:
    return JSONResponse(
        {"error": {"code": "unauthorized", "message": "Send the admin token: Authorization: Bearer <token>."}},
        status_code=401,
        headers={"www-authenticate": 'Bearer realm="tokenward"', "cache-control": "no-store"},
    )


class _SignedIn:
    """The dashboard, for requests that carry the token or the session cookie; others are
    sent to the sign-in form (pages) or get a 401 (its JSON API)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or presented(self.token, scope["headers"]):
            await self.app(scope, receive, send)
            return
        accept = dict(scope["headers"]).get(b"accept", b"")
        response = (
            RedirectResponse(SIGNIN, status_code=303, headers={"cache-control": "no-store"})
            if scope["method"] == "GET" and b"text/html" in accept
            else _unauthorized()
        )
        await response(scope, receive, send)


_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tokenward: sign in</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:grid;place-items:center;
height:100vh;margin:0}}form{{background:#1e293b;padding:2rem;border-radius:.5rem;min-width:22rem}}
input{{width:100%;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}}button{{padding:.5rem 1rem}}
.err{{color:#fca5a5}}</style></head><body><form method="post" action="{action}">
<h1>tokenward dashboard</h1>{error}<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<button type="submit">Sign in</button></form></body></html>"""


def _signin(token: str) -> Callable[[Request], Any]:
    async def signin(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(_FORM.format(action=SIGNIN, error=""), headers={"cache-control": "no-store"})
        # The form is read here rather than with request.form(), which needs the
        # python-multipart package for one urlencoded field.
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _FORM_CAP:
                return HTMLResponse("Request body too large.", status_code=413)
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
        if not bearer_ok(token, "Bearer " + given):
            await asyncio.sleep(0.5)  # a little friction for guessing by hand
            error = '<p class="err">That is not the admin token.</p>'
            return HTMLResponse(_FORM.format(action=SIGNIN, error=error), status_code=401)
        response = RedirectResponse(DASHBOARD + "/", status_code=303)
        response.set_cookie(
            COOKIE, cookie_value(token), httponly=True, samesite="strict", path="/.tokenward/",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    return signin
