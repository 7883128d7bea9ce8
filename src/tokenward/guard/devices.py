"""Devices: a key a browser registers once, then signs each proved request with.

Only a verified device keys a request's counters: a made-up or borrowed device id must
neither dodge per-device limits nor spend another device's (docs/protocol.md §4.2).
A device whose key this instance already holds is checked before the store batch; one
it has not seen is fetched in the batch and checked after it, and the request's
device-keyed counters move over from its address once (:func:`rekey`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..facts import RequestFacts
from ..limits import Keys, limit_ops
from ..policy import DeviceRamp, Policy
from ..proof import KeyRing, ProofFailure, verify_proof
from ..proof.device import DeviceClaim, DeviceKeys, device_id, load_public_key, parse_device_header_unverified
from ..signals.behaviour import DeviceCheck
from ..signals.network import subnet_of
from ..store import Consume, Hit, Op, Put, Store, StoreUnavailable, WindowResult
from .base import CONSUME_GRACE, DEVICE_ROUTE, INF, MESSAGES
from .plan import Plan

__all__ = ["DeviceTrust", "check_device", "device_claim", "precheck_device", "register_device", "rekey"]

log = logging.getLogger("tokenward.guard")


class DeviceTrust:
    """Clean calls per device as this instance last read them from the store.

    A device's budgets are reserved in the same batch that reads its clean calls, so the
    share of them it gets is the one its previous request here learnt (a device this
    instance has not seen starts at ``devices.ramp.start``; its limits use the count of
    this very batch). Bounded: the least recently seen devices are forgotten first.
    """

    def __init__(self, capacity: int = 50_000):
        self._cap = capacity
        self._clean: OrderedDict[str, float] = OrderedDict()

    def clean(self, device: str) -> float:
        value = self._clean.get(device)
        if value is None:
            return 0.0
        self._clean.move_to_end(device)
        return value

    def share(self, ramp: DeviceRamp, claimed: str | None) -> float | None:
        """The share of its budgets a claimed device reserves against (None: the ramp is
        off, or no device claimed), from what its previous request here read (docs/money.md)."""
        if claimed is None or not ramp.enabled:
            return None
        return ramp.share(self.clean(claimed))

    def learn(self, device: str, clean: float) -> None:
        self._clean[device] = clean
        self._clean.move_to_end(device)
        if len(self._clean) > self._cap:
            self._clean.popitem(last=False)

    def __len__(self) -> int:
        return len(self._clean)


def device_claim(facts: RequestFacts) -> DeviceClaim | str | None:
    value = facts.header("tokenward-device")
    if value is None or facts.header("tokenward-proof") is None:
        return None  # a device signature covers a proof: without one it proves nothing
    return parse_device_header_unverified(value)


def precheck_device(devices: DeviceKeys, facts: RequestFacts, claim: DeviceClaim | str | None) -> DeviceCheck | None:
    """Check a device signature before the store batch when its key is already known here."""
    if not isinstance(claim, DeviceClaim):
        return None
    key = devices.cached(claim.device)
    if key is None:
        return None  # fetched in the batch, verified after it
    if DeviceKeys.verify(key, claim, facts.header("tokenward-proof") or "", facts.body):
        return DeviceCheck("ok", device=claim.device, claimed=claim.device)
    return DeviceCheck("bad-signature", claimed=claim.device)


def check_device(
    devices: DeviceKeys, facts: RequestFacts, claim: DeviceClaim | str | None, plan: Plan, results: list[Any]
) -> DeviceCheck:
    """After the batch: the claimed device, checked against the key the batch fetched."""
    if claim is None:
        return DeviceCheck("missing")
    if isinstance(claim, str):
        return DeviceCheck("malformed", claimed=None)
    key = devices.cached(claim.device)
    if key is None and plan.device_key is not None:
        stored = plan.device_key.read(results)
        if stored is not None:
            key = devices.remember(claim.device, stored)
    if key is None:
        return DeviceCheck("unknown", claimed=claim.device)
    proof_header = facts.header("tokenward-proof") or ""
    if not DeviceKeys.verify(key, claim, proof_header, facts.body):
        return DeviceCheck("bad-signature", claimed=claim.device)
    return DeviceCheck("ok", device=claim.device, claimed=claim.device)


async def rekey(store: Store, plan: Plan, answers: list[WindowResult], keys: Keys, device: str) -> list[WindowResult]:
    """A device this instance had not seen, verified only after the batch: its counters
    were keyed by address; move its device-keyed limits over (once per device here)."""
    keys = replace(keys, device=device)
    ops: list[Op] = []
    moved: list[int] = []
    for i, ((spec, hit), result) in enumerate(zip(plan.limits, answers, strict=True)):
        if spec.key != "device":
            continue
        if result.allowed:
            ops.append(Hit(hit.key, INF, hit.window, -hit.cost))  # give the address its count back
        ((_, new_hit),) = limit_ops([spec], keys)
        plan.limits[i] = (spec, new_hit)
        moved.append(i)
        ops.append(new_hit)
    if not ops:
        return answers
    try:
        results = await store.execute(ops)
    except StoreUnavailable:
        return answers  # keep the address-keyed counts for this request
    out = list(answers)
    new_results = [a for op, a in zip(ops, results, strict=True) if isinstance(op, Hit) and op.cost > 0]
    for i, r in zip(moved, new_results, strict=True):
        out[i] = r
    return out


async def register_device(
    policy: Policy,
    facts: RequestFacts,
    public_key: bytes,
    *,
    keys: KeyRing,
    store: Store,
    devices: DeviceKeys,
    challenge: Callable[[], dict[str, Any]],
) -> tuple[int, dict[str, Any]]:
    """``POST /.tokenward/device``: a proved registration of a device's public key.
    ``challenge()`` mints the fresh registration challenge a refusal carries."""
    if not policy.devices.enabled:
        return 404, {"code": "not_found", "message": "Device registration is not enabled here."}
    key = load_public_key(public_key)
    if isinstance(key, str):
        return 400, {"code": "bad_request", "message": key.capitalize() + "."}
    header = facts.header("tokenward-proof")
    if header is None:
        return 401, {"code": "proof_required", "message": MESSAGES["proof_required"], "challenge": challenge()}
    proof = verify_proof(
        keys, header, route=DEVICE_ROUTE, body=facts.body, signals_header=None,
        now=facts.received_at, min_difficulty=policy.registration_difficulty(),
    )  # fmt: skip
    if isinstance(proof, ProofFailure):
        return 401, {"code": proof.code, "message": proof.message, "challenge": challenge()}
    did = device_id(public_key)
    subnet = subnet_of(facts.client_ip)
    ttl = proof.expires_at - facts.received_at + CONSUME_GRACE
    b = policy.behaviour
    counter = Hit(f"registrations:{subnet}", b.max_registrations_per_subnet, b.window)
    first, registrations = await store.execute([Consume("used:" + proof.challenge_id.hex(), ttl), counter])
    if not first:
        if registrations.allowed:  # a replay registers nothing: give its count back
            await store.execute([Hit(counter.key, INF, counter.window, -counter.cost)])
        return 401, {"code": "proof_replayed", "message": MESSAGES["proof_replayed"], "challenge": challenge()}
    if not registrations.allowed:
        log.debug("device registration refused: %s is over max_registrations_per_subnet", subnet)
        return 429, {
            "code": "throttled",
            "message": "Too many devices registered from this network right now; retry after the indicated time.",
            "retry_after": max(1, int(registrations.retry_after + 0.999)),
        }
    await store.execute([Put(f"devkey:{did}", public_key, policy.devices.ttl)])
    devices.remember(did, public_key)
    log.debug("device %s registered; %d registrations from %s", did, round(registrations.count), subnet)
    return 200, {"device": did}
