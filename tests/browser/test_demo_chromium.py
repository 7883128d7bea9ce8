"""End to end: `tokenward demo` (real gateway + demo LLM) driven by Chromium.

The chat page at /demo loads the SDK from the gateway (/.tokenward/sdk.js), proves every
request with a real challenge from the gateway's policy, and streams the demo model's
answer. Skipped only while the `tokenward` CLI has no `demo` command; once it has one,
a gateway that does not start is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

STARTUP_TIMEOUT = 45.0


def tokenward_command() -> list[str] | None:
    """The CLI as a user runs it: the installed script, else ``python -m tokenward.cli``."""
    script = Path(sys.executable).with_name("tokenward")
    if script.exists():
        return [str(script)]
    if importlib.util.find_spec("tokenward.cli") is not None:
        return [sys.executable, "-m", "tokenward.cli"]
    return None


def demo_command_missing(cmd: list[str] | None) -> str | None:
    if cmd is None:
        return "the tokenward CLI is not installed yet (no tokenward script, no tokenward.cli)"
    probe = subprocess.run([*cmd, "demo", "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"`tokenward demo` is not available yet: {(probe.stderr or probe.stdout)[-300:]}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    cmd = tokenward_command()
    reason = demo_command_missing(cmd)
    if reason:
        pytest.skip(reason)
    assert cmd is not None
    port = free_port()
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        [*cmd, "demo", "--port", str(port)],
        cwd=tmp_path,  # the demo policy keeps its SQLite log in the working directory
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # so teardown can stop the gateway and its demo LLM child
    )
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not health_ok(f"{url}/.tokenward/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                output = (tmp_path / "demo.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"`tokenward demo --port {port}` did not become healthy:\n{output}")
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


ANSWERS = '#messages div.msg.assistant[data-done="1"]'


async def ask(page, question: str, n: int) -> str:
    """Type a question, send it, and return the text of the n-th completed answer."""
    await page.fill("#prompt", question)
    await page.click("#send")
    await page.wait_for_function(
        "([selector, n]) => document.querySelectorAll(selector).length >= n",
        arg=[ANSWERS, n],
        timeout=60_000,
    )
    answer = page.locator(ANSWERS).nth(n - 1)
    text = (await answer.inner_text()).strip()
    is_error = await answer.evaluate("(e) => e.classList.contains('error')")
    assert not is_error, f"the demo page shows an error: {text!r}"
    return text


async def test_demo_chat_page_in_chromium(page_factory, demo_url):
    page = await page_factory(demo_url + "/demo")
    solve_ms = []

    first = await ask(page, "Why is the sky blue over Zürich today?", 1)
    assert first
    assert "Why is the sky blue over Zürich today?" in first  # the demo model echoes the topic
    proof = await page.evaluate("tokenward.lastProof")
    assert proof["route"] == "/v1/chat/completions"
    assert proof["difficulty"] >= 1 and proof["hashes"] >= 1
    solve_ms.append(proof["solveMs"])
    assert "bits" in await page.inner_text("#proof-stats")

    # A second request must get its own fresh challenge (prefetched after the first).
    second = await ask(page, "And what about sunsets in Kyoto?", 2)
    assert "And what about sunsets in Kyoto?" in second
    proof2 = await page.evaluate("tokenward.lastProof")
    solve_ms.append(proof2["solveMs"])

    print(
        f"\ndemo in Chromium: proofs of {proof['difficulty']} bits solved in "
        + ", ".join(f"{ms:.0f} ms" for ms in solve_ms)
        + f" ({proof['hashes']:,} and {proof2['hashes']:,} hashes,"
        f" {proof.get('workers')} worker(s))"
    )
    assert not [e for e in page.tw_errors if e.startswith("pageerror")], page.tw_errors
