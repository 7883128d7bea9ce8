"""The attack worker: a separate process, at a lower CPU priority, running every
attacker of a run on its own event loop (see :mod:`.runner`).

It builds the attackers from the profile, reports ``ready``, waits for the run's start
time, releases each planned call at its time (or counts it *not sent* when that
attacker already has ``concurrency`` calls in flight), drains, and writes its call
records to a file whose path it sends back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .actors import Rotation, Target, native_thread_solver, thread_solver
from .browsers import ChromiumHost, HeadlessFarm, StealthFarm
from .population import ATTACK_NET, AccountMint, IpPool
from .profiles import Profile
from .records import CallRecord, write_records
from .resellers import AdapterReseller
from .scripted import Impersonator, NativeSolver

__all__ = ["attack_worker", "target_from", "target_spec"]


def target_spec(target: Target) -> dict[str, Any]:
    accounts = target.accounts
    return {
        "base": target.base, "page_base": target.page_base, "chat_route": target.chat_route,
        "page_path": target.page_path, "anthropic_route": target.anthropic_route,
        "jwt_cookie": target.jwt_cookie, "jwt_header": target.jwt_header,
        "accounts": None if accounts is None else {
            "key": accounts.key, "created_at_claim": accounts.created_at_claim, "audience": accounts.audience,
            "issuer": accounts.issuer, "email_claim": accounts.email_claim,
            "subject_claim": accounts.subject_claim, "cookie": accounts.cookie,
        },
    }  # fmt: skip


_RUN_FIELDS = ("t0", "t_end", "seed", "alerts", "notes", "policy_source", "target", "control_ttfb_ms", "hash_rate",
               "attack_kinds", "offered", "load")  # fmt: skip


def _account_mint(spec: dict[str, Any] | None) -> AccountMint | None:
    return AccountMint(**spec) if spec is not None else None


def target_from(spec: dict[str, Any]) -> Target:
    return Target(**{**spec, "accounts": _account_mint(spec["accounts"])})


_FARMS = frozenset({"headless-farm", "stealth-farm"})
FARM_CALL_TIMEOUT = 120.0  # page load, registration, a solve or two and the answer take seconds


def attack_worker(config: dict[str, Any], conn: Any, stop: Any) -> None:
    """Entry point of the attack process (spawned)."""
    with contextlib.suppress(OSError):
        os.nice(10)
    asyncio.run(_attack_main(config, conn, stop))


async def _attack_main(config: dict[str, Any], conn: Any, stop: Any) -> None:
    profile = Profile.model_validate(config["profile"])
    target = target_from(config["target"])
    rng = random.Random(config["seed"] * 7919 + 1)
    pool = IpPool(rng, ATTACK_NET, profile.proxies.ips, profile.proxies.subnets)
    host: ChromiumHost | None = None
    stealth_host: ChromiumHost | None = None
    actors: dict[str, Any] = {}
    for kind in config["kinds"]:
        spec = profile.attackers[kind]
        rotation = Rotation(spec, pool, target.accounts, random.Random(rng.random()))
        if kind == "adapter-openai":
            actors[kind] = AdapterReseller("openai", target, rotation, target.chat_route)
        elif kind == "adapter-anthropic" and target.anthropic_route is not None:
            actors[kind] = AdapterReseller("anthropic", target, rotation, target.anthropic_route)
        elif kind == "impersonator":
            actors[kind] = Impersonator(target, rotation, thread_solver)
        elif kind == "native-solver":
            actors[kind] = NativeSolver(target, rotation, native_thread_solver)
        elif kind == "headless-farm":
            if host is None:
                host = ChromiumHost(headed_like=False)
                await host.start()
            actors[kind] = HeadlessFarm(host, target, rotation)
        elif kind == "stealth-farm":
            if stealth_host is None:
                stealth_host = ChromiumHost(headed_like=True)
                await stealth_host.start()
            actors[kind] = StealthFarm(stealth_host, target, rotation)
    conn.send(("ready", None))
    t0 = await asyncio.to_thread(conn.recv)
    records: list[CallRecord] = []
    inflight: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(kind: str, rec: CallRecord) -> None:
        try:
            if kind in _FARMS:  # a browser that stopped answering must not hold a farm slot for the run
                await asyncio.wait_for(actors[kind].call(rec), FARM_CALL_TIMEOUT)
            else:
                await actors[kind].call(rec)
        except TimeoutError:
            rec.error = rec.error or f"the browser did not finish the call in {FARM_CALL_TIMEOUT:g} s"
        except asyncio.CancelledError:
            rec.error = rec.error or "still in flight when the run ended"
            raise
        except Exception as exc:
            rec.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            inflight[kind] -= 1

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(0.5)
            counts: dict[str, dict[str, int]] = defaultdict(Counter)
            for r in records:
                counts[r.actor][r.outcome if (r.t_end or r.outcome == "not_sent") else "in_flight"] += 1
            conn.send(("progress", {k: dict(v) for k, v in counts.items()}))

    reporter = asyncio.ensure_future(report_progress())
    try:
        for t, kind in config["plan"]:
            delay = t0 + t - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if stop.is_set():
                break
            rec = CallRecord(actor=kind, side="attack", t_arrival=time.time())
            records.append(rec)
            if inflight[kind] >= profile.attackers[kind].concurrency:
                rec.outcome = "not_sent"
                rec.t_end = rec.t_arrival
                continue
            inflight[kind] += 1
            task = asyncio.ensure_future(one(kind, rec))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        deadline = time.time() + profile.drain_seconds
        while tasks and time.time() < deadline and not stop.is_set():
            await asyncio.wait(set(tasks), timeout=0.5)
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(set(tasks), timeout=5)
    finally:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        for actor in actors.values():
            with contextlib.suppress(Exception):
                if hasattr(actor, "close"):
                    await actor.close()
        for h in (host, stealth_host):
            if h is not None:
                await h.close()
    for rec in records:
        if rec.t_end == 0.0:
            rec.t_end = time.time()
            rec.error = rec.error or "still in flight when the run ended"
    path = Path(config["records_path"])
    await asyncio.to_thread(write_records, path, records)
    conn.send(("done", str(path)))
