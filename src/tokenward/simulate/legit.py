"""Legit users at the HTTP level: the faster model of people on the site's chat page.

What the page's ``tokenward.fetch`` sends — a browser persona's headers in that
browser's order, a ``Tokenward-Signals`` report with the typing counts of the question,
a device key registered on a first visit while the person types, the retry-once on a
fresh challenge — with proofs solved here but **paced** to the persona's browser speed.
People hold conversations: a few messages with reading and typing in between, then they
leave and may come back; the conversation is sent whole, or only its new turn where the
gateway holds it (``Tokenward-Conversation``), as the page does.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..sdk.device import DeviceKey
from .actors import DEVICE_PATH, Solver, Target, fetch_challenge, parse_refusal, post_and_record
from .population import Account, IpPool, Persona, browser_fetch_headers, legit_question, make_persona, signals_value
from .profiles import LegitSettings
from .records import CallRecord

__all__ = ["LegitHttpUser", "LegitPopulation"]

DEVICE_WAIT = 2.0  # the SDK's deviceWaitMs: a request waits this long for its registration
FIRST_VISIT_TYPING_CAP = 8.0  # seconds of typing modelled on a first visit (registration runs meanwhile)
RETURNING_SHARE = 0.5  # conversations started by someone who has been here before in this run
AWAY_SECONDS = (600.0, 3600.0)  # after a conversation, a person is away at least this long


@dataclass(slots=True)
class LegitHttpUser:
    """One person with one browser, one address, one device key and (maybe) an account."""

    name: str
    persona: Persona
    ip: str
    account: Account | None
    new_account: bool
    typing_cps: float
    pastes: bool
    device: DeviceKey = field(default_factory=DeviceKey)
    registration: asyncio.Task[bool] | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    turns_left: int = 0
    prev: dict[str, int] | None = None
    conversation: str | None = None  # Tokenward-Conversation id, when the gateway holds the history
    busy: bool = False
    free_at: float = 0.0  # a person reads the answer, thinks and types before the next message


class LegitPopulation:
    """The site's users and the page they use, modelled at the HTTP level."""

    def __init__(
        self,
        rng: random.Random,
        settings: LegitSettings,
        pool: IpPool,
        target: Target,
        solver: Solver,
        *,
        registration_solver: Solver | None = None,
        model: str = "demo-1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rng = rng
        self.settings = settings
        self.pool = pool
        self.target = target
        self.solver = solver
        self.registration_solver = registration_solver or solver
        self.model = model
        self.clock = clock
        self.users: list[LegitHttpUser] = []
        self._weights: list[float] = []
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # No automatic headers: the persona's own, in the browser's order.
        self.session = aiohttp.ClientSession(
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def close(self) -> None:
        registrations = [u.registration for u in self.users if u.registration is not None]
        for task in registrations:
            task.cancel()
        # Awaited, so that none ends with an exception nobody retrieved.
        await asyncio.gather(*registrations, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def _new_user(self) -> LegitHttpUser:
        rng = self.rng
        new = rng.random() < self.settings.new_account_share
        account = None
        if self.target.accounts is not None:
            account = self.target.accounts.customer(rng, new=new, now=self.clock())
        user = LegitHttpUser(
            name=f"user{len(self.users) + 1}",
            persona=make_persona(rng),
            ip=self.pool.pick(rng),
            account=account,
            new_account=new,
            typing_cps=rng.uniform(*self.settings.typing_cps),
            pastes=rng.random() < self.settings.paste_share,
        )
        self.users.append(user)
        # Heavy and light users: a few people send most of the messages.
        self._weights.append(rng.paretovariate(1.3))
        return user

    def pick(self) -> LegitHttpUser:
        """Who sends the next message: someone mid-conversation who has read the last
        answer and typed the next question; else someone starting a conversation — a
        returning visitor (a few people come back often) or a first visit."""
        rng = self.rng
        now = self.clock()
        ready = [u for u in self.users if u.turns_left > 0 and not u.busy and u.free_at <= now]
        if ready:
            return min(ready, key=lambda u: u.free_at)
        if self.users and rng.random() < RETURNING_SHARE:
            idle = [(u, w) for u, w in zip(self.users, self._weights, strict=True)
                    if u.turns_left <= 0 and not u.busy and u.free_at <= now]  # fmt: skip
            if idle:
                return rng.choices([u for u, _ in idle], weights=[w for _, w in idle])[0]
        return self._new_user()

    def _headers(
        self, user: LegitHttpUser, *, proof: str | None = None, signals: str | None = None, device: str | None = None
    ) -> list[tuple[str, str]]:
        t = self.target
        fetch = browser_fetch_headers(
            user.persona, t.base, t.base + t.page_path, proof=proof, signals=signals, device=device,
            cookie=t.cookie(user.account),
        )  # fmt: skip
        return [*fetch, *t.auth_headers(user.account)]

    async def _paced_solve(self, user: LegitHttpUser, rec: CallRecord, c: dict[str, Any], body: bytes,
                           signals: bytes | None, *, background: bool = False) -> int:  # fmt: skip
        started = time.monotonic()
        solver = self.registration_solver if background else self.solver
        nonce, _ = await solver(c["challenge"], body, int(c["difficulty"]), signals)
        browser_time = (nonce + 1) / user.persona.hash_rate
        remaining = browser_time - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        spent = time.monotonic() - started
        rec.solve_s += spent
        user.prev = {"ms": round(spent * 1000), "hashes": nonce + 1, "workers": 2, "difficulty": int(c["difficulty"])}
        return nonce

    async def _register(self, user: LegitHttpUser, rec: CallRecord) -> bool:
        """The SDK registers the page's device key in the background (a harder proof)."""
        try:
            return await self._register_once(user, rec)
        except (TimeoutError, aiohttp.ClientError, RuntimeError, OSError, ValueError):
            return False  # the page goes on without a device key, as the SDK does

    async def _register_once(self, user: LegitHttpUser, rec: CallRecord) -> bool:
        if self.session is None:
            raise RuntimeError("LegitPopulation.start() was not awaited")
        scratch = CallRecord(actor=rec.actor, side="legit", t_arrival=rec.t_arrival, ip=user.ip)
        c = await fetch_challenge(self.session, self.target, DEVICE_PATH, self._headers(user), scratch)
        if c is None:
            return False
        body = user.device.registration_body()
        nonce = await self._paced_solve(user, scratch, c, body, None, background=True)
        proof = f"v1.{c['challenge']}.{nonce}"
        status, _, _ = await post_and_record(
            self.session, self.target.base + DEVICE_PATH, body, self._headers(user, proof=proof), scratch,
            protected=False,
        )  # fmt: skip
        user.prev = None  # the registration's proof is not a request's "previous proof"
        rec.bytes_up += scratch.bytes_up
        rec.bytes_down += scratch.bytes_down
        return status == 200

    async def call(self, rec: CallRecord, user: LegitHttpUser) -> None:
        """One message: type it, send it through the page's SDK, read the streamed answer."""
        if self.session is None:
            raise RuntimeError("LegitPopulation.start() was not awaited")
        t = self.target
        rng = self.rng
        user.busy = True
        try:
            rec.ip = user.ip
            rec.account = user.account.id if user.account else None
            rec.new_account = user.new_account
            if user.turns_left <= 0:
                user.history = []
                user.conversation = None
                lo, hi = self.settings.session_messages
                user.turns_left = rng.randint(int(lo), int(hi))
            question = legit_question(rng, len(user.history) // 2)
            typing = len(question) / user.typing_cps
            if user.registration is None:
                # A first visit: the page registers its device key in the background while
                # the person types (a returning visitor's key is already registered).
                rec.new_device = True
                user.registration = asyncio.ensure_future(self._register(user, rec))
                await asyncio.sleep(min(typing, FIRST_VISIT_TYPING_CAP))
            # Otherwise the arrival is the moment the person presses Enter. The SDK had a
            # challenge ready for the route (prefetched while they typed): not timed.
            c = await fetch_challenge(self.session, t, t.chat_route, self._headers(user), rec)
            pasted = rng.randrange(10, len(question)) if user.pastes and rng.random() < 0.5 else 0
            keys = int((len(question) - pasted) * rng.uniform(1.0, 1.2)) + 1  # typos, backspace, Enter
            counts = {"keys": keys, "pastes": 1 if pasted else 0, "pasted_chars": pasted,
                      "chars": len(question), "focus_ms": int((typing + rng.uniform(1, 8)) * 1000)}  # fmt: skip
            messages = [*user.history, {"role": "user", "content": question}]
            # Like the page: where the gateway holds the conversation, only the new turn goes.
            sent = [messages[-1]] if user.conversation else messages
            body = json.dumps({"model": self.model, "messages": sent, "stream": True}).encode()

            rec.t_start = self.clock()  # Enter: from here on the person waits
            signals = signals_value(user.persona, now=rec.t_start, input_counts=counts, prev=user.prev)
            for attempt in range(2):  # the SDK's retry-once on a fresh challenge
                if c is None:
                    rec.error = "no challenge"
                    return
                nonce = await self._paced_solve(user, rec, c, body, signals.encode())
                proof = f"v1.{c['challenge']}.{nonce}"
                device = None
                if user.registration is not None:
                    left = DEVICE_WAIT - (self.clock() - rec.t_start)
                    done, _ = await asyncio.wait({user.registration}, timeout=max(0.0, left))
                    if done and not user.registration.cancelled() and user.registration.result():
                        device = user.device.header(proof, body)
                        rec.device = user.device.id
                headers = self._headers(user, proof=proof, signals=signals, device=device)
                if user.conversation:
                    headers.append(("Tokenward-Conversation", user.conversation))
                status, raw, answer = await post_and_record(
                    self.session, t.base + t.chat_route, body, headers, rec, protected=True,
                    difficulty=int(c["difficulty"]),
                )  # fmt: skip
                if status != 401 or attempt == 1:
                    break
                c = parse_refusal(raw)[1]
                if c is None:
                    break
            if rec.reached_upstream:
                user.history = [*messages, {"role": "assistant", "content": _sse_text(raw)}]
                user.conversation = answer.get("tokenward-conversation") or user.conversation
        finally:
            rec.t_end = self.clock()
            user.busy = False
            user.turns_left -= 1
            if user.turns_left > 0:
                # Reading the answer, thinking, typing the next question.
                lo, hi = self.settings.think_seconds
                user.free_at = rec.t_end + rng.uniform(lo, hi) + rng.uniform(2.0, 8.0)
            else:
                user.free_at = rec.t_end + rng.uniform(*AWAY_SECONDS)  # gone; may come back later


def _sse_text(raw: bytes) -> str:
    """The assistant text of an OpenAI chat SSE body (for the next turn's history)."""
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        try:
            delta = json.loads(line[5:])["choices"][0]["delta"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue
        if isinstance(delta, str):
            out.append(delta)
    return "".join(out)
