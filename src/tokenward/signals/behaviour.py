"""Behaviour signals: what this device, account and subnet have been doing lately.

The guard fetches the numbers (``History``) in the request's single store batch; the
functions here only read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..decision import Signal
from ..store import CadenceResult

__all__ = ["BehaviourSettings", "DeviceCheck", "History", "behaviour_signals", "device_signals"]


class BehaviourSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: float = Field(3600, gt=0, le=86_400 * 7, description="seconds the distinct counts look back")
    max_ips_per_device: int = Field(8, ge=1, description="addresses one device may use per window")
    max_ips_per_account: int = Field(12, ge=1)
    max_devices_per_subnet: int = Field(64, ge=1, description="devices seen behind one /24 (/48) per window")
    max_accounts_per_device: int = Field(3, ge=1)
    max_inflight_per_device: int = Field(4, ge=1, description="concurrent requests per device (or address)")
    clockwork_cv: float = Field(
        0.1, ge=0, le=1, description="intervals this regular (coefficient of variation) look scripted"
    )
    clockwork_min_requests: int = Field(12, ge=3)
    unredeemed_ratio: float = Field(4.0, gt=1, description="challenges fetched per proof redeemed, per subnet")
    unredeemed_min: int = Field(40, ge=1, description="challenges fetched before the ratio counts")
    max_registrations_per_subnet: int = Field(20, ge=1, description="device registrations per subnet per window")


@dataclass(frozen=True, slots=True)
class History:
    """Numbers the store returned for this request (None: not measured)."""

    ips_per_device: int | None = None
    ips_per_account: int | None = None
    devices_per_subnet: int | None = None
    accounts_per_device: int | None = None
    inflight: int | None = None
    cadence: CadenceResult | None = None
    challenges_issued: float | None = None
    proofs_redeemed: float | None = None
    registrations: float | None = None
    rates: dict[str, float] = field(default_factory=dict)  # limit name -> weighted count


def behaviour_signals(h: History, cfg: BehaviourSettings) -> list[Signal]:
    out: list[Signal] = []
    if h.ips_per_device is not None and h.ips_per_device > cfg.max_ips_per_device:
        out.append(Signal("behaviour/device-ip-churn", 3.0, {"ips": h.ips_per_device}))
    if h.ips_per_account is not None and h.ips_per_account > cfg.max_ips_per_account:
        out.append(Signal("behaviour/account-ip-churn", 2.0, {"ips": h.ips_per_account}))
    if h.devices_per_subnet is not None and h.devices_per_subnet > cfg.max_devices_per_subnet:
        out.append(Signal("behaviour/subnet-crowd", 2.0, {"devices": h.devices_per_subnet}))
    if h.accounts_per_device is not None and h.accounts_per_device > cfg.max_accounts_per_device:
        out.append(Signal("behaviour/accounts-per-device", 3.0, {"accounts": h.accounts_per_device}))
    if h.inflight is not None and h.inflight > cfg.max_inflight_per_device:
        out.append(Signal("behaviour/concurrency", 2.0, {"inflight": h.inflight}))
    c = h.cadence
    if c is not None and c.count >= cfg.clockwork_min_requests and c.cv < cfg.clockwork_cv:
        out.append(Signal("behaviour/clockwork", 2.0, {"cv": round(c.cv, 3), "interval_s": round(c.mean_interval, 3)}))
    if (
        h.challenges_issued is not None
        and h.proofs_redeemed is not None
        and h.challenges_issued >= cfg.unredeemed_min
        and h.challenges_issued > cfg.unredeemed_ratio * max(h.proofs_redeemed, 1.0)
    ):
        out.append(
            Signal(
                "behaviour/unredeemed-challenges",
                2.0,
                {"issued": round(h.challenges_issued), "redeemed": round(h.proofs_redeemed)},
            )
        )
    # Registrations beyond the limit are refused, so the count stops at it: the subnet is
    # bursting once one more registration would be refused.
    if h.registrations is not None and h.registrations + 1 > cfg.max_registrations_per_subnet:
        out.append(Signal("behaviour/registration-burst", 3.0, {"registrations": round(h.registrations)}))
    return out


@dataclass(frozen=True, slots=True)
class DeviceCheck:
    """The outcome of checking a request's ``Tokenward-Device`` header."""

    status: str  # "ok" | "missing" | "malformed" | "unknown" | "bad-signature"
    device: str | None = None  # set only when status is "ok"
    claimed: str | None = None
    clean: float | None = None  # calls answered in full behind it (devices.ramp), when read
    share: float | None = None  # the share of its device-keyed limits and budgets it has earned


def device_signals(check: DeviceCheck, *, browser_route: bool) -> list[Signal]:
    if check.status == "ok":
        evidence: dict[str, Any] = {"device": check.device}
        if check.clean is not None:
            evidence.update(clean=round(check.clean, 2), share=round(check.share or 0.0, 3))
        return [Signal("device/ok", 0.0, evidence)]
    if check.status == "missing":
        return [Signal("device/missing", 1.0 if browser_route else 0.0, {})]
    score = {"malformed": 3.0, "unknown": 2.0, "bad-signature": 5.0}[check.status]
    return [Signal(f"device/{check.status}", score, {"claimed": check.claimed})]
