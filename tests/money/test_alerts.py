"""Webhook alerts against a real local receiver (aiohttp, loopback) that fails on purpose."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from tokenward.money.alerts import Alerter, AlertSettings
from tokenward.money.spike import StateChange

EVENT = StateChange("spike/under_attack", "/v1/chat/completions", 1_800_000_000.0, "requests at 1300", {"x": 1})


class Receiver:
    """Answers ``fail`` with ``status`` for the first ``failures`` posts, then 204."""

    def __init__(self) -> None:
        self.failures = 0
        self.status = 503
        self.retry_after: str | None = None
        self.attempts = 0
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.headers.append(dict(request.headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.attempts <= self.failures:
            headers = {"retry-after": self.retry_after} if self.retry_after else {}
            return web.Response(status=self.status, headers=headers)
        self.received.append(await request.json())
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Receiver]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", rec
    await runner.cleanup()


def fast(url: str, **overrides: Any) -> AlertSettings:
    values: dict[str, Any] = {"webhook": url, "base_delay": 0.001, "max_delay": 0.01, "deadline": 5, "timeout": 2}
    return AlertSettings.model_validate({**values, **overrides})


async def test_retries_until_the_receiver_accepts(receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    rec.failures = 3
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(seconds)

    alerter = Alerter(fast(url, headers={"authorization": "Bearer s3cret"}), sleep=sleep, rng=lambda: 1.0)
    await alerter.start()
    assert alerter.notify(EVENT)
    await alerter.close()
    assert rec.attempts == 4 and alerter.sent == 1 and alerter.failed == 0
    assert delays == [0.001, 0.002, 0.004]  # exponential (rng pinned at the top of the jitter)
    [body] = rec.received
    assert body["event"] == "spike/under_attack" and body["subject"] == "/v1/chat/completions"
    assert body["source"] == "tokenward" and body["detail"] == {"x": 1} and body["at"] == EVENT.at
    assert body["text"].startswith("tokenward: spike/under_attack on /v1/chat/completions")
    assert rec.headers[-1]["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(alerter) and "127.0.0.1" not in repr(alerter)


async def test_jitter_keeps_delays_within_half_and_full_backoff(receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    rec.failures = 4
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    alerter = Alerter(fast(url, base_delay=1.0, max_delay=3.0, deadline=100), sleep=sleep, rng=lambda: 0.0)
    await alerter.start()
    alerter.notify(EVENT)
    await alerter.close()
    assert delays == [0.5, 1.0, 1.5, 1.5]  # half of 1, 2, min(4, 3), min(8, 3)
    assert alerter.sent == 1


async def test_gives_up_after_max_attempts(receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    rec.failures = 100
    alerter = Alerter(fast(url, max_attempts=3))
    await alerter.start()
    alerter.notify(EVENT)
    alerter.notify({"event": "breaker/open", "subject": "global"})
    await alerter.close()
    assert rec.attempts == 6 and alerter.failed == 2 and alerter.sent == 0


async def test_gives_up_at_the_deadline(receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    rec.failures = 100
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    settings = fast(url, base_delay=10, max_delay=60, deadline=35, max_attempts=50)
    alerter = Alerter(settings, sleep=sleep, clock=lambda: clock[0], rng=lambda: 1.0)
    await alerter.start()
    alerter.notify(EVENT)
    await alerter.close()
    assert rec.attempts == 3  # waits 10 + 20 = 30; another 40 would pass 35
    assert alerter.failed == 1


async def test_client_errors_are_not_retried_but_429_honours_retry_after(receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    rec.failures, rec.status = 1, 400
    alerter = Alerter(fast(url))
    await alerter.start()
    alerter.notify(EVENT)
    await alerter.close()
    assert rec.attempts == 1 and alerter.failed == 1

    rec.attempts, rec.failures, rec.status, rec.retry_after = 0, 1, 429, "0.05"
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    alerter = Alerter(fast(url, max_delay=0.5), sleep=sleep)
    await alerter.start()
    alerter.notify(EVENT)
    await alerter.close()
    assert rec.attempts == 2 and alerter.sent == 1 and delays[0] >= 0.05


async def test_unreachable_webhook_and_timeouts_are_retried(receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    rec.delay = 0.5
    alerter = Alerter(fast(url, timeout=0.05, max_attempts=2))
    await alerter.start()
    alerter.notify(EVENT)
    await alerter.close()
    assert rec.attempts == 2 and alerter.failed == 1

    dead = Alerter(fast("http://127.0.0.1:1/hook", max_attempts=2))
    await dead.start()
    dead.notify(EVENT)
    await dead.close()
    assert dead.failed == 1


async def test_notify_never_blocks_and_drops_when_full(receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    rec.delay = 0.05
    alerter = Alerter(fast(url, queue_size=2))
    await alerter.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    accepted = [alerter.notify(EVENT) for _ in range(10)]
    assert loop.time() - start < 0.01  # no awaiting on the request path
    assert accepted[:2] == [True, True] and accepted.count(False) >= 7
    await alerter.close()
    assert alerter.sent == accepted.count(True) and alerter.dropped == accepted.count(False)
    assert not alerter.notify(EVENT) and alerter.dropped == accepted.count(False) + 1  # closed


async def test_close_gives_up_after_its_grace(receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    rec.delay = 1
    alerter = Alerter(fast(url, timeout=10))
    await alerter.start()
    alerter.notify(EVENT)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await alerter.close(grace=0.1)
    assert loop.time() - start < 1


async def test_log_line_per_state_change_even_without_webhook(caplog: pytest.LogCaptureFixture) -> None:
    alerter = Alerter()
    await alerter.start()
    with caplog.at_level(logging.INFO, logger="tokenward.alerts"):
        assert not alerter.notify(EVENT)
        alerter.notify(StateChange("spike/normal", "/v1/chat/completions", 2.0, "calm"))
    await alerter.close()
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    assert "spike/under_attack on /v1/chat/completions" in caplog.records[0].getMessage()
    assert caplog.records[0].tokenward_event["event"] == "spike/under_attack"  # type: ignore[attr-defined]


def test_settings_validation() -> None:
    with pytest.raises(ValidationError):
        AlertSettings.model_validate({"webhook": "ftp://x"})
    with pytest.raises(ValidationError):
        AlertSettings.model_validate({"webhook": "http://x", "max_attempts": 0})
    settings = AlertSettings.model_validate({"webhook": "https://hooks.example/T0k3n"})
    assert "T0k3n" not in repr(settings)


def test_settings_read_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "abc123")
    settings = AlertSettings.model_validate(
        {"webhook": "https://hooks.example/${HOOK_TOKEN}", "headers": {"authorization": "Bearer ${HOOK_TOKEN}"}}
    )
    assert settings.webhook is not None and settings.webhook.get_secret_value() == "https://hooks.example/abc123"
    assert settings.headers["authorization"].get_secret_value() == "Bearer abc123"
    monkeypatch.delenv("HOOK_TOKEN")
    with pytest.raises(ValidationError, match="HOOK_TOKEN"):
        AlertSettings.model_validate({"webhook": "https://hooks.example/${HOOK_TOKEN}"})
