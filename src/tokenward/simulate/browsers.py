"""Real Chromium actors: people on the chat page, and a headless farm.

Chromium is the Debian package at ``/usr/bin/chromium`` driven by Playwright (its own
browser download is never used), launched with ``CHROMIUM_ARGS`` (docs/simulate.md, "Browsers").

* :class:`LegitBrowsers` — a few concurrent sessions of a person on the site's chat
  page (``/demo``), running the real SDK: a "headed-like" profile
  (``--disable-blink-features=AutomationControlled``, a user agent without
  ``Headless``, a screen larger than the window, the person's time zone),
  think time, then the question typed key by key and sent with Enter.
* :class:`HeadlessFarm` — what a farm does per stolen call: a fresh default headless
  context (so a fresh device key), the page, the agent transcript filled into the
  prompt field by script, Enter.
* :class:`StealthFarm` — the farm that stays once the cheap tells are gone: the same
  patched profile as the people (no ``navigator.webdriver``, no ``Headless`` in the user
  agent, a real-looking window, screen and time zone), a fresh context per call, a
  general off-purpose task filled into the prompt at once (no keys, no think time).

Each response on the chat route is recorded from the page's network events, so the
call's attempts (the SDK's retry included), statuses and decisions are what the
browser actually saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .actors import CHALLENGE_PATH, DEVICE_PATH, Rotation, Target, nonce_of, parse_refusal
from .population import Account, farm_task, flattened_transcript, legit_question
from .profiles import LegitSettings
from .records import Attempt, CallRecord, classify

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "ChromiumHost",
    "HeadlessFarm",
    "LegitBrowsers",
    "StealthFarm",
    "chromium_available",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HEADED_LIKE_ARGS = ["--disable-blink-features=AutomationControlled"]
SDK_READY = "() => window.tokenward && window.tokenward.protocol === 1"
# Time zones of the people on the page. Their locale stays the browser's own (en-US):
# Playwright's per-context locale rewrites Accept-Language out of Chromium's header order.
_TIMEZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", "Europe/Berlin",
              "Europe/Paris", "America/Sao_Paulo", "Asia/Kolkata"]  # fmt: skip
# Small screens: a small laptop's, the window snapped to half of it or a little smaller than
# it. (Not phone sizes: a desktop Chromium window is never narrower than 500 px, so a
# 390 px window with a desktop user agent is a profile no person has: browser/screen-odd.)
_SMALL_WINDOWS = [((683, 657), (1366, 768)), ((640, 633), (1280, 720)), ((1024, 610), (1280, 720)),
                  ((768, 689), (1536, 864))]  # fmt: skip
_WINDOWS = [((1366, 657), (1920, 1080)), ((1280, 720), (1536, 864)), ((1440, 789), (1920, 1080)),
            ((1600, 789), (2560, 1440)), ((1280, 633), (1440, 900))]  # fmt: skip


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def chromium_available() -> bool:
    if not CHROMIUM.exists():
        return False
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


class ChromiumHost:
    """One Chromium process for a set of pages."""

    def __init__(self, *, headed_like: bool):
        self.headed_like = headed_like
        self.browser: Any = None
        self.user_agent: str | None = None
        self._pw: Any = None

    async def start(self) -> None:
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        args = CHROMIUM_ARGS + (HEADED_LIKE_ARGS if self.headed_like else [])
        self.browser = await self._pw.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        if self.headed_like:
            probe = await self.browser.new_page()
            ua = str(await probe.evaluate("navigator.userAgent"))
            await probe.close()
            self.user_agent = ua.replace("HeadlessChrome/", "Chrome/")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.browser is not None:
                await self.browser.close()
        with contextlib.suppress(Exception):
            if self._pw is not None:
                await self._pw.stop()


class _Recorder:
    """Turns the page's network events into the current call's attempts."""

    def __init__(self, route: str):
        self.route = route
        self.rec: CallRecord | None = None
        self.pending: set[asyncio.Future[None]] = set()

    def attach(self, page: Any) -> None:
        page.on("response", self._on_response)

    def _on_response(self, response: Any) -> None:
        rec = self.rec
        if rec is None:
            return
        t = time.time()
        request = response.request
        headers = response.headers
        size = int(headers.get("content-length") or 0)
        rec.bytes_down += size + 300
        post = request.post_data_buffer if request.method == "POST" else None
        rec.bytes_up += (len(post) if post else 0) + 700
        path = urlsplit(response.url).path
        if request.method != "POST":
            return
        if path == DEVICE_PATH:
            rec.new_device = True
            return
        if path != self.route or path == CHALLENGE_PATH:
            return
        attempt = Attempt(
            t_send=t, t_headers=t, status=response.status,
            decision=headers.get("tokenward-decision"), request_id=headers.get("tokenward-request-id"),
            upstream=headers.get("x-demo-upstream") == "1",
            nonce=nonce_of(request.headers.get("tokenward-proof")),
        )  # fmt: skip
        rec.add(attempt)
        if response.status >= 400:
            task = asyncio.ensure_future(self._read_code(response, attempt, rec))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _read_code(self, response: Any, attempt: Attempt, rec: CallRecord) -> None:
        with contextlib.suppress(Exception):
            attempt.code = parse_refusal(await response.body())[0]
            if rec.attempts and rec.attempts[-1] is attempt:
                rec.code = attempt.code
                rec.outcome = classify(attempt.status, attempt.decision, attempt.code, attempt.upstream)

    async def settle(self) -> None:
        if self.pending:
            await asyncio.wait(set(self.pending), timeout=5)


async def _send_message(
    page: Any, recorder: _Recorder, rec: CallRecord, prompt: str, cps: float | None, wait_s: float,
    how: str = "type", pasted: str = "",
) -> None:  # fmt: skip
    """Type (or fill) the prompt, press Enter, wait until the page shows the answer.
    ``how``: ``type`` (click the field, type), ``keyboard`` (Tab to the field, type: no
    pointer at all), ``paste`` (click, type ``prompt``, then paste ``pasted`` from the
    clipboard with Ctrl+V: a trusted paste event, as a person's)."""
    done = await page.locator(".msg.assistant[data-done]").count()
    box = page.locator("#prompt")
    if cps is None:
        await box.fill(prompt)  # a script: the value appears without key events
    else:
        if how == "keyboard":
            for _ in range(12):
                if await page.evaluate("() => document.activeElement && document.activeElement.id") == "prompt":
                    break
                await page.keyboard.press("Tab")
        else:
            await box.click()
        await box.press_sequentially(prompt, delay=1000.0 / cps)
        if how == "paste" and pasted:
            await page.evaluate("text => navigator.clipboard.writeText(text)", pasted)
            await page.keyboard.press("Control+V")
    recorder.rec = rec
    rec.t_start = time.time()
    try:
        await box.press("Enter")
        await page.wait_for_function(
            f"() => document.querySelectorAll('.msg.assistant[data-done]').length > {done}", timeout=wait_s * 1000
        )
    finally:
        await recorder.settle()
        recorder.rec = None
        rec.t_end = time.time()


class LegitBrowsers:
    """``pages`` people at a time on the chat page, in real headed-like Chromium."""

    def __init__(
        self,
        host: ChromiumHost,
        target: Target,
        settings: LegitSettings,
        rng: random.Random,
        ip_pick: Callable[[], str],
        sink: Callable[[CallRecord], None],
        account: Callable[[bool], Account | None],
    ):
        self.host = host
        self.target = target
        self.settings = settings
        self.rng = rng
        self.ip_pick = ip_pick
        self.sink = sink
        self.account = account
        self.active: list[CallRecord] = []

    def expected_rpm(self) -> float:
        """The message rate these pages produce (the HTTP model makes up the rest)."""
        s = self.settings
        question = 62  # characters, typical of the question bank
        per_message = sum(s.think_seconds) / 2 + question / (sum(s.typing_cps) / 2) + 1.5
        return s.browser_pages * 60.0 / per_message

    async def run(self, deadline: float, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._page_loop(i, deadline, stop) for i in range(self.settings.browser_pages)))

    async def _page_loop(self, slot: int, deadline: float, stop: asyncio.Event) -> None:
        rng = random.Random(self.rng.random())
        # Stagger the first sessions so they do not all type at once.
        await _sleep_until(min(deadline, time.time() + rng.uniform(0, sum(self.settings.think_seconds) / 2)), stop)
        while time.time() < deadline and not stop.is_set():
            try:
                await self._session(rng, deadline, stop)
            except Exception as exc:  # a crashed page is one lost session, not a lost run
                rec = CallRecord(actor="legit-browser", side="legit", t_arrival=time.time(), t_start=time.time())
                rec.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                rec.t_end = time.time()
                self.sink(rec)

    async def _session(self, rng: random.Random, deadline: float, stop: asyncio.Event) -> None:
        s, t = self.settings, self.target
        tz = rng.choice(_TIMEZONES)
        small = rng.random() < s.small_screen_share
        viewport, screen = rng.choice(_SMALL_WINDOWS if small else _WINDOWS)
        how = (
            "paste" if rng.random() < s.paste_share else "keyboard" if rng.random() < s.keyboard_only_share else "type"
        )
        ip = self.ip_pick()
        new = rng.random() < s.new_account_share
        account = self.account(new)
        context = await self.host.browser.new_context(
            user_agent=self.host.user_agent,
            timezone_id=tz,
            viewport={"width": viewport[0], "height": viewport[1]},
            screen={"width": screen[0], "height": screen[1]},
            extra_http_headers={"X-Forwarded-For": ip},
        )
        if how == "paste":  # what a person's browser allows the page they paste into
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=_origin(t.page_base))
        try:
            cookie = t.cookie(account)
            if cookie and t.jwt_cookie and account is not None:
                await context.add_cookies([{"name": t.jwt_cookie, "value": account.token, "url": t.page_base}])
            page = await context.new_page()
            recorder = _Recorder(t.chat_route)
            recorder.attach(page)
            await page.goto(t.page_base + t.page_path)
            await page.wait_for_function(SDK_READY, timeout=30_000)
            cps = rng.uniform(*s.typing_cps)
            for turn in range(rng.randint(int(s.browser_messages[0]), int(s.browser_messages[1]))):
                think = rng.uniform(*s.think_seconds)
                if time.time() + think + 5 > deadline or stop.is_set():
                    break
                await _sleep_until(time.time() + think, stop)
                if stop.is_set():
                    break
                rec = CallRecord(actor="legit-browser", side="legit", t_arrival=time.time(), ip=ip)
                rec.account = account.id if account else None
                rec.new_account = new
                rec.new_device = turn == 0
                self.active.append(rec)
                try:
                    question = legit_question(rng, turn)
                    if how == "paste":  # a short lead-in typed, a long passage pasted
                        pasted = " ".join(legit_question(rng, turn + k) for k in range(1, 6))
                        await _send_message(page, recorder, rec, question + " ", cps, 90, how, pasted)
                    else:
                        await _send_message(page, recorder, rec, question, cps, 90, how)
                except Exception as exc:
                    rec.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                finally:
                    self.active.remove(rec)
                    if not rec.attempts:
                        rec.outcome = "error"
                    self.sink(rec)
        finally:
            await context.close()


