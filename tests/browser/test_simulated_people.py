"""The simulator's people (issue 16, "people without artefacts"): the ways a legit
Chromium user of `tokenward simulate` reaches and fills the prompt leave the trail a
person's do, measured on the demo page through the REAL gateway (shadow mode, as
test_input_evidence.py): keyboard only (Tab to the field, no pointer), a short lead-in
typed and a long passage pasted from the clipboard (a trusted paste), on a small laptop
screen with the window snapped to half of it: none of them trips a sign of automation or
an odd-screen signal."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway

from tokenward.simulate.browsers import _Recorder, _send_message
from tokenward.simulate.records import CallRecord

from .gateway_pages import CHAT, Recorder, log_row, signal_names

pytestmark = pytest.mark.asyncio(loop_scope="session")

POLICY = {
    "mode": "shadow",
    "routes": [{"path": CHAT, "api": "openai", "clients": "browser"}, {"path": "/demo", "protect": False}],
}
LEAD = "Could you help me with this? "
PASTED = "My order arrived late and the box was damaged, what can I do about it? " * 8
COUNT_POINTERS = "window.__pointers = 0; addEventListener('pointerdown', e => { if (e.isTrusted) __pointers++ }, true);"
SMALL = {"viewport": {"width": 683, "height": 657}, "screen": {"width": 1366, "height": 768}}


@pytest.fixture(scope="module")
def people_gateway(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("people-gw"), demo_upstream.url, POLICY)
    yield gw
    gw.stop()


@pytest.mark.parametrize("how", ["keyboard", "paste", "type"])
async def test_a_simulated_person_leaves_a_persons_trail(open_page, people_gateway: GatewayProc, how: str) -> None:
    gw = people_gateway
    options: dict[str, object] = dict(SMALL)
    if how == "paste":
        options["permissions"] = ["clipboard-read", "clipboard-write"]
    page = await open_page(gw.url + "/demo", init_script=COUNT_POINTERS, **options)
    seen = Recorder(page)
    sim = _Recorder(CHAT)
    sim.attach(page)
    call = CallRecord(actor="legit-browser", side="legit", t_arrival=time.time())
    await _send_message(page, sim, call, LEAD, 60.0, 60, how, PASTED if how == "paste" else "")
    assert call.outcome == "allowed", call
    [sent] = await seen.wait(1)
    inp, env = sent.signals["input"], sent.signals
    assert len(LEAD) <= inp["keys"] <= len(LEAD) + 1 and inp["focus_ms"] > 0
    if how == "paste":
        assert inp["pastes"] == 1 and inp["pasted_chars"] == len(PASTED) and inp["chars"] == len(LEAD + PASTED)
    else:
        assert inp["pastes"] == 0 and inp["chars"] == len(LEAD)
    assert env["scr"][:2] == [1366, 768] and env["vp"][:2] == [683, 657]  # the window is not the screen
    assert await page.evaluate("window.__pointers") == (0 if how == "keyboard" else 1)  # keyboard: Tab, no pointer
    row = await log_row(gw.db, sent.request_id)
    names = signal_names(row)
    assert "browser/no-input" not in names and "browser/screen-odd" not in names, names
