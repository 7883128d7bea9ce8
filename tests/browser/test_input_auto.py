"""Input evidence by default (issue 16): a chat page that loads the SDK and never calls
``trackInput`` still reports, for each protected call, the input that led to it (counts
only), in real Chromium through the REAL gateway (shadow mode, so the headless browser
gets its answers while every decision and signal is logged). A prompt set by script
arrives with zero trusted input and is flagged ``browser/no-input``;
``configure({input: false})`` sends no input field at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway

from .gateway_pages import CHAT, Recorder, log_row, operator_page, signal_names

pytestmark = pytest.mark.asyncio(loop_scope="session")

POLICY = {"mode": "shadow", "routes": [{"path": CHAT, "api": "openai", "clients": "browser"}]}
TYPED = "Could you explain how tides work, in a few short sentences?"
PASTED = "Please summarise the following meeting notes for me. " * 6


@pytest.fixture(scope="module")
def auto_gateway(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("input-auto-gw"), demo_upstream.url, POLICY)
    yield gw
    gw.stop()


async def sent_one(page, seen: Recorder, n: int):
    await page.wait_for_function(f"() => window.done >= {n}")
    return (await seen.wait(n))[n - 1]


async def test_typed_without_track_input(browser, auto_gateway: GatewayProc) -> None:
    context, page = await operator_page(browser, auto_gateway.url)
    try:
        seen = Recorder(page)
        await page.click("#search")
        await page.keyboard.type("tides")  # another field first: the prompt is the one edited last
        await page.click("#prompt")
        await page.keyboard.type(TYPED)
        await page.keyboard.press("Enter")
        sent = await sent_one(page, seen, 1)
        inp = sent.signals["input"]
        assert len(TYPED) <= inp["keys"] <= len("tides") + len(TYPED) + 1 and inp["focus_ms"] > 0
        assert inp["chars"] == len(TYPED) and inp["pastes"] == 0
        assert set(inp) == {"keys", "pastes", "pasted_chars", "chars", "focus_ms"}  # counts only
        assert "tides" not in str(sent.signals)
        assert "browser/no-input" not in signal_names(await log_row(auto_gateway.db, sent.request_id))
        # The next prompt starts again from zero: set by script this time.
        await page.evaluate(f"() => {{ document.getElementById('prompt').value = {PASTED!r}; send(); }}")
        second = await sent_one(page, seen, 2)
        assert second.signals["input"]["keys"] == 0 and second.signals["input"]["pastes"] == 0
        assert "browser/no-input" in signal_names(await log_row(auto_gateway.db, second.request_id))
    finally:
        await context.close()


async def test_pasted_without_track_input(browser, auto_gateway: GatewayProc) -> None:
    context, page = await operator_page(browser, auto_gateway.url, permissions=["clipboard-read", "clipboard-write"])
    try:
        seen = Recorder(page)
        await page.click("#prompt")
        await page.evaluate("(text) => navigator.clipboard.writeText(text)", PASTED)
        await page.keyboard.press("Control+V")
        await page.keyboard.press("Enter")
        inp = (await sent_one(page, seen, 1)).signals["input"]
        assert inp["pastes"] == 1 and inp["pasted_chars"] == len(PASTED) and inp["chars"] == len(PASTED)
    finally:
        await context.close()


async def test_a_scripted_prompt_on_a_fresh_page_is_zero_input(browser, auto_gateway: GatewayProc) -> None:
    """What a farm does: load the page, set the prompt, send. Nothing was typed."""
    context, page = await operator_page(browser, auto_gateway.url)
    try:
        seen = Recorder(page)
        await page.evaluate(f"() => {{ document.getElementById('prompt').value = {PASTED!r}; send(); }}")
        sent = await sent_one(page, seen, 1)
        assert sent.signals["input"]["keys"] == 0 and sent.signals["input"]["pastes"] == 0
        row = await log_row(auto_gateway.db, sent.request_id)
        assert "browser/no-input" in signal_names(row)
    finally:
        await context.close()


async def test_input_false_sends_no_input_field(browser, auto_gateway: GatewayProc) -> None:
    context, page = await operator_page(browser, auto_gateway.url)
    try:
        seen = Recorder(page)
        await page.evaluate("() => tokenward.configure({input: false})")
        await page.click("#prompt")
        await page.keyboard.type(TYPED)
        await page.keyboard.press("Enter")
        sent = await sent_one(page, seen, 1)
        assert "input" not in sent.signals
        assert "browser/no-input" not in signal_names(await log_row(auto_gateway.db, sent.request_id))
    finally:
        await context.close()
