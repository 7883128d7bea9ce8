"""Real Chromium (Playwright async API) and real loopback servers for the browser SDK tests.

* ``browser``: one headless Chromium for the whole session, launched from the Debian
  package (``/usr/bin/chromium``); Playwright's own browser download is never used.
* ``serve``: runs an ASGI app with uvicorn on a free loopback port in a background thread
  and returns ``http://localhost:PORT`` (``localhost`` is a secure context, so WebCrypto
  is available to the page).

Tests that use these fixtures must run on the session event loop:
``pytestmark = pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tokenward.simulate.browsers import CHROMIUM, CHROMIUM_ARGS  # the simulator's browser and flags

CHROMIUM_PRESENT = CHROMIUM.exists()
SDK_PATH = Path(__file__).resolve().parents[2] / "src" / "tokenward" / "sdk" / "tokenward.js"
BLANK_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'>"
    "<script src='/.tokenward/sdk.js'></script></head><body></body></html>"
)


async def sdk_js(_: Request) -> Response:
    # Read on every request so an edited SDK is picked up without restarting anything.
    return Response(SDK_PATH.read_bytes(), media_type="text/javascript; charset=utf-8")


async def blank_page(_: Request) -> Response:
    return HTMLResponse(BLANK_PAGE)


def sdk_routes() -> list[Route]:
    """Routes serving the SDK at its gateway path and a blank page that loads it at ``/``."""
    return [
        Route("/", blank_page),
        Route("/.tokenward/sdk.js", sdk_js),
    ]


class ServerThread:
    """uvicorn serving an ASGI app on 127.0.0.1:<free port>, in a daemon thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[ASGIApp], str]]:
    """``serve(app) -> "http://localhost:PORT"``; the servers stop when the test ends."""
    servers: list[ServerThread] = []

    def start(app: ASGIApp) -> str:
        server = ServerThread(app)
        server.start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def static_site() -> Iterator[str]:
    """A site serving only the SDK (at its gateway path) and a blank page that loads it."""
    server = ServerThread(Starlette(routes=sdk_routes()))
    server.start()
    yield server.url
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[object]:
    if not CHROMIUM_PRESENT:
        pytest.skip(f"{CHROMIUM} is missing: install the Debian 'chromium' package")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page_factory(browser) -> AsyncIterator[Callable[..., object]]:
    """``await page_factory(url)``: a fresh context and page at ``url`` with the SDK loaded.

    Console errors and uncaught page errors are collected on ``page.tw_errors``.
    """
    contexts = []

    async def open_page(url: str, *, wait_for_sdk: bool = True):
        context = await browser.new_context()
        contexts.append(context)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type in ("error", "warning") else None,
        )
        page.tw_errors = errors  # type: ignore[attr-defined]
        await page.goto(url)
        if wait_for_sdk:
            try:
                await page.wait_for_function(
                    "() => window.tokenward && window.tokenward.protocol === 1", timeout=15_000
                )
            except PlaywrightTimeoutError:
                pytest.fail(f"the SDK did not load on {url}; page messages: {errors}")
        return page

    yield open_page
    for context in contexts:
        await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(browser) -> AsyncIterator[Callable[..., object]]:
    """``await open_page(url, init_script=None, **context_options)``: like ``page_factory``
    but with context options (e.g. ``permissions``) and a script run before the page's own."""
    contexts = []

    async def open_(url: str, init_script: str | None = None, **options: object):
        context = await browser.new_context(**options)
        contexts.append(context)
        if init_script:
            await context.add_init_script(init_script)
        # Device registrations of this context, counted from before the first page load.
        registrations: list[str] = []
        context.on(
            "request",
            lambda r: (
                registrations.append(r.url) if r.method == "POST" and r.url.endswith("/.tokenward/device") else None
            ),
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.tw_errors = errors  # type: ignore[attr-defined]
        page.tw_registrations = registrations  # type: ignore[attr-defined]
        await page.goto(url)
        await page.wait_for_function("() => window.tokenward && window.tokenward.protocol === 1", timeout=15_000)
        return page

    yield open_
    for context in contexts:
        await context.close()
