"""Risk: ordered rules, weighted signals, thresholds — the policy's face.

In the spirit of weighted bot rules: every signal carries a default weight that the
policy can override by name (or by family, ``client/*``); the request's risk is the sum.
Ordered ``rules`` match on what is known (address, headers, account, device, signals):
the first ``allow``/``deny``/``challenge`` rule that matches settles the question;
every matching ``weigh`` rule adds its weight. Ordered ``thresholds`` then map the
risk to an action. Validation lives in the models; evaluation never raises on input.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .decision import Signal

__all__ = [
    "DEFAULT_THRESHOLDS",
    "RiskEngine",
    "RiskResult",
    "Rule",
    "Threshold",
]


def check_cidrs(v: tuple[str, ...]) -> tuple[str, ...]:
    """A validator for settings that list CIDRs: every bad one named at once."""
    bad = []
    for cidr in v:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            bad.append(cidr)
    if bad:
        raise ValueError(f"not a CIDR: {', '.join(bad)}")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(_Strict):
    score: float = Field(description="applies when the risk is at least this")
    action: Literal["challenge", "throttle", "block", "degrade"]
    extra_bits: int = Field(4, ge=0, le=24, description="challenge: bits above the route's difficulty")
    retry_after: int = Field(60, ge=1, le=86_400, description="throttle: seconds in Retry-After")
    answered: Literal["allow", "degrade", "throttle", "block"] = Field(
        "degrade",
        description="challenge: what a call gets when its proof has the extra bits but its risk still "
        "reaches this threshold (nothing new about who sent it; allow: the harder proof is enough)",
    )
    automated: Literal["answered", "degrade", "throttle", "block"] = Field(
        "block",
        description="challenge: what an answered call gets instead when it still carries a sign of automation "
        "(no input behind a long prompt, webdriver, headless...) from a device with no clean calls "
        "(answered: the same as `answered`)",
    )


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(score=9, action="block"),
    Threshold(score=6, action="throttle", retry_after=60),
    Threshold(score=3, action="challenge", extra_bits=4),
)


class Rule(_Strict):
    """A rule matches when every condition it names matches (an empty rule never does)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    action: Literal["allow", "deny", "challenge", "weigh"]
    cidr: tuple[str, ...] = ()
    header: dict[str, str] = Field(default_factory=dict, description="header name -> regex (search)")
    account: tuple[str, ...] = ()
    device: tuple[str, ...] = ()
    signal: tuple[str, ...] = Field((), description="signal names (or family/*) that must be present")
    route: tuple[str, ...] = ()
    weight: float = Field(0.0, description="weigh: added to the risk")
    extra_bits: int = Field(4, ge=0, le=24, description="challenge: bits above the route's difficulty")

    @field_validator("cidr")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_cidrs(v)

    @field_validator("header")
    @classmethod
    def _regexes(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"header {name!r}: not a valid regex: {exc}") from None
        return {k.lower(): p for k, p in v.items()}

    @model_validator(mode="after")
    def _has_condition(self) -> Rule:
        if not (self.cidr or self.header or self.account or self.device or self.signal or self.route):
            raise ValueError(f"rule {self.name!r} has no condition (cidr, header, account, device, signal, route)")
        return self


@dataclass(frozen=True, slots=True)
class RuleInput:
    """What rules may look at."""

    ip: str
    headers: Mapping[str, str]
    account: str | None
    device: str | None
    route: str
    signals: frozenset[str]


class _CompiledRule:
    __slots__ = ("headers", "nets", "rule")

    def __init__(self, rule: Rule):
        self.rule = rule
        self.nets = tuple(ipaddress.ip_network(c, strict=False) for c in rule.cidr)
        self.headers = tuple((k, re.compile(p)) for k, p in rule.header.items())

    def matches(self, x: RuleInput) -> bool:
        r = self.rule
        if self.nets:
            try:
                addr = ipaddress.ip_address(x.ip)
            except ValueError:
                return False
            if not any(addr in n for n in self.nets):
                return False
        for name, pattern in self.headers:
            value = x.headers.get(name)
            if value is None or pattern.search(value) is None:
                return False
        if r.account and x.account not in r.account:
            return False
        if r.device and x.device not in r.device:
            return False
        if r.route and x.route not in r.route:
            return False
        return not r.signal or all(_has_signal(x.signals, s) for s in r.signal)


def _has_signal(present: frozenset[str], wanted: str) -> bool:
    if wanted.endswith("/*"):
        family = wanted[:-1]
        return any(s.startswith(family) for s in present)
    return wanted in present


@dataclass(frozen=True, slots=True)
class RiskResult:
    score: float
    contributions: tuple[tuple[str, float], ...]  # (signal or rule name, weight), non-zero only
    rule: Rule | None  # the settling allow/deny/challenge rule, if any
    threshold: Threshold | None  # the threshold the score reached, if any


class RiskEngine:
    """Compiled weights, rules and thresholds for one route."""

    def __init__(
        self,
        weights: Mapping[str, float],
        thresholds: Sequence[Threshold],
        rules: Iterable[Rule],
    ):
        self._exact = {k: v for k, v in weights.items() if not k.endswith("/*")}
        self._families = sorted(
            ((k[:-1], v) for k, v in weights.items() if k.endswith("/*")), key=lambda kv: -len(kv[0])
        )
        self.thresholds = tuple(sorted(thresholds, key=lambda t: -t.score))
        self._rules = tuple(_CompiledRule(r) for r in rules)
        self._spec = (tuple(sorted(weights.items())), self.thresholds, tuple(c.rule for c in self._rules))

    def __eq__(self, other: object) -> bool:  # policies compare equal when their engines do
        return isinstance(other, RiskEngine) and self._spec == other._spec

    __hash__ = None  # type: ignore[assignment]

    def most_extra_bits(self, route: str) -> int:
        """The most a ``challenge`` threshold or rule could add to ``route``'s difficulty."""
        bits = [t.extra_bits for t in self.thresholds if t.action == "challenge"]
        bits += [
            c.rule.extra_bits
            for c in self._rules
            if c.rule.action == "challenge" and route in (c.rule.route or (route,))
        ]
        return max(bits, default=0)

    def weight(self, signal: Signal) -> float:
        w = self._exact.get(signal.name)
        if w is not None:
            return w
        for family, fw in self._families:
            if signal.name.startswith(family):
                return fw
        return signal.score

    def assess(self, signals: Sequence[Signal], x: RuleInput) -> RiskResult:
        contributions: list[tuple[str, float]] = []
        total = 0.0
        for s in signals:
            w = self.weight(s)
            if w:
                contributions.append((s.name, w))
                total += w
        settled: Rule | None = None
        for compiled in self._rules:
            rule = compiled.rule
            if settled is not None and rule.action != "weigh":
                continue
            if compiled.matches(x):
                if rule.action == "weigh":
                    contributions.append((f"rule/{rule.name}", rule.weight))
                    total += rule.weight
                else:
                    settled = rule
        threshold = next((t for t in self.thresholds if total >= t.score), None)
        return RiskResult(round(total, 3), tuple(contributions), settled, threshold)


def risk_summary(result: RiskResult) -> dict[str, Any]:
    """The risk part of a decision's log record."""
    return {
        "score": result.score,
        "contributions": [list(c) for c in result.contributions],
        "rule": result.rule.name if result.rule else None,
        "threshold": result.threshold.score if result.threshold else None,
    }
