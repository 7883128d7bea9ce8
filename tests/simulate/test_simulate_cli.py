"""``tokenward simulate`` end to end: the smoke profile against the shipped support-bot
policy (real subprocesses, real sockets, real Chromium), its JSON checked against the
bounds docs/simulate.md states, its HTML rendered offline in Chromium, and a
non-loopback target refused.

The smoke bounds are looser than the support bot's incident goals (attack success
<= 1%, legit false refusals <= 0.1%) only because a 25-second run has too few calls to
resolve them: a single stolen call of ~60 is 1.7%, so the smoke allows one.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUPPORT_BOT = ROOT / "examples" / "support-bot" / "policy.yaml"
CHROMIUM = Path("/usr/bin/chromium")

# Bounds for the smoke run of the shipped support-bot policy (docs/simulate.md).
SMOKE_MAX_ATTACK_SUCCESS = 0.02
SMOKE_MAX_LEGIT_FALSE_REFUSAL = 0.0
SMOKE_MAX_SECONDS = 55.0


def simulate_command() -> list[str]:
    """``tokenward simulate`` once the CLI mounts it; the same command function before."""
    from tokenward.cli import app

    mounted = any((c.name or getattr(c.callback, "__name__", "")) == "simulate" for c in app.registered_commands)
    if mounted:
        return [sys.executable, "-m", "tokenward.cli", "simulate"]
    return [sys.executable, "-m", "tokenward.cli_simulate"]


def run_simulate(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*simulate_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("smoke")
    started = time.monotonic()
    proc = run_simulate("--profile", "smoke", "--policy", str(SUPPORT_BOT), "--out", str(out), "--quiet", cwd=out)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    return {"out": out, "report": report, "elapsed": elapsed, "stderr": proc.stderr}


def test_smoke_stays_within_the_support_bot_bounds(smoke: dict[str, Any]) -> None:
    report = smoke["report"]
    attack, legit = report["attack"], report["legit"]
    assert attack["sent"] >= 30 and legit["calls"] >= 40, (attack, legit)
    assert attack["success_rate"] <= SMOKE_MAX_ATTACK_SUCCESS, report["actors"]
    assert legit["false_refusal_rate"] <= SMOKE_MAX_LEGIT_FALSE_REFUSAL, legit
    assert legit["added_ms_p50"] is not None and legit["added_ms_p50"] < 300
    # Every kind of actor took part, each through its real client.
    actors = {a["actor"]: a for a in report["actors"]}
    expected = {"legit-http", "adapter-openai", "impersonator", "native-solver"}
    if CHROMIUM.exists():
        expected |= {"legit-browser", "headless-farm", "stealth-farm"}
    assert expected <= {name for name, a in actors.items() if a["sent"] > 0}, actors
    # The gateway logged a decision for the calls, and they were attributed to actors.
    assert sum(sum(a["decisions"].values()) for a in report["actors"]) >= attack["sent"]
    assert report["spend"]["legit_usd"] > 0 and report["spend"]["unattributed_usd"] == 0
    assert [g["goal"] for g in report["goals"]][:2] == ["attack success rate", "legit false-refusal rate"]
    assert smoke["elapsed"] < SMOKE_MAX_SECONDS, f"the smoke run took {smoke['elapsed']:.0f}s"


def test_smoke_writes_markdown_and_prints_the_goals(smoke: dict[str, Any]) -> None:
    md = (smoke["out"] / "report.md").read_text()
    assert "## Goals" in md and "## Attacker economics" in md and "trusted_proxies" in md
    assert "attack success rate" in smoke["stderr"] and "report.html" in smoke["stderr"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing")
def test_report_html_renders_in_chromium_without_network(smoke: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    html = smoke["out"] / "report.html"
    requested: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            headless=True,
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})

            def intercept(route: Any) -> None:
                requested.append(route.request.url)
                if route.request.url.startswith(("file://", "about:", "data:")):
                    route.continue_()
                else:
                    route.abort()

            page.route("**/*", intercept)
            page.goto(html.as_uri())
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            charts = page.evaluate(
                """() => Array.from(document.querySelectorAll('svg.chart')).map((svg) => {
                    const box = svg.getBoundingClientRect();
                    const marks = Array.from(svg.querySelectorAll('path, rect')).filter((el) => {
                        const b = el.getBBox();
                        return b.width > 0 && b.height > 0;
                    });
                    return {w: box.width, h: box.height, marks: marks.length,
                            paths: Array.from(svg.querySelectorAll('path')).filter((p) =>
                                (p.getAttribute('d') || '').length > 10).length};
                })"""
            )
        finally:
            browser.close()
    assert [u for u in requested if not u.startswith(("file://", "about:", "data:"))] == []
    assert shot.stat().st_size > 20_000
    assert len(charts) >= 4, charts
    for chart in charts:
        assert chart["w"] > 300 and chart["h"] > 100 and chart["marks"] >= 3, chart
    # The traffic chart draws one area per actor that sent calls.
    assert charts[0]["paths"] >= 3, charts[0]


def test_a_non_loopback_target_is_refused(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_simulate("--profile", "smoke", "--target", "http://192.0.2.10:8080", "--out", str(tmp_path),
                        "--quiet", cwd=tmp_path, timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    message = " ".join(proc.stderr.split())
    assert "not a loopback address" in message and "--allow-non-loopback" in message
    assert time.monotonic() - started < 30
    assert not (tmp_path / "report.json").exists()


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_sigterm_stops_everything_the_run_started(tmp_path: Path) -> None:
    """A simulation stopped with SIGTERM takes its gateway, demo LLM and browsers with it."""
    import signal

    proc = subprocess.Popen(
        [*simulate_command(), "--profile", "smoke", "--policy", str(SUPPORT_BOT), "--out", str(tmp_path), "--quiet"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started: set[int] = set()
    deadline = time.monotonic() + 60
    # Wait until the run is under way: a gateway, a demo LLM and a browser below it.
    while time.monotonic() < deadline:
        started = _descendants(proc.pid)
        cmdlines = " ".join(_cmdline(p) for p in started)
        if "tokenward.cli serve" in cmdlines and "demo.upstream" in cmdlines and "chromium" in cmdlines:
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"the run did not start its services: {proc.stderr.read() if proc.stderr else ''}")
    time.sleep(2)
    started = _descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in started):
        time.sleep(0.25)
    left = {p: _cmdline(p)[:100] for p in started if _alive(p)}
    for p in left:  # do not leave them to the next test either
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)
    assert not left, left


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
