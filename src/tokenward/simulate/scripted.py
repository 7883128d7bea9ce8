"""Scripted protocol clients: attackers that speak the proof-of-work protocol themselves.

* :class:`Impersonator` — ``curl_cffi`` with Chrome impersonation, headers cloned from a
  real page, a cloned signals report, device keys and throwaway accounts, proofs solved
  in Python.
* :class:`NativeSolver` — a script that speaks the protocol directly (aiohttp, a spoofed
  desktop user agent) and solves proofs natively; no browser evidence.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any

import aiohttp

from ..sdk.device import DeviceKey
from .actors import (
    CHALLENGE_PATH,
    DEVICE_PATH,
    Identity,
    Rotation,
    Solver,
    Target,
    fetch_challenge,
    header_bytes,
    nonce_of,
    parse_refusal,
    post_and_record,
    thread_solver,
)
from .population import (
    AGENT_TOOLS,
    WRAPPER_PROMPT,
    Persona,
    coding_payload,
    signals_value,
)
from .records import Attempt, CallRecord

__all__ = ["Impersonator", "NativeSolver"]


def _registration_done(rec: CallRecord, task: asyncio.Future[bool]) -> None:
    """Read a device registration's outcome (so no exception goes unretrieved) and
    report a failure on the call that started it."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        rec.error = rec.error or f"device registration: {type(exc).__name__}: {str(exc)[:160]}"


class _ScriptedClient:
    """Shared by the impersonator and the native solver: challenge, solve, (device),
    send, retry once on a fresh challenge; abandon challenges above ``max_difficulty``."""

    def __init__(self, target: Target, rotation: Rotation, solver: Solver = thread_solver):
        self.target = target
        self.rotation = rotation
        self.solver = solver

    async def _solve(self, rec: CallRecord, c: dict[str, Any], body: bytes, signals: bytes | None) -> int | None:
        if int(c["difficulty"]) > self.rotation.spec.max_difficulty:
            rec.error = f"abandoned a {c['difficulty']}-bit challenge"
            return None
        started = time.monotonic()
        nonce, cpu = await self.solver(c["challenge"], body, int(c["difficulty"]), signals)
        rec.solve_s += time.monotonic() - started
        rec.cpu_s += cpu
        return nonce


