"""Traffic profiles: a YAML timeline of legit and attack request rates, the actors'
settings, the attackers' prices and the goals the report checks.

Shipped profiles (``tokenward/simulate/profiles/``): ``incident`` (an hour of normal
traffic, a ramp to 10x from attackers, held, then back), ``steady`` (legit users only,
to measure friction) and ``smoke`` (under a minute, for CI). Any other YAML file with
the same shape can be given by path.

Rates are requests per minute of *real* time. ``duration_scale`` compresses the
timeline's durations but never its rates: a 0.1-scaled incident is the same traffic for
a tenth of the time (see docs/simulate.md for what that changes in the gateway).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ATTACKER_KINDS",
    "AttackerSpec",
    "Economics",
    "Goals",
    "LegitSettings",
    "Phase",
    "Profile",
    "ProfileError",
    "Timeline",
    "builtin_profiles",
    "load_profile",
    "poisson_arrivals",
]

ATTACKER_KINDS = (
    "adapter-openai",
    "adapter-anthropic",
    "impersonator",
    "native-solver",
    "headless-farm",
    "stealth-farm",
)


class ProfileError(ValueError):
    """A profile that cannot be used (every problem, with its location)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Range = tuple[float, float]


def _ordered(v: Range) -> Range:
    if v[0] > v[1] or v[0] < 0:
        raise ValueError("a range is [low, high] with 0 <= low <= high")
    return v


class Phase(_Strict):
    name: str
    minutes: float = Field(gt=0, description="length of the phase (before --duration-scale)")
    legit_rpm: float | Range = Field(description="legit requests per minute, or [from, to] for a ramp")
    attack_rpm: float | Range = Field(0.0, description="attack requests per minute, or [from, to] for a ramp")
    hold: bool = Field(False, description="the phase --hold-minutes resizes (the spike's plateau)")

    def rates_at(self, fraction: float) -> tuple[float, float]:
        def at(v: float | Range) -> float:
            return v if isinstance(v, int | float) else v[0] + (v[1] - v[0]) * fraction

        return at(self.legit_rpm), at(self.attack_rpm)

    @property
    def attacked(self) -> bool:
        a = self.attack_rpm
        return (a if isinstance(a, int | float) else max(a)) > 0


class LegitSettings(_Strict):
    users: int = Field(1500, ge=1, description="about how many distinct people take part (sizes their address pool)")
    new_account_share: float = Field(0.03, ge=0, le=1, description="users who signed up today")
    browser_pages: int = Field(2, ge=0, description="real Chromium users at any time (the rest: HTTP model)")
    browser_messages: Range = Field((2, 5), description="messages per Chromium session")
    think_seconds: Range = Field((6, 30), description="pause before typing the next message")
    typing_cps: Range = Field((5, 10), description="characters typed per second")
    paste_share: float = Field(0.1, ge=0, le=1, description="users who paste part of their question")
    keyboard_only_share: float = Field(
        0.1, ge=0, le=1, description="Chromium users who reach the prompt with Tab, never touching a pointer"
    )
    small_screen_share: float = Field(0.2, ge=0, le=1, description="Chromium users on a phone-sized screen")
    session_messages: Range = Field((1, 6), description="messages per conversation (HTTP model)")
    concurrency: int = Field(200, ge=1, description="legit calls in flight at most (beyond: not sent, reported)")

    _ranges = field_validator("browser_messages", "think_seconds", "typing_cps", "session_messages")(_ordered)


class AttackerSpec(_Strict):
    weight: float = Field(ge=0, description="share of the attack rate")
    concurrency: int = Field(24, ge=1, description="calls in flight at most; arrivals beyond are not sent")
    ip_every: int = Field(1, ge=1, description="calls per residential proxy exit before rotating")
    device_every: int | None = Field(
        5, ge=1, description="calls per device key before making a new one; null: never registers one"
    )
    account_every: int = Field(10, ge=1, description="calls per throwaway account (when the target has accounts)")
    disposable_share: float = Field(0.8, ge=0, le=1, description="throwaway accounts on disposable-mail domains")
    max_difficulty: int = Field(24, ge=0, le=40, description="harder challenges are abandoned (not worth the CPU)")


class ProxyPool(_Strict):
    ips: int = Field(6000, ge=1, description="residential proxy exits the attackers rotate through")
    subnets: int = Field(2400, ge=1, description="distinct /24s they are spread over")
    legit_subnets: int = Field(3000, ge=1, description="distinct /24s of the legit users' addresses")


class Economics(_Strict):
    """What an attacker pays, and what a stolen call sells for."""

    proxy_usd_per_gb: float = Field(4.0, ge=0, description="residential proxy traffic, USD per GB")
    account_usd: float = Field(0.02, ge=0, description="one throwaway account (disposable inbox, CAPTCHA solving)")
    compute_usd_per_core_hour: float = Field(0.04, ge=0, description="rented CPU, USD per core-hour")
    browser_usd_per_hour: float = Field(
        0.10, ge=0, description="a hosted headless browser, USD per browser-hour (a farm pays this, not core-hours)"
    )
    resale_fraction: float = Field(
        0.5, ge=0, description="what a stolen call sells for, as a share of what it cost the victim upstream"
    )


