"""Session fixtures: one capture server, the real clients' requests, two real browsers.

Everything is captured once per session and handed to the tests as plain data
(:class:`Capture`), so the signal tests themselves are fast pure-function checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .browsers import CHROMIUM, capture_browser
from .capture import Capture, CaptureServer, capture_python_clients


@dataclass
class Captured:
    server: CaptureServer
    labels: list[str]

    def one(self, label: str) -> Capture:
        found = self.server.app.by_label(label)
        if not found:
            pytest.skip(f"no capture for {label!r} (client not installed?)")
        return found[-1]

    def all(self, label: str) -> list[Capture]:
        return self.server.app.by_label(label)


@pytest.fixture(scope="session")
def capture_server() -> Iterator[CaptureServer]:
    server = CaptureServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def captured(capture_server: CaptureServer) -> Captured:
    """Requests from the openai and anthropic SDKs, httpx, requests, aiohttp, curl,
    node's fetch and curl_cffi impersonating Chrome (browser captures join them once the
    ``browsers`` fixture ran)."""
    labels = list(capture_python_clients(capture_server.url))
    return Captured(capture_server, labels)


@pytest.fixture(scope="session")
def browsers(capture_server: CaptureServer) -> dict[str, dict[str, Any]]:
    """Headless Chromium and the headed-like profile, each sending SDK-proved requests."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install the Debian 'chromium' package")
    return {
        "headless": capture_browser(capture_server.url, "headless", headed_like=False),
        "headed": capture_browser(capture_server.url, "headed", headed_like=True),
    }