class HeadlessFarm:
    """A farm of automated headless Chromium: one fresh context per stolen call."""

    def __init__(self, host: ChromiumHost, target: Target, rotation: Rotation):
        self.host = host
        self.target = target
        self.rotation = rotation

    def context_options(self) -> dict[str, Any]:
        """The browser context of one call: Playwright's defaults (a headless window)."""
        return {}

    def prompt(self) -> str:
        """What the farm fills into the prompt field: its agent transcript."""
        return flattened_transcript(self.rotation.rng)

    async def call(self, rec: CallRecord) -> None:
        t = self.target
        rot = self.rotation
        who = rot.next(rec, time.time())
        started = time.time()
        rec.t_start = started
        rec.new_device = True  # a fresh context: the SDK makes and registers a new key
        context = await self.host.browser.new_context(
            **self.context_options(), extra_http_headers={"X-Forwarded-For": who.ip}
        )
        try:
            account = who.account
            if account is not None and t.jwt_cookie:
                await context.add_cookies([{"name": t.jwt_cookie, "value": account.token, "url": t.page_base}])
            page = await context.new_page()
            recorder = _Recorder(t.chat_route)
            recorder.rec = rec  # the page load, SDK and device registration are this call's too
            recorder.attach(page)
            await page.goto(t.page_base + t.page_path)
            await page.wait_for_function(SDK_READY, timeout=30_000)
            await _send_message(page, recorder, rec, self.prompt(), None, wait_s=60)
        except Exception as exc:
            rec.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            await context.close()
            rec.t_end = time.time()
            # A browser context keeps about one core busy while it loads, registers and solves.
            rec.cpu_s += rec.t_end - started


class StealthFarm(HeadlessFarm):
    """A farm of patched Chromium that looks like the people: one fresh context per call.

    The host is launched ``headed_like`` (``--disable-blink-features=AutomationControlled``,
    the user agent without ``Headless``), each context gets a window, screen and time zone
    drawn from the people's, so what is left to tell it from a person is what it does:
    the prompt appears in the field without a key or a pointer event, at once.
    """

    def context_options(self) -> dict[str, Any]:
        viewport, screen = self.rotation.rng.choice(_WINDOWS)
        return {
            "user_agent": self.host.user_agent,
            "timezone_id": self.rotation.rng.choice(_TIMEZONES),
            "viewport": {"width": viewport[0], "height": viewport[1]},
            "screen": {"width": screen[0], "height": screen[1]},
        }

    def prompt(self) -> str:
        return farm_task(self.rotation.rng)


async def _sleep_until(when: float, stop: asyncio.Event) -> None:
    delay = when - time.time()
    if delay <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
