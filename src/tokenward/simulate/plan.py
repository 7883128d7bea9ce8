"""The plan of a run: who arrives when, and which attackers can take part.

Arrival times are a Poisson process following the profile's rates, drawn up front from
the seed, so two runs with one seed offer the same traffic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .._extras import install_command, missing_modules
from ..policy import Policy
from .actors import Target
from .browsers import CHROMIUM, chromium_available
from .profiles import Profile, Timeline, poisson_arrivals

__all__ = ["Missing", "attack_kinds", "bucket_start", "missing_requirements", "plan_arrivals"]


def plan_arrivals(
    profile: Profile,
    timeline: Timeline,
    seed: int,
    browser_rpm: float,
    kinds: dict[str, float],
    max_requests: int | None,
) -> tuple[list[float], list[tuple[float, str]], float]:
    """Legit arrival times, ``(time, attacker kind)`` attack arrivals, and the run's end
    (earlier than the timeline's when ``max_requests`` cuts it short)."""
    rng = random.Random(seed)
    legit_peak = max(timeline.peak("legit") - browser_rpm, 0.0)
    legit = list(
        poisson_arrivals(lambda t: max(timeline.at(t)[1] - browser_rpm, 0.0), timeline.duration, rng, legit_peak)
    )
    attack: list[tuple[float, str]] = []
    names, weights = list(kinds), list(kinds.values())
    if names:
        for t in poisson_arrivals(lambda t: timeline.at(t)[2], timeline.duration, rng, timeline.peak("attack")):
            attack.append((t, rng.choices(names, weights=weights)[0]))
    end = timeline.duration
    if max_requests is not None:
        merged = sorted([(t, "legit") for t in legit] + attack)
        if len(merged) > max_requests:
            end = merged[max_requests - 1][0] + 1e-6
            legit = [t for t in legit if t < end]
            attack = [(t, k) for t, k in attack if t < end]
    return legit, attack, end


# The client library each actor is (tokenward[simulate] installs them all).
_NEEDS = {
    "adapter-openai": ("openai", "httpx2"),
    "adapter-anthropic": ("anthropic", "httpx2"),
    "impersonator": ("curl_cffi",),
    "headless-farm": ("playwright",),
    "stealth-farm": ("playwright",),
    "legit-browser": ("playwright",),
}
_BROWSER_ACTORS = ("legit-browser", "headless-farm", "stealth-farm")


@dataclass(frozen=True, slots=True)
class Missing:
    """What the actors a run would use need and this machine lacks."""

    modules: dict[str, tuple[str, ...]]  # actor -> missing Python modules
    chromium: tuple[str, ...]  # actors that need /usr/bin/chromium, when it is absent

    @property
    def actors(self) -> list[str]:
        return sorted(set(self.modules) | set(self.chromium))

    def __bool__(self) -> bool:
        return bool(self.modules or self.chromium)

    def reasons(self) -> dict[str, str]:
        """actor -> why it cannot run here."""
        out = {a: f"{', '.join(m)} not installed" for a, m in self.modules.items()}
        for a in self.chromium:
            out.setdefault(a, f"no Chromium at {CHROMIUM}")
        return out

    def error(self) -> str:
        """One line: what is missing, for which actors, and how to install it."""
        parts = []
        if self.modules:
            mods = sorted({m for ms in self.modules.values() for m in ms})
            parts.append(
                f"missing Python modules {', '.join(mods)} (needed by {', '.join(sorted(self.modules))}): "
                f"install them with {install_command('simulate')}"
            )
        if self.chromium:
            parts.append(
                f"no Chromium at {CHROMIUM} (needed by {', '.join(self.chromium)}): apt-get install chromium, "
                "or pass --no-browsers"
            )
        return "tokenward simulate: " + "; ".join(parts) + "; or pass --skip-missing to run without those actors"


def missing_requirements(profile: Profile, browsers: bool) -> Missing:
    """The actors this profile uses (attackers with a weight; Chromium users when
    ``browsers``) whose client library or browser is missing here."""
    used = [k for k, a in profile.attackers.items() if a.weight > 0]
    if browsers and profile.legit.browser_pages > 0:
        used.append("legit-browser")
    if not browsers:
        used = [k for k in used if k not in _BROWSER_ACTORS]
    modules = {}
    for actor in used:
        gone = missing_modules(_NEEDS.get(actor, ()))
        if gone:
            modules[actor] = tuple(gone)
    chromium = tuple(a for a in used if a in _BROWSER_ACTORS) if not CHROMIUM.exists() else ()
    return Missing(modules, chromium)


def attack_kinds(profile: Profile, target: Target, browsers: bool, notes: list[str]) -> dict[str, float]:
    kinds = {k: a.weight for k, a in profile.attackers.items() if a.weight > 0}
    for kind, modules in _NEEDS.items():
        missing = missing_modules(modules)
        if kind in kinds and missing:
            kinds.pop(kind)
            notes.append(f"{kind}: NOT RUN ({', '.join(missing)} not installed; --skip-missing); "
                         "its share went to the other attackers")  # fmt: skip
    if "adapter-anthropic" in kinds and target.anthropic_route is None:
        kinds.pop("adapter-anthropic")
        notes.append("adapter-anthropic: the target has no Anthropic route; its share went to the other attackers")
    for farm in ("headless-farm", "stealth-farm"):
        if farm in kinds and not (browsers and chromium_available()):
            kinds.pop(farm)
            why = "browsers are off (--no-browsers)" if not browsers else f"Chromium ({CHROMIUM}) or playwright missing"
            notes.append(f"{farm}: {why}; its share went to the other attackers")
    total = sum(kinds.values())
    return {k: v / total for k, v in kinds.items()} if total else {}


def bucket_start(policy: Policy | None, timeline: Timeline, earliest: float) -> float | None:
    """The next start of a spike-rate bucket, when the run is long enough for the spike
    detector to decide anything before the attack (else None: start at once)."""
    if policy is None or not policy.spike.enabled:
        return None
    bucket = policy.spike.bucket
    first_attack = next((start for _, start, _, attacked in timeline.windows() if attacked), timeline.duration)
    if first_attack < (policy.spike.warmup + 1) * bucket:
        return None
    return math.ceil(earliest / bucket) * bucket + 0.05
