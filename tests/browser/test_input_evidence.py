"""Input evidence (docs/protocol.md §4.1 ``input``) from the demo page in real Chromium,
through the REAL gateway on a ``clients: browser`` route.

The demo page calls ``tokenward.trackInput('#prompt')``; the SDK counts trusted key,
paste and focus events and sends counts only. The gateway's ``browser/no-input`` signal
fires when the keys and pasted characters are too few for the prompt's length. The
gateway runs in shadow mode so that headless Chromium (webdriver, headless markers) still
gets its answers; the decisions and signals are logged all the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway

from .gateway_pages import Recorder, answers, log_row, signal, signal_names, type_and_send

pytestmark = pytest.mark.asyncio(loop_scope="session")

POLICY = {
    "mode": "shadow",
    "routes": [
        {"path": "/v1/chat/completions", "api": "openai", "clients": "browser"},
        {"path": "/demo", "protect": False},
    ],
}


@pytest.fixture(scope="module")
def browser_gateway(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("input-gw"), demo_upstream.url, POLICY)
    yield gw
    gw.stop()


TYPED = "Could you explain how tides work, in a few short sentences?"
PASTED = "Please summarise the following meeting notes for me. " * 6


async def test_typed_prompt(open_page, browser_gateway):
    gw = browser_gateway
    page = await open_page(gw.url + "/demo")
    rec = Recorder(page)
    await type_and_send(page, TYPED)
    await answers(page, 1)
    [sent] = await rec.wait(1)
    inp = sent.signals["input"]
    # Every typed character, plus the Enter that sent it.
    assert len(TYPED) <= inp["keys"] <= len(TYPED) + 1
    assert inp["chars"] == len(TYPED)  # the field's length before the page emptied it
    assert inp["pastes"] == 0 and inp["pasted_chars"] == 0
    assert inp["focus_ms"] > 0
    assert set(inp) == {"keys", "pastes", "pasted_chars", "chars", "focus_ms"}  # counts only
    assert "tides" not in sent.headers["tokenward-signals"] and "tides" not in str(sent.signals)
    row = await log_row(gw.db, sent.request_id)
    assert "browser/no-input" not in signal_names(row)
    assert "device/ok" in signal_names(row)


async def test_pasted_prompt(open_page, browser_gateway):
    gw = browser_gateway
    page = await open_page(gw.url + "/demo", permissions=["clipboard-read", "clipboard-write"])
    rec = Recorder(page)
    await page.click("#prompt")
    await page.evaluate("(text) => navigator.clipboard.writeText(text)", PASTED)
    await page.keyboard.press("Control+V")  # a real (trusted) paste from the clipboard
    assert await page.input_value("#prompt") == PASTED
    await page.keyboard.press("Enter")
    await answers(page, 1)
    [sent] = await rec.wait(1)
    inp = sent.signals["input"]
    assert inp["pastes"] == 1 and inp["pasted_chars"] == len(PASTED)
    assert inp["keys"] <= 1  # Ctrl+V is a shortcut, not typing; Enter sent it
    assert inp["chars"] == len(PASTED)
    row = await log_row(gw.db, sent.request_id)
    assert "browser/no-input" not in signal_names(row)


async def test_scripted_prompt_is_no_input(open_page, browser_gateway):
    """A value set by script, with a synthetic (untrusted) paste event for good measure:
    nothing counts, and the gateway sees a long prompt nobody typed."""
    gw = browser_gateway
    page = await open_page(gw.url + "/demo")
    rec = Recorder(page)
    await page.evaluate(
        """(text) => {
          const box = document.getElementById("prompt");
          const data = new DataTransfer();
          data.setData("text/plain", text);
          box.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true}));
          box.dispatchEvent(new KeyboardEvent("keydown", {key: "a", bubbles: true}));
          box.value = text;
        }""",
        PASTED,
    )
    await page.click("#send")
    await answers(page, 1)
    [sent] = await rec.wait(1)
    inp = sent.signals["input"]
    assert inp["keys"] == 0 and inp["pastes"] == 0 and inp["pasted_chars"] == 0
    assert "chars" not in inp  # no edit was seen: the gateway measures the prompt itself
    row = await log_row(gw.db, sent.request_id)
    no_input = signal(row, "browser/no-input")
    assert no_input is not None, signal_names(row)
    assert no_input["evidence"]["keys"] == 0
    assert no_input["evidence"]["chars"] == len(PASTED.strip())  # the demo trims the prompt


async def test_counts_start_again_for_each_prompt(open_page, browser_gateway):
    gw = browser_gateway
    page = await open_page(gw.url + "/demo")
    rec = Recorder(page)
    await type_and_send(page, TYPED)
    await answers(page, 1)
    second = "And what about the moon's role in all of that, briefly?"
    await type_and_send(page, second)
    await answers(page, 2)
    first_sent, second_sent = await rec.wait(2)
    a, b = first_sent.signals["input"], second_sent.signals["input"]
    assert len(TYPED) <= a["keys"] <= len(TYPED) + 1
    assert len(second) <= b["keys"] <= len(second) + 1  # not the sum of both prompts
    assert b["chars"] == len(second)
    for sent in (first_sent, second_sent):
        row = await log_row(gw.db, sent.request_id)
        assert "browser/no-input" not in signal_names(row)
