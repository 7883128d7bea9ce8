"""The plan of a run: who arrives when, and which attackers can take part.

Arrival times are a Poisson process following the profile's rates, drawn up front from
the seed, so two runs with one seed offer the same traffic.
"""

from __future__ import annotations

import importlib.util
import math
import random

from ..policy import Policy
from .actors import Target
from .browsers import chromium_available
from .profiles import Profile, Timeline, poisson_arrivals

__all__ = ["attack_kinds", "bucket_start", "plan_arrivals"]


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


# The client library each attacker is (tokenward[simulate] installs them all).
_NEEDS = {
    "adapter-openai": ("openai", "httpx2"),
    "adapter-anthropic": ("anthropic", "httpx2"),
    "impersonator": ("curl_cffi",),
    "headless-farm": ("playwright",),
}


def attack_kinds(profile: Profile, target: Target, browsers: bool, notes: list[str]) -> dict[str, float]:
    kinds = {k: a.weight for k, a in profile.attackers.items() if a.weight > 0}
    for kind, modules in _NEEDS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if kind in kinds and missing:
            kinds.pop(kind)
            notes.append(f"{kind}: {', '.join(missing)} not installed (pip install 'tokenward[simulate]'); "
                         "its share went to the other attackers")  # fmt: skip
    if "adapter-anthropic" in kinds and target.anthropic_route is None:
        kinds.pop("adapter-anthropic")
        notes.append("adapter-anthropic: the target has no Anthropic route; its share went to the other attackers")
    if "headless-farm" in kinds and not (browsers and chromium_available()):
        kinds.pop("headless-farm")
        why = (
            "browsers are off (--no-browsers)" if not browsers else "Chromium (/usr/bin/chromium) or playwright missing"
        )
        notes.append(f"headless-farm: {why}; its share went to the other attackers")
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
