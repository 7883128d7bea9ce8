"""Device trust that is earned, in real Chromium through the REAL gateway (issue 16).

The chat page is the operator's own (it loads the SDK and sends on Enter; it never calls
``trackInput``). The SDK registers a device key in each browser context. A person who
keeps typing from the same context earns a larger share of the device-keyed limits and
budgets with every call answered in full (the decision log's ``device/ok`` evidence says
how much); a fresh context starts again at ``devices.ramp.start``; and a context whose
prompt appears without any input (a script's ``fill``) earns nothing: its calls are
refused after their challenge, and its share stays where it started.

Only the ramp is under test: the signals a headless test browser trips (webdriver,
headless user agent, software renderer) weigh nothing here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway

from tokenward.explain import explain

from .gateway_pages import CHAT, Recorder, log_row, operator_page, signal

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUIET = ["browser/webdriver", "browser/headless", "browser/ua-mismatch", "browser/software-renderer",
         "browser/no-webgl", "browser/screen-odd", "browser/locale-odd", "browser/hardware-odd"]  # fmt: skip
POLICY = {
    "routes": [{"path": CHAT, "api": "openai", "clients": "browser"}],
    "devices": {"ramp": {"start": 0.25, "full_after": 4}},
    "limits": [{"name": "per-device", "key": "device", "limit": 40, "window": 600}],
    "weights": dict.fromkeys(QUIET, 0),
}
QUESTION = "How do I change the delivery address of my next order, please?"


@pytest.fixture(scope="module")
def ramp_gateway(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("ramp-gw"), demo_upstream.url, POLICY)
    yield gw
    gw.stop()


async def send(page, seen: Recorder, gw: GatewayProc, n: int, *, typed: bool = True) -> dict:
    """Send the n-th message of this page; the decision log's row of its last attempt."""
    before = len(seen.sent)
    if typed:
        await page.click("#prompt")
        await page.keyboard.type(f"{QUESTION} ({n})", delay=5)
    else:
        await page.fill("#prompt", f"{QUESTION} ({n})")  # a script: no key, no pointer
    await page.keyboard.press("Enter")
    await page.wait_for_function(f"() => window.done >= {n}", timeout=30_000)
    # The recorder hears of responses a little after the page does: wait for this call's
    # final answer (a 401 challenge is followed by the SDK's retry).
    while not any(sent.status != 401 for sent in seen.sent[before:]):
        await seen.wait(len(seen.sent) + 1)
    last = next(sent for sent in seen.sent[before:] if sent.status != 401)
    return await log_row(gw.db, last.request_id)


def device_evidence(row: dict) -> dict:
    ok = signal(row, "device/ok")
    assert ok is not None, [s["name"] for s in row["signals"]]
    return ok["evidence"]


async def test_a_returning_device_earns_its_limits_and_a_fresh_one_starts_small(
    browser, ramp_gateway: GatewayProc
) -> None:
    person, page = await operator_page(browser, ramp_gateway.url)
    try:
        seen = Recorder(page)
        rows = [await send(page, seen, ramp_gateway, n) for n in (1, 2, 3)]
        assert [r["action"] for r in rows] == ["allow"] * 3, [(r["action"], r["name"]) for r in rows]
        evidence = [device_evidence(r) for r in rows]
        assert len({e["device"] for e in evidence}) == 1  # one device: the context's key
        assert [e["clean"] for e in evidence] == [0, 1, 2]
        assert [e["share"] for e in evidence] == [0.25, 0.438, 0.625]  # 0.25 + 0.75 * clean / 4
    finally:
        await person.close()

    fresh, page = await operator_page(browser, ramp_gateway.url)
    try:
        row = await send(page, Recorder(page), ramp_gateway, 1)
        e = device_evidence(row)
        assert e["device"] != evidence[0]["device"] and (e["clean"], e["share"]) == (0, 0.25)
    finally:
        await fresh.close()


async def test_a_device_whose_prompts_appear_without_input_earns_nothing(browser, ramp_gateway: GatewayProc) -> None:
    farm, page = await operator_page(browser, ramp_gateway.url)
    try:
        seen = Recorder(page)
        rows = [await send(page, seen, ramp_gateway, n, typed=False) for n in (1, 2, 3)]
        assert [(r["action"], r["name"]) for r in rows] == [("block", "risk/3/automated")] * 3
        assert all("browser/no-input" in r["reasons"] for r in rows)
        assert [(device_evidence(r)["clean"], device_evidence(r)["share"]) for r in rows] == [(0, 0.25)] * 3
        assert seen.sent[-1].status == 403
        # tokenward explain says why, in words.
        outcome = explain(rows[-1])[1]
        assert "sign of automation" in outcome and "risk/3/automated" in outcome, outcome
    finally:
        await farm.close()
