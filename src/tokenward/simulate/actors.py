"""HTTP-level attackers, each one a real client of the kind it stands for, and what
every HTTP-level actor shares (the target, solvers, a recorded POST).

* :class:`AdapterReseller` — the official ``openai`` / ``anthropic`` SDKs with
  ``tokenward.sdk.client``'s proof transport, as a reseller's backend runs them: a fixed
  wrapper prompt and coding-agent payloads, streaming, no retries (it rotates instead).
* :class:`Impersonator` — ``curl_cffi`` with Chrome impersonation, headers cloned from a
  real page, a cloned signals report, device keys and throwaway accounts, proofs solved
  in Python.
* :class:`NativeSolver` — a script that speaks the protocol directly (aiohttp, a spoofed
  desktop user agent) and solves proofs natively; no browser evidence.

Every actor sends every request to the one target it was given, and carries its
simulated client address in ``X-Forwarded-For``. Legit users at the HTTP level are in
:mod:`.legit`; browsers in :mod:`.browsers`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDict

from ..proof.challenge import solve
from ..sdk.device import DeviceKey
from .native import native_solve
from .population import (
    AGENT_TOOLS,
    WRAPPER_PROMPT,
    Account,
    AccountMint,
    IpPool,
    Persona,
    coding_payload,
    signals_value,
)
from .profiles import AttackerSpec
from .records import Attempt, CallRecord, current_call

__all__ = [
    "CHALLENGE_PATH",
    "DEVICE_PATH",
    "AdapterReseller",
    "Identity",
    "Impersonator",
    "NativeSolver",
    "RecordingTransport",
    "Rotation",
    "Solver",
    "Target",
    "fetch_challenge",
    "native_thread_solver",
    "nonce_of",
    "parse_refusal",
    "post_and_record",
    "solve_timed",
    "thread_solver",
]

CHALLENGE_PATH = "/.tokenward/challenge"
DEVICE_PATH = "/.tokenward/device"


@dataclass(frozen=True, slots=True)
class Target:
    """Where the actors send traffic: one gateway."""

    base: str  # http://127.0.0.1:PORT (HTTP-level clients)
    page_base: str  # http://localhost:PORT (browsers: a secure context)
    chat_route: str  # the site's chat route (OpenAI chat format, called by its page)
    page_path: str  # the chat page
    anthropic_route: str | None  # an Anthropic Messages route, if the target has one
    accounts: AccountMint | None  # the target knows accounts (JWT); None: anonymous site
    jwt_cookie: str | None  # cookie carrying the JWT on the site's pages
    jwt_header: str = "authorization"

    def auth_headers(self, account: Account | None) -> list[tuple[str, str]]:
        if account is None or self.jwt_cookie is not None:
            return []
        value = f"Bearer {account.token}" if self.jwt_header == "authorization" else account.token
        return [(self.jwt_header, value)]

    def cookie(self, account: Account | None) -> str | None:
        return f"{self.jwt_cookie}={account.token}" if account is not None and self.jwt_cookie else None


def solve_timed(
    challenge: str, body: bytes, difficulty: int, signals: bytes | None, native: bool = False
) -> tuple[int, float]:
    """Solve a proof; returns (nonce, CPU seconds this thread spent). Runs in a worker."""
    start = time.thread_time()
    nonce = (native_solve if native else solve)(challenge, body, difficulty, signals)
    return nonce, time.thread_time() - start


Solver = Callable[[str, bytes, int, bytes | None], Awaitable[tuple[int, float]]]


async def thread_solver(challenge: str, body: bytes, difficulty: int, signals: bytes | None) -> tuple[int, float]:
    """The Python reference solver in a worker thread (what a Python script runs)."""
    return await asyncio.to_thread(solve_timed, challenge, body, difficulty, signals)


async def native_thread_solver(
    challenge: str, body: bytes, difficulty: int, signals: bytes | None
) -> tuple[int, float]:
    """The C solver in a worker thread (ctypes releases the GIL while it searches)."""
    return await asyncio.to_thread(solve_timed, challenge, body, difficulty, signals, True)


def parse_refusal(raw: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """(error code, fresh challenge) of a refusal in either API dialect."""
    try:
        data = json.loads(raw)
        err = data["error"]
    except (ValueError, KeyError, TypeError):
        return None, None
    if not isinstance(err, dict):
        return None, None
    code = err.get("code") if data.get("type") != "error" else err.get("type")
    challenge = err.get("challenge")
    ok = isinstance(challenge, dict) and isinstance(challenge.get("challenge"), str)
    return (code if isinstance(code, str) else None), (challenge if ok else None)


def nonce_of(proof: str | None) -> int | None:
    if not proof:
        return None
    try:
        return int(proof.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return None


def _header_bytes(headers: Any) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.items()) + 40


# --------------------------------------------------------------------------------------
# A plain HTTP exchange with aiohttp (legit model, native solver)
# --------------------------------------------------------------------------------------
async def post_and_record(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: list[tuple[str, str]],
    rec: CallRecord,
    *,
    protected: bool,
    difficulty: int | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """POST and read the whole answer: (status, body, lower-case headers). An attempt on a
    protected route is added to ``rec``."""
    hdrs = CIMultiDict(headers)
    hdrs["X-Forwarded-For"] = rec.ip  # appended last, as a proxy does
    t0 = time.time()
    async with session.post(url, data=body, headers=hdrs) as resp:
        t1 = time.time()
        raw = await resp.read()
        rec.bytes_up += len(body) + _header_bytes(hdrs)
        rec.bytes_down += len(raw) + _header_bytes(resp.headers)
        if protected:
            code = parse_refusal(raw)[0] if resp.status >= 400 else None
            attempt = Attempt(
                t_send=t0, t_headers=t1, status=resp.status,
                decision=resp.headers.get("tokenward-decision"),
                request_id=resp.headers.get("tokenward-request-id"),
                code=code, upstream=resp.headers.get("x-demo-upstream") == "1",
                difficulty=difficulty, nonce=nonce_of(hdrs.get("Tokenward-Proof")),
            )  # fmt: skip
            rec.add(attempt)
        return resp.status, raw, {k.lower(): v for k, v in resp.headers.items()}


async def fetch_challenge(
    session: aiohttp.ClientSession, target: Target, route: str, headers: list[tuple[str, str]], rec: CallRecord
) -> dict[str, Any] | None:
    body = json.dumps({"route": route}).encode()
    status, raw, _ = await post_and_record(session, target.base + CHALLENGE_PATH, body, headers, rec, protected=False)
    if status != 200:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) and isinstance(data.get("challenge"), str) else None


# --------------------------------------------------------------------------------------
# Attackers: what every attacker rotates through
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Identity:
    """Who one attack call claims to be: its proxy exit, device key and account."""

    ip: str
    device: DeviceKey | None
    account: Account | None


@dataclass(slots=True)
class Rotation:
    """An attacker's proxy exits, device keys and throwaway accounts, each used for a
    configured number of calls before the next one. Calls run concurrently: each takes
    an :class:`Identity` snapshot, and a device's registration is shared by its calls."""

    spec: AttackerSpec
    pool: IpPool
    accounts: AccountMint | None
    rng: random.Random
    calls: int = 0
    ip: str = ""
    device: DeviceKey | None = None
    account: Account | None = None
    registrations: dict[str, asyncio.Future[bool]] = field(default_factory=dict)

    def next(self, rec: CallRecord, now: float) -> Identity:
        s = self.spec
        if self.calls % s.ip_every == 0 or not self.ip:
            self.ip = self.pool.pick(self.rng)
        if s.device_every is not None and (self.device is None or self.calls % s.device_every == 0):
            self.device = DeviceKey()
        if self.accounts is not None and (self.account is None or self.calls % s.account_every == 0):
            self.account = self.accounts.throwaway(self.rng, disposable=self.rng.random() < s.disposable_share, now=now)
            rec.new_account = True
        self.calls += 1
        rec.ip = self.ip
        rec.account = self.account.id if self.account else None
        return Identity(self.ip, self.device, self.account)


