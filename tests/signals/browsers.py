"""Real Chromium sending protected requests with the browser SDK to the capture server.

Two profiles, each one browser process for the whole test session:

* ``headless``: Playwright's default headless Chromium (``navigator.webdriver`` is true,
  the user agent says ``HeadlessChrome``).
* ``headed``: a "headed-like" profile: the same Chromium launched with
  ``--disable-blink-features=AutomationControlled`` and the user agent without
  ``Headless`` (``navigator.webdriver`` is false).

The page builds ``Tokenward-Signals`` from the SDK's ``tokenward.collectSignals()`` (or,
for an SDK without it, the same fields of docs/protocol.md §4.1 gathered by ``ENV_JS``),
adds the key and paste counts of its prompt field, and sends every request through
``tokenward.fetch`` (the real SDK served from ``/.tokenward/sdk.js``), so the gateway side
sees real headers, a real signals value and a real proof whose timing starts when the
server issued the challenge.
"""

from __future__ import annotations

from typing import Any

from tokenward.simulate.browsers import CHROMIUM, CHROMIUM_ARGS  # the simulator's browser and flags

TYPED_PROMPT = "How do I rotate the signing keys of my gateway without downtime?"
SCRIPTED_PROMPT = (
    "Ignore the docs. Write a complete Python implementation of a B-tree with deletion, "
    "full docstrings and unit tests for every method."
)
SDK_PROOFS = 3  # typed requests per profile (solve-time checks need several proofs)

ENV_JS = r"""
() => {
  const field = document.getElementById('prompt');
  const counts = {keys: 0, pastes: 0, pasted_chars: 0, focus_ms: 0, focusedAt: null};
  field.addEventListener('keydown', (e) => { if (e.isTrusted) counts.keys++; });
  field.addEventListener('paste', (e) => {
    counts.pastes++;
    const t = e.clipboardData ? e.clipboardData.getData('text') : '';
    counts.pasted_chars += t.length;
  });
  field.addEventListener('focus', () => { counts.focusedAt = performance.now(); });
  field.addEventListener('blur', () => {
    if (counts.focusedAt !== null) counts.focus_ms += performance.now() - counts.focusedAt;
    counts.focusedAt = null;
  });

  function headlessMarkers() {
    const hl = [];
    if (/HeadlessChrome/.test(navigator.userAgent)) hl.push('ua-headless');
    if (navigator.webdriver) hl.push('webdriver');
    return hl;
  }

  function collectEnv() {
    // The SDK's own collector when it has one (the contract under test), else the same
    // fields gathered here; the page adds its input counts either way.
    const env = tokenward.collectSignals ? tokenward.collectSignals() : collectFields();
    const focus = counts.focus_ms + (counts.focusedAt !== null ? performance.now() - counts.focusedAt : 0);
    env.input = {keys: counts.keys, pastes: counts.pastes, pasted_chars: counts.pasted_chars,
                 chars: field.value.length, focus_ms: Math.round(focus)};
    return env;
  }

  function collectFields() {
    const env = {v: 1, wd: navigator.webdriver === true, ua: navigator.userAgent};
    const u = navigator.userAgentData;
    if (u) env.uad = {brands: u.brands.map((b) => ({brand: b.brand, version: b.version})),
                      mobile: u.mobile, platform: u.platform};
    try {
      const gl = document.createElement('canvas').getContext('webgl');
      if (gl) {
        const ext = gl.getExtension('WEBGL_debug_renderer_info');
        env.gl = ext ? {vendor: gl.getParameter(ext.UNMASKED_VENDOR_WEBGL),
                        renderer: gl.getParameter(ext.UNMASKED_RENDERER_WEBGL)}
                     : {vendor: gl.getParameter(gl.VENDOR), renderer: gl.getParameter(gl.RENDERER)};
      } else env.gl = null;
    } catch (_) { env.gl = null; }
    env.scr = [screen.width, screen.height, screen.availWidth, screen.availHeight, screen.colorDepth,
               window.devicePixelRatio];
    env.vp = [innerWidth, innerHeight, outerWidth, outerHeight];
    env.tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    env.tzo = new Date().getTimezoneOffset();
    env.langs = Array.from(navigator.languages || []);
    env.hc = navigator.hardwareConcurrency;
    if (navigator.deviceMemory !== undefined) env.dm = navigator.deviceMemory;
    env.touch = navigator.maxTouchPoints;
    env.plugins = navigator.plugins ? navigator.plugins.length : 0;
    env.hl = headlessMarkers().filter((m) => m !== 'webdriver');
    const p = tokenward.lastProof;
    if (p) env.prev = {ms: Math.round(p.solveMs), hashes: p.hashes, workers: p.workers, difficulty: p.difficulty};
    return env;
  }

  tokenward.configure({signals: collectEnv});

  window.sendPrompt = async (path) => {
    const body = JSON.stringify({model: 'm', messages: [{role: 'user', content: field.value}]});
    const r = await tokenward.fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body});
    await r.text();
    field.value = '';
    counts.keys = counts.pastes = counts.pasted_chars = 0;
    return tokenward.lastProof;
  };
  window.snapshotEnv = collectEnv;
}
"""


RATE_BITS = 20
RATE_JS = """async (bits) => {
  const abc = 'abcdefghijklmnopqrstuvwxyz012345';
  const ch = Array.from(crypto.getRandomValues(new Uint8Array(64)), (b) => abc[b & 31]).join('');
  const r = await tokenward.solve(ch, '{"model":"m","messages":[]}', bits, null);
  return {hashes: r.hashes, ms: r.solveMs, workers: r.workers, nonce: r.nonce};
}"""


def capture_browser(base: str, label: str, *, headed_like: bool) -> dict[str, Any]:
    """Run one profile: typed prompts through the SDK (``<label>``) and one prompt set
    by script without key events (``<label>-scripted``). Returns what the page saw."""
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_ARGS, "--disable-blink-features=AutomationControlled"] if headed_like else CHROMIUM_ARGS
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        try:
            context_args: dict[str, Any] = {}
            if headed_like:
                probe = browser.new_page()
                ua = probe.evaluate("navigator.userAgent")
                probe.close()
                context_args["user_agent"] = ua.replace("HeadlessChrome/", "Chrome/")
            context = browser.new_context(**context_args)
            page = context.new_page()
            page.goto(base + "/")
            page.wait_for_function("() => window.tokenward && window.tokenward.protocol === 1")
            page.evaluate(ENV_JS)
            proofs = []
            field = page.locator("#prompt")
            for _ in range(SDK_PROOFS):
                field.click()
                field.press_sequentially(TYPED_PROMPT)
                proofs.append(page.evaluate("(p) => window.sendPrompt(p)", f"/c/{label}/api/chat"))
            page.evaluate("(t) => { document.getElementById('prompt').value = t; }", SCRIPTED_PROMPT)
            proofs.append(page.evaluate("(p) => window.sendPrompt(p)", f"/c/{label}-scripted/api/chat"))
            env = page.evaluate("() => window.snapshotEnv()")
            # The SDK's search speed, measured on one longer proof (about 2^20 hashes).
            rate = page.evaluate(RATE_JS, RATE_BITS)
            return {"env": env, "proofs": proofs, "rate": rate}
        finally:
            browser.close()
