"""The simulator's parts without a run: profiles, timelines, the loopback guard, the
simulation policy, the native solver, call classification and report arithmetic."""

from __future__ import annotations

import random
import secrets
from pathlib import Path

import pytest
import yaml

from tokenward.proof.challenge import solve
from tokenward.signals.browser import BrowserEnv, parse_env
from tokenward.simulate.native import native_available, native_solve
from tokenward.simulate.population import ATTACK_NET, LEGIT_NET, IpPool, make_persona, signals_value
from tokenward.simulate.profiles import ProfileError, Timeline, builtin_profiles, load_profile, poisson_arrivals
from tokenward.simulate.records import Attempt, CallRecord, classify
from tokenward.simulate.report import percentile
from tokenward.simulate.services import is_loopback_url, simulation_policy

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_profiles_load() -> None:
    assert {"incident", "steady", "smoke"} <= set(builtin_profiles())
    incident = load_profile("incident")
    t = Timeline(incident)
    assert t.at(30 * 60)[1:] == (130, 0)  # baseline
    _, legit, attack = t.at(t.windows()[2][1] + 60)  # the plateau
    assert legit + attack == pytest.approx(1300)
    assert load_profile("smoke").timeline and Timeline(load_profile("smoke")).duration < 60


def test_duration_scale_and_hold_resize_the_timeline() -> None:
    incident = load_profile("incident")
    full = Timeline(incident)
    short = Timeline(incident, duration_scale=0.1, hold_minutes=5)
    plateau = next(p for p, _ in full.phases if p.hold)
    assert short.duration == pytest.approx(full.duration * 0.1 - (plateau.minutes - 5) * 60 * 0.1)
    assert short.peak("attack") == full.peak("attack")  # rates are never scaled


def test_profile_errors_name_their_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "timeline": [{"name": "a", "minutes": 1, "legit_rpm": 10, "attack_rpm": 5}],
                "attackers": {"bots": {"weight": 1}},
            }
        )
    )
    with pytest.raises(ProfileError, match="attackers"):
        load_profile(str(bad))
    with pytest.raises(ProfileError, match="not a shipped profile"):
        load_profile(str(tmp_path / "missing.yaml"))


def test_poisson_arrivals_follow_the_rate() -> None:
    rng = random.Random(3)
    times = list(poisson_arrivals(lambda t: 600.0 if t < 60 else 60.0, 120, rng, 600.0))
    first = sum(1 for t in times if t < 60)
    assert 520 < first < 680 and 35 < len(times) - first < 90


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:8080", True), ("http://localhost:1", True), ("http://app.localhost", True),
        ("http://[::1]:80/x", True), ("http://127.9.9.9", True),
        ("http://192.0.2.10:8080", False), ("https://example.com", False), ("http://10.0.0.1", False),
        ("http://localhost.example.com", False), ("ftp://127.0.0.1", False), ("not a url", False),
    ],
)  # fmt: skip
def test_only_loopback_targets_pass(url: str, ok: bool) -> None:
    assert is_loopback_url(url) is ok


def test_simulation_policy_forces_its_settings(tmp_path: Path) -> None:
    sim = simulation_policy(
        ROOT / "examples" / "support-bot" / "policy.yaml", upstream="http://127.0.0.1:9", work_dir=tmp_path,
        alerts_url="http://127.0.0.1:10/alerts", duration_scale=0.2,
    )  # fmt: skip
    p = sim.policy
    assert "127.0.0.1/32" in p.trusted_proxies
    assert p.upstream is not None and p.upstream.url == "http://127.0.0.1:9"
    assert p.alerts.webhook is not None and p.alerts.webhook.get_secret_value() == "http://127.0.0.1:10/alerts"
    assert p.store == "memory://" and str(tmp_path) in p.log
    assert p.identity.jwt is not None and p.identity.jwt.key is not None and sim.jwt_key
    assert p.spike.warmup == 6 and p.spike.half_life == pytest.approx(720) and p.spike.cool_down == pytest.approx(60)
    assert p.route_for("/demo") is not None
    assert any("trusted_proxies" in n for n in sim.notes) and any("spike" in n for n in sim.notes)
    assert sim.path.read_text().startswith("# Written by `tokenward simulate`")


def test_native_solver_agrees_with_the_reference() -> None:
    if not native_available():
        pytest.skip("no C compiler: the simulator falls back to the Python solver")
    for _ in range(5):
        challenge = secrets.token_urlsafe(82)
        body = secrets.token_bytes(300)
        assert native_solve(challenge, body, 12, b"sig") == solve(challenge, body, 12, b"sig")


def test_address_pools_are_disjoint_and_spread() -> None:
    import ipaddress

    legit = IpPool(random.Random(1), LEGIT_NET, 2000, 800)
    attack = IpPool(random.Random(2), ATTACK_NET, 6000, 2400)
    assert not set(legit.addresses) & set(attack.addresses)
    subnets = {ipaddress.ip_network(f"{a}/24", strict=False) for a in attack.addresses}
    assert len(attack) == 6000 and len(subnets) == 2400


def test_persona_reports_parse_as_a_consistent_browser() -> None:
    rng = random.Random(4)
    for _ in range(30):
        persona = make_persona(rng)
        env = parse_env(signals_value(persona, now=1_800_000_000, input_counts={"keys": 60, "chars": 55}))
        assert isinstance(env, BrowserEnv) and env.invalid == ()
        assert env.ua == persona.ua and not env.webdriver and not env.headless_markers


def test_classify_and_record() -> None:
    assert classify(200, "allow", None, True) == "allowed"
    assert classify(200, "degrade", None, True) == "degraded"
    assert classify(401, "challenge", "challenge", False) == "challenged"
    assert classify(429, "throttle", "budget_exhausted", False) == "throttled"
    assert classify(503, "throttle", "spend_limit", False) == "spend_limit"
    assert classify(502, None, "upstream_unavailable", False) == "error"
    rec = CallRecord(actor="a", side="attack", t_arrival=0.0)
    rec.add(Attempt(0, 0.1, 401, "challenge", "r1", "challenge", nonce=9))
    rec.add(Attempt(0.2, 0.3, 200, "allow", "r2", upstream=True, nonce=99))
    assert rec.challenged and rec.reached_upstream and rec.hashes == 110 and rec.request_ids == ["r1", "r2"]
    assert CallRecord.from_json(rec.to_json()).to_json() == rec.to_json()


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