class Impersonator(_ScriptedClient):
    """``curl_cffi`` impersonating Chrome (its TLS and HTTP/2 fingerprint, its default
    headers), with the page's own fetch headers and a signals report cloned from a real
    browser session on the same user agent."""

    # What curl_cffi's "chrome" target claims to be.
    UA = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/152.0.0.0 Safari/537.36"
    )

    def __init__(self, target: Target, rotation: Rotation, solver: Solver = thread_solver):
        super().__init__(target, rotation, solver)
        from curl_cffi.requests import AsyncSession

        self.http: Any = AsyncSession(impersonate="chrome", timeout=120)
        self.persona = Persona(
            family="chrome", ua=self.UA,
            brands=(("Chromium", "152"), ("Not?A_Brand", "24"), ("Google Chrome", "152")),
            platform="Windows", screen=(1920, 1080, 1920, 1032, 24, 1.0), viewport=(1904, 919, 1920, 1032),
            gl=("Google Inc. (NVIDIA)", "ANGLE (NVIDIA, NVIDIA GeForce GTX 1660 Direct3D11 vs_5_0 ps_5_0, D3D11)"),
            timezone="America/New_York", languages=("en-US", "en"), accept_language="en-US,en;q=0.9",
            hardware_concurrency=8, device_memory=8.0, hash_rate=2e6,
        )  # fmt: skip
        # The report of one real typed message, replayed on every call.
        self.cloned_input = {"keys": 71, "pastes": 0, "pasted_chars": 0, "chars": 64, "focus_ms": 11840}
        self.cloned_prev = {"ms": 31, "hashes": 61_204, "workers": 2, "difficulty": 16}

    async def close(self) -> None:
        # Registrations still running would send on a closed session: stop them first.
        pending = [f for f in self.rotation.registrations.values() if not f.done()]
        for f in pending:
            f.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.http.close()

    def _headers(self, who: Identity, extra: list[tuple[str, str]] | None = None) -> dict[str, str | None]:
        t = self.target
        # curl_cffi writes Chrome's navigation headers (and its client hints, kept);
        # the cloned ones are those of the page's fetch().
        h: dict[str, str | None] = {
            "upgrade-insecure-requests": None,
            "sec-fetch-user": None,
            "cache-control": None,
            "content-type": "application/json",
            "accept": "*/*",
            "origin": t.base,
            "sec-fetch-site": "same-origin",
            "sec-fetch-mode": "cors",
            "sec-fetch-dest": "empty",
            "referer": t.base + t.page_path,
            "accept-language": "en-US,en;q=0.9",
        }
        cookie = t.cookie(who.account)
        if cookie:
            h["cookie"] = cookie
        h.update(dict(t.auth_headers(who.account)))
        h.update(dict(extra or []))
        h["x-forwarded-for"] = who.ip
        return h

    async def _post(
        self,
        rec: CallRecord,
        who: Identity,
        path: str,
        body: bytes,
        extra: list[tuple[str, str]] | None = None,
        *,
        protected: bool = False,
    ) -> tuple[int, bytes]:
        from curl_cffi import CurlHttpVersion

        headers = self._headers(who, extra)
        t0 = time.time()
        resp = await self.http.post(
            self.target.base + path, data=body, headers=headers, http_version=CurlHttpVersion.V1_1
        )
        t1 = time.time()
        raw = resp.content
        rec.bytes_up += len(body) + header_bytes({k: v for k, v in headers.items() if v}) + 450  # + its defaults
        rec.bytes_down += len(raw) + header_bytes(resp.headers)
        if protected:
            rec.add(
                Attempt(
                    t_send=t0, t_headers=t1, status=resp.status_code,
                    decision=resp.headers.get("tokenward-decision"),
                    request_id=resp.headers.get("tokenward-request-id"),
                    code=parse_refusal(raw)[0] if resp.status_code >= 400 else None,
                    upstream=resp.headers.get("x-demo-upstream") == "1",
                    nonce=nonce_of(headers.get("tokenward-proof")),
                )
            )  # fmt: skip
        return resp.status_code, raw

    async def _challenge(self, rec: CallRecord, who: Identity, route: str) -> dict[str, Any] | None:
        status, raw = await self._post(rec, who, CHALLENGE_PATH, json.dumps({"route": route}).encode())
        if status != 200:
            return None
        data = json.loads(raw)
        return data if isinstance(data, dict) and isinstance(data.get("challenge"), str) else None

    async def _device_ready(self, rec: CallRecord, who: Identity) -> bool:
        """Register the identity's device once (its first call does; the others wait)."""
        dev = who.device
        if dev is None:
            return False
        pending = self.rotation.registrations.get(dev.id)
        if pending is None:
            pending = asyncio.ensure_future(self._register(rec, who, dev))
            # Its calls may all be cancelled before it ends (the shield keeps it running):
            # its outcome is read here either way, and a failure is reported on the call
            # that started it.
            pending.add_done_callback(functools.partial(_registration_done, rec))
            self.rotation.registrations[dev.id] = pending
            rec.new_device = True
        try:
            return await asyncio.shield(pending)
        except Exception:
            return False

    async def _register(self, rec: CallRecord, who: Identity, dev: DeviceKey) -> bool:
        c = await self._challenge(rec, who, DEVICE_PATH)
        if c is None:
            return False
        body = dev.registration_body()
        nonce = await self._solve(rec, c, body, None)
        if nonce is None:
            return False
        rec.hashes += nonce + 1
        status, _ = await self._post(rec, who, DEVICE_PATH, body, [("tokenward-proof", f"v1.{c['challenge']}.{nonce}")])
        return status == 200

    async def call(self, rec: CallRecord) -> None:
        rng = self.rotation.rng
        who = self.rotation.next(rec, time.time())
        rec.t_start = time.time()
        try:
            registered = await self._device_ready(rec, who)
            _, messages = coding_payload(rng)
            body = json.dumps({"model": "demo-1", "messages": messages, "stream": True}).encode()
            signals = signals_value(self.persona, now=time.time(), input_counts=self.cloned_input,
                                    prev=self.cloned_prev)  # fmt: skip
            route = self.target.chat_route
            c = await self._challenge(rec, who, route)
            for attempt in range(2):
                if c is None:
                    rec.error = rec.error or "no challenge"
                    return
                nonce = await self._solve(rec, c, body, signals.encode())
                if nonce is None:
                    return
                proof = f"v1.{c['challenge']}.{nonce}"
                extra = [("tokenward-proof", proof), ("tokenward-signals", signals)]
                if registered and who.device is not None:
                    extra.append(("tokenward-device", who.device.header(proof, body)))
                    rec.device = who.device.id
                status, raw = await self._post(rec, who, route, body, extra, protected=True)
                if status != 401 or attempt == 1:
                    return
                c = parse_refusal(raw)[1]
        except Exception as exc:
            rec.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        finally:
            rec.t_end = time.time()


class NativeSolver(_ScriptedClient):
    """A script that speaks the protocol and solves natively: a desktop user agent it
    copied somewhere, aiohttp's own header order, no browser evidence at all."""

    UA = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/150.0.0.0 Safari/537.36"
    )

    def __init__(self, target: Target, rotation: Rotation, solver: Solver = thread_solver):
        super().__init__(target, rotation, solver)
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    async def close(self) -> None:
        await self.session.close()

    def _headers(self, who: Identity) -> list[tuple[str, str]]:
        t = self.target
        account = who.account
        h = [("User-Agent", self.UA), ("content-type", "application/json")]
        cookie = t.cookie(account)
        if cookie:
            h.append(("Cookie", cookie))
        return h + t.auth_headers(account)

    async def call(self, rec: CallRecord) -> None:
        rng = self.rotation.rng
        who = self.rotation.next(rec, time.time())
        rec.t_start = time.time()
        t = self.target
        try:
            _, messages = coding_payload(rng)
            tools = [{"type": "function", "function": x} for x in AGENT_TOOLS]
            messages = [{"role": "system", "content": WRAPPER_PROMPT}, *messages]
            call = {"model": "demo-1", "max_tokens": 8192, "stream": True, "tools": tools, "messages": messages}
            body = json.dumps(call).encode()
            c = await fetch_challenge(self.session, t, t.chat_route, self._headers(who), rec)
            for attempt in range(2):
                if c is None:
                    rec.error = rec.error or "no challenge"
                    return
                nonce = await self._solve(rec, c, body, None)
                if nonce is None:
                    return
                headers = [*self._headers(who), ("Tokenward-Proof", f"v1.{c['challenge']}.{nonce}")]
                status, raw, _ = await post_and_record(
                    self.session, t.base + t.chat_route, body, headers, rec, protected=True,
                    difficulty=int(c["difficulty"]),
                )  # fmt: skip
                if status != 401 or attempt == 1:
                    return
                c = parse_refusal(raw)[1]
        except Exception as exc:
            rec.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        finally:
            rec.t_end = time.time()
