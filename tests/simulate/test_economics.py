"""Attacker economics (issue 16): for each attacker, what one device key, one proxy
address and one CPU-second bought it, and what a stolen call cost it, at the profile's
stated prices (a farm's browser time priced as hosted browsers). Computed by the real
report from a run's records, and printed in both report formats."""

from __future__ import annotations

import time

import pytest

from tokenward.simulate.profiles import Timeline, load_profile
from tokenward.simulate.records import CallRecord
from tokenward.simulate.render import render_html, render_markdown
from tokenward.simulate.report import build_report
from tokenward.simulate.rundata import RunData, SimulationSettings


def record(
    actor: str, i: int, *, stolen: bool, ip: str, device: bool, cpu_s: float = 0.0, hashes: int = 0
) -> CallRecord:
    t = time.time()
    return CallRecord(
        actor=actor, side="attack", t_arrival=t + i, ip=ip, t_start=t + i, t_end=t + i + 1,
        outcome="allowed" if stolen else "refused", status=200 if stolen else 401,
        cpu_s=cpu_s, hashes=hashes, new_device=device, bytes_up=1000, bytes_down=4000,
    )  # fmt: skip


@pytest.fixture
def report() -> dict:
    profile = load_profile("smoke")
    # A farm: a fresh context (device) and address per call, 2 browser-seconds each; 2 of 8 get through.
    farm = [record("headless-farm", i, stolen=i < 2, ip=f"198.51.100.{i}", device=True, cpu_s=2.0) for i in range(8)]
    # An adapter: one device for all, 3 addresses, proofs at 1e6 hashes each; 3 of 6 through.
    adapter = [
        record("sdk-adapter", i, stolen=i % 2 == 0, ip=f"203.0.113.{i % 3}", device=i == 0, hashes=1_000_000)
        for i in range(6)
    ]
    t0 = min(r.t_arrival for r in farm + adapter)
    data = RunData(
        profile=profile, settings=SimulationSettings(profile="smoke"), timeline=Timeline(profile), t0=t0,
        t_end=t0 + 60, seed=1, records=farm + adapter, log_rows=[], alerts=[], notes=[], policy=None,
        policy_source="test", target="test", control_ttfb_ms=None, hash_rate=500_000.0,
        attack_kinds={"headless-farm": 0.5, "sdk-adapter": 0.5},
    )  # fmt: skip
    return build_report(data)


def test_yields_per_device_address_and_cpu_second(report: dict) -> None:
    econ = {e["actor"]: e for e in report["economics"]}
    farm, adapter = econ["headless-farm"], econ["sdk-adapter"]
    assert (farm["devices"], farm["addresses"], farm["stolen"]) == (8, 8, 2)
    assert farm["stolen_per_device"] == pytest.approx(0.25) and farm["stolen_per_address"] == pytest.approx(0.25)
    assert farm["stolen_per_cpu_s"] == pytest.approx(2 / 16)
    assert (adapter["devices"], adapter["addresses"], adapter["stolen"]) == (1, 3, 3)
    assert adapter["stolen_per_device"] == 3 and adapter["stolen_per_address"] == 1
    assert adapter["stolen_per_cpu_s"] == pytest.approx(3 / (6 * 1_000_000 / 500_000))


def test_a_farm_pays_for_browser_hours_not_core_hours(report: dict) -> None:
    prices = report["economics_total"]["prices"]
    farm = next(e for e in report["economics"] if e["actor"] == "headless-farm")
    traffic = 8 * 5000 / 1e9 * prices["proxy_usd_per_gb"]
    assert farm["cost_usd"] == pytest.approx(traffic + 16 / 3600 * prices["browser_usd_per_hour"], abs=1e-6)
    assert farm["cost_per_stolen_call_usd"] == pytest.approx(farm["cost_usd"] / 2, rel=1e-3)


def test_both_reports_show_the_yields(report: dict) -> None:
    md, html = render_markdown(report), render_html(report)
    for text in (md, html):
        assert "stolen / device" in text and "stolen / CPU-second" in text and "headless browser" in text
    assert "| headless-farm | 8 | 8 | 0.25 | 0.25 | 0.125 |" in md
