"""The SDK on another origin, in real Chromium, against the REAL gateway (issue 14,
docs/browser-sdk.md "SDK on another origin").

A page served from ``http://localhost:A`` loads ``/.tokenward/sdk.js`` from a gateway at
``http://127.0.0.1:B`` whose chat route lists that page's origin in ``cors.origins``: the
SDK gets its challenges, registers its device key and makes a proved, streamed call, all
cross-origin, and the page reads the answer and tokenward's headers. A page on
``http://localhost:C`` (not listed) loads the same SDK, and the browser itself blocks its
calls with a CORS error: nothing of them reaches the gateway's guard or the model.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from tests.conftest import GatewayProc, Upstream, start_gateway

from .conftest import ServerThread
from .gateway_pages import log_row, signal

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = "/v1/chat/completions"


class PageSite:
    """A site on its own origin whose page loads the SDK from the gateway."""

    def __init__(self) -> None:
        self.gateway = ""

        async def page(_: Request) -> HTMLResponse:
            return HTMLResponse(
                "<!doctype html><html><head><meta charset='utf-8'>"
                f"<script src='{self.gateway}/.tokenward/sdk.js'></script></head>"
                "<body><textarea id='prompt'></textarea></body></html>"
            )

        self.server = ServerThread(Starlette(routes=[Route("/", page)]))
        self.server.start()

    @property
    def url(self) -> str:
        return self.server.url  # http://localhost:PORT: a secure context (WebCrypto, device keys)


@pytest.fixture(scope="module")
def sites(
    demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PageSite, PageSite, GatewayProc]]:
    allowed, other = PageSite(), PageSite()
    gw = start_gateway(
        tmp_path_factory.mktemp("cors-browser"), demo_upstream.url,
        {"routes": [{
            "path": CHAT, "api": "openai", "clients": "browser", "cors": {"origins": [allowed.url]},
            # Headless Chromium driven by Playwright says so; the rest of a browser route's checks stay.
            "weights": {"browser/webdriver": 0, "browser/headless": 0},
        }]},
    )  # fmt: skip
    allowed.gateway = other.gateway = gw.url
    assert allowed.url.split(":")[:2] == ["http", "//localhost"] and gw.url.startswith("http://127.0.0.1:")
    yield allowed, other, gw
    gw.stop()
    allowed.server.stop()
    other.server.stop()


CALL = """async ([gw, text]) => {
  tokenward.configure({ base: gw, routes: ["/v1/chat/completions"] });
  const device = await tokenward.device();
  const response = await tokenward.fetch(gw + "/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: "demo-1", stream: true, messages: [{ role: "user", content: text }] }),
  });
  const reader = response.body.getReader();
  const parts = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(new TextDecoder().decode(value));
  }
  return {
    origin: location.origin, status: response.status, body: parts.join(""), chunks: parts.length,
    requestId: response.headers.get("Tokenward-Request-Id"),
    decision: response.headers.get("Tokenward-Decision"),
    device, proof: tokenward.lastProof,
  };
}"""

PLAIN_FETCH = """async (gw) => {
  try {
    const r = await fetch(gw + "/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "demo-1", messages: [{ role: "user", content: "no proof" }] }),
    });
    return { status: r.status, body: await r.json(), requestId: r.headers.get("Tokenward-Request-Id") };
  } catch (e) {
    return { error: e.name + ": " + e.message };
  }
}"""

SDK_FETCH = """async (gw) => {
  tokenward.configure({ base: gw, routes: ["/v1/chat/completions"], device: false });
  try {
    const r = await tokenward.fetch(gw + "/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "demo-1", messages: [{ role: "user", content: "from a page not listed" }] }),
    });
    return { status: r.status };
  } catch (e) {
    return { error: e.name + ": " + e.message };
  }
}"""


def decisions(gw: GatewayProc) -> int:
    try:
        with sqlite3.connect(gw.db) as db:
            return int(db.execute("SELECT count(*) FROM decisions").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


async def test_a_page_on_a_listed_origin_uses_the_sdk_against_the_gateway(
    open_page: Any, sites: tuple[PageSite, PageSite, GatewayProc]
) -> None:
    allowed, _, gw = sites
    page = await open_page(allowed.url)
    result = await page.evaluate(CALL, [gw.url, "Hello from another origin, how are you?"])
    assert result["origin"] == allowed.url and result["origin"] != gw.url
    assert result["status"] == 200, result
    assert "data: " in result["body"] and "[DONE]" in result["body"]
    # tokenward's headers are readable by the page (Access-Control-Expose-Headers).
    assert result["requestId"] and result["decision"] == "allow"
    # A challenge from the gateway, solved, and signed by a device key registered with it.
    assert result["proof"]["difficulty"] == 8 and result["proof"]["route"] == CHAT
    assert result["device"] is not None and result["proof"]["device"] == result["device"]["id"]
    assert len(page.tw_registrations) == 1 and page.tw_registrations[0].startswith(gw.url)
    row = await log_row(gw.db, result["requestId"])
    assert row["action"] == "allow"
    assert signal(row, "device/ok") is not None
    # The page's origin is not the gateway's Host, but the route lists it: no origin mismatch.
    assert signal(row, "client/origin-mismatch") is None, row["signals"]
    assert page.tw_errors == []

    # A refusal is readable too: the 401 and its challenge (what the SDK retries with).
    refused = await page.evaluate(PLAIN_FETCH, gw.url)
    assert refused.get("status") == 401, refused
    assert refused["body"]["error"]["code"] == "proof_required" and refused["body"]["error"]["challenge"]
    assert refused["requestId"]


async def test_a_page_on_another_origin_is_blocked_by_the_browser(
    browser: Any, sites: tuple[PageSite, PageSite, GatewayProc], demo_upstream: Upstream
) -> None:
    _, other, gw = sites
    context = await browser.new_context()
    try:
        page = await context.new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(msg.text))
        await page.goto(other.url)
        await page.wait_for_function("() => window.tokenward && window.tokenward.protocol === 1")
        before = decisions(gw)
        served = demo_upstream.stats()

        result = await page.evaluate(SDK_FETCH, gw.url)
        assert result.get("error", "").startswith("TypeError"), result  # fetch's network error
        plain = await page.evaluate(PLAIN_FETCH, gw.url)
        assert plain.get("error", "").startswith("TypeError"), plain  # not even the 401 is readable
        await page.wait_for_timeout(300)
        blocked = [m for m in console if "blocked by CORS policy" in m]
        assert blocked and all(other.url in m for m in blocked), console
        # The gateway refused the preflights (the challenge's and the call's) ...
        for url in (gw.url + "/.tokenward/challenge", gw.url + CHAT):
            assert any(url in m and "preflight" in m for m in blocked), (url, blocked)
        # ... so neither the SDK's call nor the plain one was judged, logged or served.
        await page.wait_for_timeout(500)
        assert decisions(gw) == before
        assert demo_upstream.stats() == served
    finally:
        await context.close()
