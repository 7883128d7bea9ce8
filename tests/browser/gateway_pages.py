"""Helpers for driving the demo chat page through a REAL gateway (``tokenward serve``).

The gateway forwards ``/demo`` (unprotected) to the demo upstream, so the page, the SDK
(``/.tokenward/sdk.js``), challenges, device registration and the chat route all come
from one origin: ``http://127.0.0.1:PORT``, a secure context for Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenward.log import read_recent

CHAT = "/v1/chat/completions"
ANSWERS = '#messages div.msg.assistant[data-done="1"]'


@dataclass
class Sent:
    """One protected request as the browser sent it and the gateway answered it."""

    status: int
    request_id: str
    headers: dict[str, str]  # request headers, lower-case names
    body: bytes
    answer_headers: dict[str, str] = field(default_factory=dict)  # the response's, lower-case names

    @property
    def signals(self) -> dict[str, Any] | None:
        value = self.headers.get("tokenward-signals")
        if value is None:
            return None
        return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


class Recorder:
    """Every request of a page to one protected route (by default the chat route), from
    now on. (Device registrations are counted by the ``open_page`` fixture from before
    the page loads: ``page.tw_registrations``.)"""

    def __init__(self, page: Any, path: str = CHAT) -> None:
        self.path = path
        self.sent: list[Sent] = []
        self._more = asyncio.Event()
        page.on("response", self._response)  # not requestfinished: a cancelled stream never finishes

    async def _response(self, response: Any) -> None:
        request = response.request
        if request.method != "POST" or not request.url.endswith(self.path):
            return
        headers = await request.all_headers()
        self.sent.append(
            Sent(
                response.status,
                response.headers.get("tokenward-request-id", ""),
                headers,
                request.post_data_buffer,
                dict(response.headers),
            )
        )
        self._more.set()

    async def wait(self, n: int, seconds: float = 30.0) -> list[Sent]:
        async with asyncio.timeout(seconds):
            while len(self.sent) < n:
                self._more.clear()
                await self._more.wait()
        return self.sent


async def log_row(db: Path, request_id: str, seconds: float = 10.0) -> dict[str, Any]:
    """The decision log's row for one request (the log is written in batches)."""
    async with asyncio.timeout(seconds):
        while True:
            try:
                for row in read_recent(db, 200):
                    if row["request_id"] == request_id:
                        return row
            except FileNotFoundError:
                pass
            await asyncio.sleep(0.05)


def signal_names(row: dict[str, Any]) -> list[str]:
    return [s["name"] for s in row["signals"]]


def signal(row: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in row["signals"] if s["name"] == name), None)


async def answers(page: Any, n: int) -> None:
    await page.wait_for_function(
        "([selector, n]) => document.querySelectorAll(selector).length >= n", arg=[ANSWERS, n], timeout=30_000
    )
    last = page.locator(ANSWERS).nth(n - 1)
    assert not await last.evaluate("(e) => e.classList.contains('error')"), await last.inner_text()


async def type_and_send(page: Any, text: str) -> None:
    await page.click("#prompt")
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


# The page's stored device record, read back from IndexedDB (names: docs/browser-sdk.md).
READ_KEY_RECORD = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("tokenward");
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const get = open.result.transaction("device").objectStore("device").get("key-v1");
    get.onsuccess = () => { open.result.close(); resolve(get.result); };
    get.onerror = () => reject(get.error);
  };
})"""


async def stored_spki(page: Any) -> bytes:
    spki = await page.evaluate(
        f"""async () => {{
          const rec = await ({READ_KEY_RECORD})();
          return Array.from(new Uint8Array(await crypto.subtle.exportKey("spki", rec.keys.publicKey)));
        }}"""
    )
    return bytes(spki)


# A chat page of an operator's own: a search box and the prompt, the SDK, and a send on
# Enter; it never calls trackInput. Served at the gateway's origin by the test browser
# (``operator_page``); ``window.done`` counts the answers read.
OPERATOR_PAGE = """<!doctype html><html><head><script src="/.tokenward/sdk.js"></script></head><body>
<input id="search" type="search"><textarea id="prompt"></textarea><script>
window.done = 0;
async function send() {
  const box = document.getElementById("prompt");
  const content = box.value;
  box.value = "";  // as chat pages do
  const r = await tokenward.fetch("/v1/chat/completions", {method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({model: "demo-1", messages: [{role: "user", content}]})});
  await r.text();
  window.done++;
}
document.getElementById("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter") { e.preventDefault(); send(); }
});
</script></body></html>"""


async def operator_page(browser: Any, url: str, **options: Any) -> tuple[Any, Any]:
    """A new browser context (``options``) with :data:`OPERATOR_PAGE` open at ``url``/chat,
    once the SDK has loaded: (context, page)."""
    context = await browser.new_context(**options)
    await context.route(url + "/chat", lambda route: route.fulfill(content_type="text/html", body=OPERATOR_PAGE))
    page = await context.new_page()
    await page.goto(url + "/chat")
    await page.wait_for_function("() => window.tokenward && window.tokenward.protocol === 1")
    return context, page
