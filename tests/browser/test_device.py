"""Device keys (docs/protocol.md §4.2) in real Chromium against the REAL gateway.

The demo chat page is loaded through ``tokenward serve`` (``/demo`` is forwarded to the
demo upstream), so the SDK, challenges, ``POST /.tokenward/device`` and the chat route
are the gateway's own. What the gateway concluded is read from its SQLite decision log
(the row whose ``request_id`` is the response's ``Tokenward-Request-Id``); what the page
sent is also checked independently against §4.2 (tests/browser/device_spec.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway

from .device_spec import check_device_header, p256_key, spec_device_id
from .gateway_pages import (
    READ_KEY_RECORD,
    Recorder,
    answers,
    log_row,
    signal,
    signal_names,
    stored_spki,
    type_and_send,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def real_gateway(demo_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    gw = start_gateway(tmp_path_factory.mktemp("device-gw"), demo_upstream.url)
    yield gw
    gw.stop()


def device_problems(row: dict) -> list[str]:
    return [r for r in row["reasons"] if r.startswith("device/") and r != "device/ok"]


async def test_demo_page_registers_once_and_signs_every_request(open_page, real_gateway):
    gw = real_gateway
    page = await open_page(gw.url + "/demo")
    rec = Recorder(page)
    device = await page.evaluate("tokenward.device()")
    assert device is not None and len(device["id"]) == 22
    assert device["registration"] is not None  # registered by this load (a fresh context)
    await page.wait_for_function(
        "(id) => document.getElementById('proof-stats').textContent.includes('device ' + id.slice(0, 6))",
        arg=device["id"],
    )

    await type_and_send(page, "Hello from a registered device, how are you?")
    await answers(page, 1)
    [sent] = await rec.wait(1)
    assert sent.status == 200
    row = await log_row(gw.db, sent.request_id)
    assert signal(row, "device/ok")["evidence"]["device"] == device["id"]
    assert device_problems(row) == []
    # The header checks out against §4.2 written independently of the gateway.
    spki = await stored_spki(page)
    assert spec_device_id(spki) == device["id"]
    verdict = check_device_header(
        sent.headers["tokenward-device"], sent.headers["tokenward-proof"], sent.body, {device["id"]: p256_key(spki)}
    )
    assert verdict == ("ok", device["id"])
    assert len(page.tw_registrations) == 1

    # A reload keeps the key and the registration: same id, no second POST /.tokenward/device.
    await page.reload()
    await page.wait_for_function("() => window.tokenward && window.tokenward.protocol === 1")
    again = await page.evaluate("tokenward.device()")
    assert again["id"] == device["id"] and again["registration"] is None
    await type_and_send(page, "And after a reload?")
    await answers(page, 1)
    sent2 = (await rec.wait(2))[1]
    row2 = await log_row(gw.db, sent2.request_id)
    assert signal(row2, "device/ok")["evidence"]["device"] == device["id"]
    assert len(page.tw_registrations) == 1
    assert not page.tw_errors


async def test_the_private_key_cannot_be_exported(open_page, real_gateway):
    page = await open_page(real_gateway.url + "/demo")
    device = await page.evaluate("tokenward.device()")
    r = await page.evaluate(
        f"""async () => {{
          const rec = await ({READ_KEY_RECORD})();
          const key = rec.keys.privateKey;
          const refused = {{}};
          for (const format of ["pkcs8", "jwk"]) {{
            try {{ await crypto.subtle.exportKey(format, key); refused[format] = false; }}
            catch (e) {{ refused[format] = e.name; }}
          }}
          return {{
            refused, extractable: key.extractable, usages: key.usages, algorithm: key.algorithm,
            id: rec.id, spki: rec.spki,
          }};
        }}"""
    )
    assert r["refused"] == {"pkcs8": "InvalidAccessError", "jwk": "InvalidAccessError"}
    assert r["extractable"] is False and r["usages"] == ["sign"]
    assert r["algorithm"] == {"name": "ECDSA", "namedCurve": "P-256"}
    spki = await stored_spki(page)
    assert r["id"] == device["id"] == spec_device_id(spki)
    p256_key(spki)


ANTHROPIC_BODY = json.dumps(
    {"model": "demo-1", "max_tokens": 64, "messages": [{"role": "user", "content": "retry me please"}]}
)


async def test_the_retry_is_signed_over_its_own_proof(open_page, real_gateway):
    """A 401 with a fresh challenge (here: route_mismatch, from a challenge issued for
    another route) is proved again and retried once; both attempts are signed."""
    gw = real_gateway
    page = await open_page(gw.url + "/demo")
    device = await page.evaluate("tokenward.device()")
    rec = Recorder(page, "/v1/messages")
    swapped = []

    async def wrong_route(route, request):
        if not swapped and json.loads(request.post_data or "{}").get("route") == "/v1/messages":
            swapped.append(True)
            response = await route.fetch(post_data=json.dumps({"route": "/v1/chat/completions"}))
            await route.fulfill(response=response)
        else:
            await route.continue_()

    await page.route("**/.tokenward/challenge", wrong_route)
    status = await page.evaluate(
        """async (body) => {
          tokenward.configure({routes: ["/v1/chat/completions", "/v1/messages"]});  // the demo lists one
          return (await tokenward.fetch("/v1/messages",
            {method: "POST", headers: {"content-type": "application/json"}, body})).status;
        }""",
        ANTHROPIC_BODY,
    )
    assert status == 200 and swapped
    first, second = await rec.wait(2)
    assert (first.status, second.status) == (401, 200)
    row1, row2 = await log_row(gw.db, first.request_id), await log_row(gw.db, second.request_id)
    assert row1["code"] == "route_mismatch"
    assert signal(row2, "device/ok")["evidence"]["device"] == device["id"]
    assert device_problems(row2) == []
    keys = {device["id"]: p256_key(await stored_spki(page))}
    for sent in (first, second):
        verdict = check_device_header(
            sent.headers["tokenward-device"], sent.headers["tokenward-proof"], sent.body, keys
        )
        assert verdict == ("ok", device["id"])
    assert first.headers["tokenward-proof"] != second.headers["tokenward-proof"]


BLOCK_INDEXEDDB = """
Object.defineProperty(window, "indexedDB", {
  configurable: true,
  get() { throw new DOMException("storage is blocked", "SecurityError"); },
});
"""


async def test_without_indexeddb_requests_still_go_through(open_page, real_gateway):
    gw = real_gateway
    page = await open_page(gw.url + "/demo", init_script=BLOCK_INDEXEDDB)
    rec = Recorder(page)
    assert await page.evaluate("tokenward.device()") is None
    await type_and_send(page, "No storage here, can I still chat?")
    await answers(page, 1)
    [sent] = await rec.wait(1)
    assert sent.status == 200
    assert "tokenward-device" not in sent.headers
    assert "tokenward-proof" in sent.headers
    row = await log_row(gw.db, sent.request_id)
    assert "device/missing" in signal_names(row)
    assert len(page.tw_registrations) == 0
    assert "device" not in await page.inner_text("#proof-stats")
    assert not page.tw_errors


async def test_an_old_registration_is_renewed(open_page, real_gateway):
    """Registrations older than deviceTtlDays (default 25) are made again, same key."""
    page = await open_page(real_gateway.url + "/demo")
    first = await page.evaluate("tokenward.device()")
    await page.evaluate(
        """(days) => new Promise((resolve, reject) => {
          const open = indexedDB.open("tokenward");
          open.onsuccess = () => {
            const store = open.result.transaction("device", "readwrite").objectStore("device");
            const key = "reg:" + new URL("/.tokenward/device", location.href).href;
            const get = store.get(key);
            get.onsuccess = () => {
              store.put({...get.result, at: Date.now() - days * 86400000}, key).onsuccess = () => {
                open.result.close(); resolve();
              };
            };
            get.onerror = () => reject(get.error);
          };
        })""",
        26,
    )
    await page.reload()
    await page.wait_for_function("() => window.tokenward && window.tokenward.protocol === 1")
    renewed = await page.evaluate("tokenward.device()")
    assert renewed["id"] == first["id"]
    assert renewed["registration"] is not None  # registered again
    assert len(page.tw_registrations) == 2


async def test_a_gateway_without_device_registration(open_page, demo_upstream, tmp_path):
    gw = start_gateway(tmp_path, demo_upstream.url, {"devices": {"enabled": False}})
    try:
        page = await open_page(gw.url + "/demo")
        rec = Recorder(page)
        assert await page.evaluate("tokenward.device()") is None
        await type_and_send(page, "Is anyone registering devices here?")
        await answers(page, 1)
        [sent] = await rec.wait(1)
        assert sent.status == 200 and "tokenward-device" not in sent.headers
    finally:
        gw.stop()


async def test_device_costs(open_page, demo_upstream, tmp_path):
    """Measured and printed, never asserted: registration at the default difficulty
    (proof 16 bits, registration 20) and the per-request signing cost."""
    gw = start_gateway(tmp_path, demo_upstream.url, {"proof": {"difficulty": 16}})
    try:
        lines = []
        for _ in range(3):
            page = await open_page(gw.url + "/demo")  # a fresh context: a new key each time
            t0 = time.monotonic()
            device = await page.evaluate("tokenward.device()")
            wall = (time.monotonic() - t0) * 1000
            reg = device["registration"]
            lines.append(
                f"  registration: {reg['ms']:.0f} ms in the page ({reg['difficulty']} bits,"
                f" {reg['hashes']:,} hashes; {wall:.0f} ms until device() resolved from the test)"
            )
        sign = await page.evaluate(
            """async () => {
              const ms = [];
              for (let i = 0; i < 20; i++) {
                await tokenward.fetch("/v1/chat/completions", {method: "POST",
                  headers: {"content-type": "application/json"},
                  body: JSON.stringify({model: "demo-1", messages: [{role: "user", content: "n" + i}]})});
                ms.push(tokenward.lastProof.signMs);
              }
              const raw = [];
              const rec = await (READ_KEY_RECORD)();
              const msg = new Uint8Array(200);
              for (let i = 0; i < 200; i++) {
                const t = performance.now();
                await crypto.subtle.sign({name: "ECDSA", hash: "SHA-256"}, rec.keys.privateKey, msg);
                raw.push(performance.now() - t);
              }
              const avg = (a) => a.reduce((x, y) => x + y, 0) / a.length;
              return {perRequest: avg(ms), max: Math.max(...ms), raw: avg(raw)};
            }""".replace("READ_KEY_RECORD", READ_KEY_RECORD)
        )
        lines.append(
            f"  signing per request (body SHA-256 + ECDSA sign + header): {sign['perRequest']:.2f} ms"
            f" average, {sign['max']:.2f} ms max over 20 requests; crypto.subtle.sign alone {sign['raw']:.3f} ms"
        )
        print("\nChromium device key costs:\n" + "\n".join(lines))
    finally:
        gw.stop()


async def test_a_gateway_that_forgot_the_key_says_so_and_the_page_registers_again(open_page, demo_upstream, tmp_path):
    """A gateway on the memory store forgets every device key when it restarts. The page's
    next request is answered with ``Tokenward-Device: unknown`` (protocol §4.2), the SDK
    registers the same key again in the background, and the requests after that are
    recognised as the device again."""
    first = start_gateway(tmp_path, demo_upstream.url, name="before")
    port = int(first.url.rsplit(":", 1)[1])
    page = await open_page(first.url + "/demo")
    rec = Recorder(page)
    device = await page.evaluate("tokenward.device()")
    await type_and_send(page, "Hello before the restart")
    await answers(page, 1)
    [sent] = await rec.wait(1)
    assert signal(await log_row(first.db, sent.request_id), "device/ok")["evidence"]["device"] == device["id"]
    assert "tokenward-device" not in sent.answer_headers
    first.stop()

    second = start_gateway(tmp_path, demo_upstream.url, name="after", key=first.key, port=port)
    try:
        await type_and_send(page, "Hello after the restart")
        await answers(page, 2)
        after = (await rec.wait(2))[1:]
        # A challenge the page fetched before the restart belongs to the old memory store:
        # refused as expired with a fresh one attached, and the SDK sends again.
        *expired, forgotten = after
        assert len(expired) <= 1, [s.status for s in after]
        for s in expired:
            assert s.status == 401 and (await log_row(second.db, s.request_id))["code"] == "proof_expired"
        assert forgotten.status == 200  # not a refusal by itself: a signal the policy weighs
        assert forgotten.answer_headers.get("tokenward-device") == "unknown"
        assert "device/unknown" in signal_names(await log_row(second.db, forgotten.request_id))
        deadline = time.monotonic() + 30
        while len(page.tw_registrations) < 2 and time.monotonic() < deadline:
            await page.wait_for_timeout(100)
        assert len(page.tw_registrations) == 2  # registered again, in the background
        assert (await page.evaluate("tokenward.device()"))["id"] == device["id"]

        await type_and_send(page, "And once it is registered again?")
        await answers(page, 3)
        known = (await rec.wait(len(after) + 2))[-1]
        assert signal(await log_row(second.db, known.request_id), "device/ok")["evidence"]["device"] == device["id"]
        assert "tokenward-device" not in known.answer_headers
        assert not page.tw_errors
    finally:
        second.stop()
