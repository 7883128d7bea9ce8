"""Rate limits over the Store, keyed by who is asking.

A limit names a key — device, account, ip, subnet, route or global — a count and a
window. Keys are what survives IP rotation: one device rotating through 500 addresses
is still one device, and 500 devices behind one /24 are one subnet. Every limit of a
request is one ``Hit`` in the request's store batch. Spend budgets use the same keys:
:mod:`tokenward.money.budgets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .store import Hit, WindowResult

__all__ = ["KeyKind", "Keys", "LimitSpec", "LimitVerdict", "limit_ops", "limit_verdict"]

KeyKind = Literal["device", "account", "ip", "subnet", "route", "global"]


class LimitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    key: KeyKind
    limit: float = Field(gt=0, description="requests per window")
    window: float = Field(gt=0, le=86_400 * 7, description="seconds")
    routes: tuple[str, ...] = Field((), description="route paths it applies to; empty: all protected")
    fallback: Literal["ip", "subnet", "skip"] = Field(
        "ip", description="device/account limits: what to key by when the request has none"
    )


@dataclass(frozen=True, slots=True)
class Keys:
    """The identities of one request, as limit and history keys."""

    ip: str
    subnet: str
    route: str
    device: str | None = None
    account: str | None = None

    def value(self, kind: KeyKind, fallback: str = "skip") -> str | None:
        if kind == "global":
            return "*"
        if kind == "route":
            return self.route
        if kind == "ip":
            return self.ip
        if kind == "subnet":
            return self.subnet
        own = self.device if kind == "device" else self.account
        if own is not None:
            return own
        if fallback == "ip":
            return "ip:" + self.ip
        if fallback == "subnet":
            return "subnet:" + self.subnet
        return None


def limit_ops(specs: Sequence[LimitSpec], keys: Keys, *, cost: float = 1.0) -> list[tuple[LimitSpec, Hit]]:
    """The Hit of every limit that applies to this request (``cost=0`` only reads)."""
    out = []
    for spec in specs:
        if spec.routes and keys.route not in spec.routes:
            continue
        value = keys.value(spec.key, spec.fallback)
        if value is None:
            continue
        out.append((spec, Hit(f"lim:{spec.name}:{value}", spec.limit, spec.window, cost)))
    return out


@dataclass(frozen=True, slots=True)
class LimitVerdict:
    spec: LimitSpec
    result: WindowResult


def _fallback_keyed(spec: LimitSpec, hit: Hit) -> bool:
    """The device limit counted the request by its address (it had no verified device)."""
    rest = hit.key[len(spec.name) + 5 :]  # after "lim:<name>:"
    return rest.startswith(("ip:", "subnet:"))


def limit_verdict(
    planned: Sequence[tuple[LimitSpec, Hit]], results: Sequence[WindowResult], *, device_share: float = 1.0
) -> LimitVerdict | None:
    """The first limit the request went over, if any. ``device_share`` (< 1: a device
    still earning its limits, devices.ramp) scales the limits keyed by the device: the
    store counted against the whole limit, the request is over when its count passes the
    share of it."""
    for (spec, hit), result in zip(planned, results, strict=True):
        if not result.allowed:
            return LimitVerdict(spec, result)
        if device_share < 1.0 and spec.key == "device" and not _fallback_keyed(spec, hit):
            allowed = spec.limit * device_share
            if result.count > allowed:
                # Until enough of the window's count has slid out to let one more in.
                retry = spec.window * min(1.0, (result.count - allowed) / result.count)
                return LimitVerdict(spec, WindowResult(False, result.count, allowed, retry))
    return None