class Goals(_Strict):
    """Targets the report checks (the acceptance goals of the support-bot example)."""

    attack_success_max: float = Field(0.01, ge=0, le=1)
    legit_false_refusal_max: float = Field(0.001, ge=0, le=1)
    legit_p50_added_ms_max: float = Field(300, ge=0)
    spike_spend_ratio_max: float = Field(1.2, ge=0)


class Profile(_Strict):
    name: str
    description: str = ""
    seed: int = 1
    timeline: tuple[Phase, ...] = Field(min_length=1)
    legit: LegitSettings = Field(default_factory=LegitSettings)
    attackers: dict[str, AttackerSpec] = Field(default_factory=dict)
    proxies: ProxyPool = Field(default_factory=ProxyPool)
    economics: Economics = Field(default_factory=Economics)
    goals: Goals = Field(default_factory=Goals)
    drain_seconds: float = Field(20, ge=0, description="wait at most this long for calls still in flight")
    legit_model: Literal["demo-1", "demo-mini"] = "demo-1"

    @field_validator("attackers")
    @classmethod
    def _known(cls, v: dict[str, AttackerSpec]) -> dict[str, AttackerSpec]:
        unknown = sorted(set(v) - set(ATTACKER_KINDS))
        if unknown:
            raise ValueError(f"unknown attacker(s) {', '.join(unknown)}; known: {', '.join(ATTACKER_KINDS)}")
        return v

    @model_validator(mode="after")
    def _weights(self) -> Profile:
        if any(p.attacked for p in self.timeline) and not any(a.weight > 0 for a in self.attackers.values()):
            raise ValueError("the timeline has attack traffic but no attacker has a weight")
        return self


def builtin_profiles() -> list[str]:
    folder = resources.files("tokenward.simulate") / "profiles"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name (``incident``, ``steady``, ``smoke``) or a YAML file."""
    if name_or_path in builtin_profiles():
        text = (resources.files("tokenward.simulate") / "profiles" / f"{name_or_path}.yaml").read_text()
        source = f"profile {name_or_path}"
    else:
        path = Path(name_or_path)
        try:
            text = path.read_text()
        except OSError as exc:
            known = ", ".join(builtin_profiles())
            raise ProfileError(f"{name_or_path}: not a shipped profile ({known}) nor a readable file: {exc}") from None
        source = str(path)
    try:
        data = yaml.safe_load(text)
        return Profile.model_validate(data)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        lines = [f"  - {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)]
        raise ProfileError(f"{source} has {len(lines)} problem(s):\n" + "\n".join(lines)) from None


class Timeline:
    """The profile's phases in seconds of real time, after scaling."""

    def __init__(self, profile: Profile, *, duration_scale: float = 1.0, hold_minutes: float | None = None):
        if not (duration_scale > 0 and math.isfinite(duration_scale)):
            raise ValueError("duration scale must be a positive number")
        phases = []
        for p in profile.timeline:
            minutes = hold_minutes if (p.hold and hold_minutes is not None) else p.minutes
            phases.append((p, minutes * 60 * duration_scale))
        self.phases = phases
        self.scale = duration_scale
        self.duration = sum(d for _, d in phases)

    def at(self, t: float) -> tuple[str, float, float]:
        """(phase name, legit rpm, attack rpm) at ``t`` seconds from the start."""
        start = 0.0
        for phase, length in self.phases:
            if t < start + length:
                legit, attack = phase.rates_at((t - start) / length)
                return phase.name, legit, attack
            start += length
        return "end", 0.0, 0.0

    def windows(self) -> list[tuple[str, float, float, bool]]:
        """(name, start, end, attacked) of every phase, in seconds from the start."""
        out, start = [], 0.0
        for phase, length in self.phases:
            out.append((phase.name, start, start + length, phase.attacked))
            start += length
        return out

    def peak(self, side: Literal["legit", "attack"]) -> float:
        values = []
        for phase, _ in self.phases:
            v = phase.legit_rpm if side == "legit" else phase.attack_rpm
            values.append(v if isinstance(v, int | float) else max(v))
        return max(values, default=0.0)


def poisson_arrivals(
    rate_per_minute: Callable[[float], float], duration: float, rng: random.Random, peak_rpm: float
) -> Iterator[float]:
    """Arrival times (seconds) of a Poisson process whose rate follows
    ``rate_per_minute(t)`` (thinning against the peak rate)."""
    if peak_rpm <= 0:
        return
    lam = peak_rpm / 60.0
    t = 0.0
    while True:
        t += rng.expovariate(lam)
        if t >= duration:
            return
        if rng.random() * peak_rpm <= rate_per_minute(t):
            yield t