# --------------------------------------------------------------------------------------
# Adapter resellers: the official SDKs
# --------------------------------------------------------------------------------------
class _CountingStream:
    """Counts the bytes of a streamed answer into the current call."""

    def __init__(self, inner: Any, rec: CallRecord):
        self._inner = inner
        self._rec = rec

    async def __aiter__(self) -> Any:
        async for chunk in self._inner:
            self._rec.bytes_down += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class RecordingTransport:
    """The innermost ``httpx2`` transport under ``AsyncProofTransport``: it sees every
    request the SDK sends (challenges, attempts, retries), adds the call's client address,
    and records each attempt on the protected routes."""

    def __init__(self, inner: Any, routes: frozenset[str]):
        self._inner = inner
        self._routes = routes

    async def handle_async_request(self, request: Any) -> Any:
        rec = current_call.get()
        if rec is not None:
            request.headers["X-Forwarded-For"] = rec.ip
        t0 = time.time()
        response = await self._inner.handle_async_request(request)
        t1 = time.time()
        if rec is None:
            return response
        try:
            body = request.content
        except Exception:  # a streamed body that was never read: not ours
            body = b""
        rec.bytes_up += len(body) + _header_bytes(request.headers)
        rec.bytes_down += _header_bytes(response.headers)
        if request.url.path not in self._routes:
            raw = await response.aread()
            rec.bytes_down += len(raw)
            return response
        code = None
        if response.status_code >= 400:
            raw = await response.aread()
            rec.bytes_down += len(raw)
            code = parse_refusal(raw)[0]
        else:
            response.stream = _CountingStream(response.stream, rec)
        rec.add(
            Attempt(
                t_send=t0, t_headers=t1, status=response.status_code,
                decision=response.headers.get("tokenward-decision"),
                request_id=response.headers.get("tokenward-request-id"),
                code=code, upstream=response.headers.get("x-demo-upstream") == "1",
                nonce=nonce_of(request.headers.get("tokenward-proof")),
            )
        )  # fmt: skip
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class AdapterReseller:
    """A reseller's backend: an OpenAI- or Anthropic-compatible API for its customers,
    served by calling the target with the official SDK (``sdk``: openai | anthropic)."""

    def __init__(self, sdk: str, target: Target, rotation: Rotation, route: str):
        import httpx2

        from ..sdk.client import AsyncProofTransport

        self.sdk = sdk
        self.target = target
        self.rotation = rotation
        self.route = route
        inner = RecordingTransport(httpx2.AsyncHTTPTransport(retries=0), frozenset({route}))
        self.http = httpx2.AsyncClient(transport=AsyncProofTransport(inner), timeout=120)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, rec: CallRecord) -> None:
        rng = self.rotation.rng
        account = self.rotation.next(rec, time.time()).account
        # The customer's request arrives with the reseller's key; the reseller puts the
        # throwaway account's token where the target expects a credential.
        key = account.token if account is not None else f"sk-reseller-{rng.randrange(16**8):08x}"
        _, messages = coding_payload(rng)
        token = current_call.set(rec)
        rec.t_start = time.time()
        try:
            if self.sdk == "openai":
                await self._openai(key, messages)
            else:
                await self._anthropic(key, messages)
        except Exception as exc:  # the SDK raises for refusals: the transport recorded them
            if not rec.attempts:
                rec.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        finally:
            current_call.reset(token)
            rec.t_end = time.time()

    async def _openai(self, key: str, messages: list[dict[str, Any]]) -> None:
        import openai

        client = openai.AsyncOpenAI(base_url=self.target.base + "/v1", api_key=key, http_client=self.http,
                                    max_retries=0)  # fmt: skip
        tools = [{"type": "function", "function": t} for t in AGENT_TOOLS]
        stream = await client.chat.completions.create(
            model="demo-1",
            messages=[{"role": "system", "content": WRAPPER_PROMPT}, *messages],  # type: ignore[list-item]
            tools=tools,  # type: ignore[arg-type]
            max_tokens=8192,
            stream=True,
        )
        async for _ in stream:  # type: ignore[union-attr]
            pass

    async def _anthropic(self, key: str, messages: list[dict[str, Any]]) -> None:
        import anthropic

        client = anthropic.AsyncAnthropic(
            base_url=self.target.base, auth_token=key, api_key=None, http_client=self.http, max_retries=0
        )
        tools = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                 for t in AGENT_TOOLS]  # fmt: skip
        stream = await client.messages.create(
            model="demo-1",
            system=WRAPPER_PROMPT,
            messages=_alternate(messages),  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            max_tokens=8192,
            stream=True,
        )
        async for _ in stream:  # type: ignore[union-attr]
            pass


def _alternate(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Anthropic wants user/assistant turns to alternate: merge consecutive ones."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append(dict(m))
    return out


# --------------------------------------------------------------------------------------
# Scripted protocol clients
# --------------------------------------------------------------------------------------
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
        rec.bytes_up += len(body) + _header_bytes({k: v for k, v in headers.items() if v}) + 450  # + its defaults
        rec.bytes_down += len(raw) + _header_bytes(resp.headers)
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
