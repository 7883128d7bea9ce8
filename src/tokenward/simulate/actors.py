"""What every HTTP-level actor shares: the target, the proof solvers, a recorded POST,
reading a refusal, and the rotation of proxy exits, device keys and accounts.

The attackers themselves are in :mod:`.resellers` (the official SDKs) and
:mod:`.scripted` (curl_cffi impersonation, a native-solving script); legit users at the
HTTP level are in :mod:`.legit`; browsers in :mod:`.browsers`.

Every actor sends every request to the one target it was given, and carries its
simulated client address in ``X-Forwarded-For``.
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
    Account,
    AccountMint,
    IpPool,
)
from .profiles import AttackerSpec
from .records import Attempt, CallRecord

__all__ = [
    "CHALLENGE_PATH",
    "DEVICE_PATH",
    "Identity",
    "Rotation",
    "Solver",
    "Target",
    "fetch_challenge",
    "header_bytes",
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


def header_bytes(headers: Any) -> int:
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
        rec.bytes_up += len(body) + header_bytes(hdrs)
        rec.bytes_down += len(raw) + header_bytes(resp.headers)
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
