"""Spend budgets over the Store, keyed by who is asking.

A budget names a key — device, account, ip, subnet, route or global, the same keys as
the rate limits of :mod:`tokenward.limits` — a dollar amount and a window. Every budget
of a request is one ``Budget`` in the request's ``Reserve``: its worst-case cost is held
against each of them atomically, and settled to the exact cost after the response.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..limits import KeyKind, Keys
from ..store import Budget

__all__ = ["BudgetSpec", "budgets_for"]


class BudgetSpec(BaseModel):
    """A spending budget: at most ``usd`` of upstream cost per ``window`` seconds per key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    key: KeyKind
    usd: float = Field(gt=0, description="dollars per window")
    window: float = Field(gt=0, le=86_400 * 31, description="seconds (fixed windows: 60, 3600, 86400...)")
    routes: tuple[str, ...] = Field((), description="route paths it applies to; empty: all protected")
    fallback: Literal["ip", "subnet", "skip"] = Field(
        "ip", description="device/account budgets: what to key by when the request has none"
    )


def budgets_for(
    specs: Sequence[BudgetSpec],
    keys: Keys,
    *,
    tighten: float = 1.0,
    device_share: float | None = None,
    one_call: float = 0.0,
) -> list[Budget]:
    """The budgets a request reserves against. ``tighten`` scales device and account
    budgets (under attack, new identities get less). ``device_share`` (devices.ramp)
    replaces it for the budgets keyed by the request's verified device: the device's
    earned share says how new it is. A share never leaves a device less than
    ``one_call`` (the call's worst case): a device that could not make one call could
    never earn more."""
    out = []
    for spec in specs:
        if spec.routes and keys.route not in spec.routes:
            continue
        value = keys.value(spec.key, spec.fallback)
        if value is None:
            continue
        usd = spec.usd * (tighten if spec.key in ("device", "account") else 1.0)
        if spec.key == "device" and keys.device is not None and device_share is not None:
            usd = max(spec.usd * device_share, min(spec.usd, one_call))
        out.append(Budget(f"bud:{spec.name}:{value}", usd, spec.window))
    return out
