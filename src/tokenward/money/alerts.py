"""Alerts: a log line and a webhook POST for every state change, off the request path.

:meth:`Alerter.notify` is synchronous and never waits: it logs the change and puts it on
a bounded queue (when the queue is full the alert is dropped and counted, never the
request delayed). One background task posts each event as JSON to the webhook, retrying
failures (connection errors, timeouts, 408/429/5xx) with exponential backoff and jitter,
within ``max_attempts`` and ``deadline`` seconds per event; a ``Retry-After`` from the
receiver is honoured up to ``max_delay``. :meth:`Alerter.close` drains what is queued.

The body is the event's ``as_dict()`` plus ``"source": "tokenward"`` and a one-line
``"text"`` (which chat tools' incoming webhooks display as is)::

    {"source": "tokenward", "event": "spike/under_attack", "subject": "/v1/chat/completions",
     "at": 1760000000.0, "reason": "...", "detail": {...}, "text": "tokenward: ..."}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["AlertEvent", "AlertSettings", "Alerter"]

log = logging.getLogger("tokenward.alerts")

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Names of events that announce trouble (logged as warnings; the rest as info).
_TROUBLE = frozenset({"spike/under_attack", "breaker/open"})


class AlertEvent(Protocol):
    """Anything with ``as_dict()`` (e.g. :class:`tokenward.money.spike.StateChange`)."""

    def as_dict(self) -> dict[str, Any]: ...


class AlertSettings(BaseModel):
    """The policy's ``alerts:`` section. Without ``webhook`` only the log line is written.
    ``${VAR}`` in ``webhook`` and ``headers`` is read from the environment when loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: SecretStr | None = Field(None, description="http(s) URL to POST events to (kept secret)")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="added to every POST")
    max_attempts: int = Field(6, ge=1, le=50, description="tries per event")
    base_delay: float = Field(0.5, gt=0, description="seconds before the first retry; doubles each time")
    max_delay: float = Field(30.0, gt=0, description="longest wait between tries")
    deadline: float = Field(120.0, gt=0, description="seconds per event, all tries included")
    timeout: float = Field(10.0, gt=0, description="seconds per try")
    queue_size: int = Field(1000, ge=1, description="events waiting to be sent; more are dropped")

    @field_validator("webhook", mode="before")
    @classmethod
    def _expand_url(cls, v: Any) -> Any:
        return _expand_env(v) if isinstance(v, str) else v

    @field_validator("headers", mode="before")
    @classmethod
    def _expand_headers(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {k: _expand_env(value) if isinstance(value, str) else value for k, value in v.items()}

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")
        return v


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: str) -> str:
    """``${VAR}`` -> the environment's value (secrets stay out of the policy file)."""
    missing = [name for name in _ENV_REF.findall(value) if name not in os.environ]
    if missing:
        raise ValueError("refers to unset environment variable(s): " + ", ".join(missing))
    return _ENV_REF.sub(lambda m: os.environ[m.group(1)], value)


def _payload(event: AlertEvent | Mapping[str, Any]) -> dict[str, Any]:
    data = dict(event) if isinstance(event, Mapping) else event.as_dict()
    name, subject, reason = data.get("event", "event"), data.get("subject", ""), data.get("reason", "")
    text = f"tokenward: {name} on {subject}" + (f" — {reason}" if reason else "")
    return {"source": "tokenward", **data, "text": text}


class Alerter:
    """Logs state changes and posts them to a webhook in the background.

    ``sleep``, ``clock`` and ``rng`` are injectable so tests need not wait for real
    backoff. ``session``: an aiohttp session to use (else one is made at :meth:`start`
    and closed at :meth:`close`).
    """

    def __init__(
        self,
        settings: AlertSettings | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings or AlertSettings()
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self.settings.queue_size)
        self._worker: asyncio.Task[None] | None = None
        self.sent = 0  # events the webhook accepted
        self.failed = 0  # events given up on
        self.dropped = 0  # events not queued (queue full, or closed)
        self._closed = False

    def __repr__(self) -> str:  # the webhook URL often embeds a token: never print it
        target = "webhook" if self.settings.webhook is not None else "log only"
        return f"Alerter({target}, sent={self.sent}, failed={self.failed}, dropped={self.dropped})"

    async def start(self) -> None:
        """Start the sender (no-op without a webhook, or when already started)."""
        if self.settings.webhook is None or self._worker is not None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self._worker = asyncio.create_task(self._run(), name="tokenward-alerts")

    def notify(self, event: AlertEvent | Mapping[str, Any]) -> bool:
        """Log ``event`` and queue it for the webhook. Never blocks; returns False when
        the event could not be queued (no webhook, queue full, or closed)."""
        payload = _payload(event)
        level = logging.WARNING if payload.get("event") in _TROUBLE else logging.INFO
        log.log(level, "%s", payload["text"], extra={"tokenward_event": payload})
        if self.settings.webhook is None:
            return False
        if self._closed:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("alert queue full (%d): dropped %s", self.settings.queue_size, payload.get("event"))
            return False
        return True

    async def close(self, grace: float = 10.0) -> None:
        """Send what is queued (for at most ``grace`` seconds), then stop."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            try:
                async with asyncio.timeout(grace):
                    await self._queue.put(None)  # after everything already queued
                    await asyncio.shield(worker)
            except TimeoutError:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            payload = await self._queue.get()
            if payload is None:
                return
            if await self._deliver(payload):
                self.sent += 1
            else:
                self.failed += 1

    async def _deliver(self, payload: dict[str, Any]) -> bool:
        """POST one event with retries -> True once the receiver accepted it (2xx)."""
        s = self.settings
        if s.webhook is None or self._session is None:
            return False
        url = s.webhook.get_secret_value()
        headers = {"content-type": "application/json", "user-agent": "tokenward-alerts"}
        headers.update({k: v.get_secret_value() for k, v in s.headers.items()})
        body = orjson.dumps(payload)
        started = self._clock()
        timeout = aiohttp.ClientTimeout(total=s.timeout)
        for attempt in range(1, s.max_attempts + 1):
            hint: float | None = None
            try:
                async with self._session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        return True
                    problem = f"HTTP {resp.status}"
                    if resp.status not in _RETRY_STATUS:
                        log.error("alert %s refused by the webhook: %s", payload.get("event"), problem)
                        return False
                    hint = _retry_after(resp.headers.get("retry-after"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt == s.max_attempts:
                break
            delay = min(s.max_delay, s.base_delay * 2 ** (attempt - 1))
            delay = delay / 2 + self._rng() * delay / 2  # "equal jitter": never 0, never in step
            if hint is not None:
                delay = max(delay, min(hint, s.max_delay))
            if self._clock() - started + delay > s.deadline:
                break
            log.info("alert %s: try %d failed (%s); again in %.2fs", payload.get("event"), attempt, problem, delay)
            await self._sleep(delay)
        log.error("alert %s not delivered after %d tries: %s", payload.get("event"), attempt, problem)
        return False


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return seconds if seconds >= 0 else None
