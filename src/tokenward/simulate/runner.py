"""Running a simulation: start what is needed, release traffic on the timeline, stop
by itself, collect what happened.

Processes (all on loopback):

* the demo LLM and the gateway under test (subprocesses; unless ``--target``);
* this process: legit users — the HTTP-level model (its proofs solved in a separate
  solver process and paced to browser speed) and real Chromium pages — plus the
  progress display and the alert receiver;
* one **attack worker** process at a lower CPU priority (``nice 10``): the adapters,
  impersonators, native solvers and the headless farm. Attackers bring their own
  machines; here they share ours, so they get the spare CPU and the gateway and the
  legit users are measured as if on a machine of their own. When the attackers' CPU
  cannot keep up with the offered rate, calls are *not sent* and counted as such.

Arrival times are a Poisson process following the profile's rates, drawn up front
from the seed, so two runs with one seed offer the same traffic (:mod:`.plan`). The live
display is :mod:`.progress`; the settings, what a run leaves behind and how it is read
back are :mod:`.rundata` (re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from ..policy import Policy, load_policy
from .actors import Solver, Target, solve_timed
from .browsers import ChromiumHost, LegitBrowsers, chromium_available
from .legit import LegitPopulation
from .native import native_available
from .plan import attack_kinds, bucket_start, missing_requirements, plan_arrivals
from .population import LEGIT_NET, AccountMint, IpPool, legit_question
from .profiles import ATTACKER_KINDS, Profile, Timeline, load_profile
from .progress import NoLive, progress_view
from .records import CallRecord, read_records, write_records
from .rundata import RunData, SimulationSettings, load_run, read_log, save_run
from .services import (
    CHAT_ROUTE,
    PAGE_ROUTE,
    AlertReceiver,
    ManagedProcess,
    is_loopback_url,
    simulation_policy,
    start_gateway,
    start_upstream,
)
from .worker import attack_worker, target_spec

__all__ = ["RunData", "SimulationError", "SimulationSettings", "load_run", "run_simulation", "save_run"]


class SimulationError(RuntimeError):
    """The simulation cannot run as asked (a refused target, a bad policy...)."""


def run_simulation(settings: SimulationSettings, console: Console | None = None) -> RunData:
    """Run one simulation to the end (or to Ctrl-C) and return what happened."""
    return asyncio.run(_Run(settings, console or Console(stderr=True)).main())


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------
class _Run:
    def __init__(self, settings: SimulationSettings, console: Console):
        self.s = settings
        self.console = console
        self.records: list[CallRecord] = []
        self.attack_progress: dict[str, dict[str, int]] = {}
        self.notes: list[str] = []
        self.receiver = AlertReceiver()
        self.procs: list[ManagedProcess] = []
        self.stop = asyncio.Event()
        self.legit_inflight = 0
        self.not_run: dict[str, str] = {}  # actor -> why it did not take part (--skip-missing)

    async def main(self) -> RunData:
        s = self.s
        try:
            profile = load_profile(s.profile)
        except ValueError as exc:
            raise SimulationError(str(exc)) from None
        seed = s.seed if s.seed is not None else profile.seed
        timeline = Timeline(profile, duration_scale=s.duration_scale, hold_minutes=s.hold_minutes)
        missing = missing_requirements(profile, s.browsers)
        if missing:
            if not s.skip_missing:
                raise SimulationError(missing.error())
            self.not_run = missing.reasons()
            listed = "; ".join(f"{a} ({why})" for a, why in self.not_run.items())
            self.console.print(
                f"warning: --skip-missing: these actors will NOT run: {listed}. The report covers the others only.",
                style="yellow", markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip
            self.notes.append(f"NOT RUN (--skip-missing): {listed}")
        run_dir = s.out.resolve() / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        if s.target is not None and not s.allow_non_loopback and not is_loopback_url(s.target):
            raise SimulationError(
                f"refusing to send simulated attack traffic to {s.target}: not a loopback address "
                "(pass --allow-non-loopback if you own it and mean it)"
            )
        await self.receiver.start()
        try:
            try:
                target, policy, policy_source, mint_key = await self._prepare(run_dir, s.duration_scale)
            except RuntimeError as exc:  # a server that did not start: its log says why
                raise SimulationError(str(exc)) from None
            return await self._simulate(profile, timeline, seed, target, policy, policy_source, mint_key, run_dir)
        finally:
            for proc in reversed(self.procs):
                await asyncio.to_thread(proc.stop)
            await self.receiver.close()

    async def _prepare(self, run_dir: Path, scale: float) -> tuple[Target, Policy | None, str, str | None]:
        s = self.s
        if s.target is None:
            upstream = await start_upstream(run_dir)
            self.procs.append(upstream)
            try:
                sim = simulation_policy(
                    s.policy, upstream=upstream.url, work_dir=run_dir, alerts_url=self.receiver.url,
                    duration_scale=scale,
                )  # fmt: skip
            except ValueError as exc:
                raise SimulationError(str(exc)) from None
            self.notes.extend(sim.notes)
            gateway = await start_gateway(run_dir, sim.path)
            self.procs.append(gateway)
            self.upstream_url: str | None = upstream.url
            base = gateway.url
            policy: Policy | None = sim.policy
            key = sim.jwt_key
            source = str(s.policy) if s.policy else "built-in demo policy"
        else:
            self.upstream_url = None
            base = s.target.rstrip("/")
            try:
                policy = load_policy(s.policy) if s.policy is not None else None
            except ValueError as exc:
                raise SimulationError(str(exc)) from None
            key = s.jwt_key
            source = f"{s.policy} (as the target runs it)" if s.policy else "unknown (the target's own)"
            self.notes.append(
                f"target {base}: started elsewhere; it must list 127.0.0.1/32 in trusted_proxies for the "
                "simulated addresses to count, and point alerts.webhook at this run's receiver to record "
                "under-attack mode"
            )
        return self._target(base, policy, key), policy, source, key

    def _target(self, base: str, policy: Policy | None, jwt_key: str | None) -> Target:
        port = base.rsplit(":", 1)[-1].split("/")[0]
        page_base = base.replace("127.0.0.1", "localhost") if is_loopback_url(base) and port.isdigit() else base
        chat = CHAT_ROUTE
        anthropic_route = "/v1/messages" if policy is None else None
        mint = None
        cookie = None
        header = "authorization"
        if policy is not None:
            route = policy.route_for(CHAT_ROUTE)
            if route is None or not route.protect:
                raise SimulationError(
                    f"the policy does not protect {CHAT_ROUTE}, the route the simulated chat page and "
                    "resellers call; add it to routes"
                )
            anthropic_route = next((r.path for r in policy.routes if r.protect and r.api.value == "anthropic"
                                    and not r.path.endswith("*")), None)  # fmt: skip
            jwt = policy.identity.jwt
            if jwt is not None:
                if jwt_key is None:
                    self.notes.append("the target checks JWTs but no key was given: simulated users send none")
                else:
                    mint = AccountMint(
                        key=jwt_key, created_at_claim=jwt.created_at_claim,
                        audience=jwt.audience[0] if jwt.audience else None, issuer=jwt.issuer,
                        email_claim=jwt.email_claim, subject_claim=jwt.subject_claim, cookie=jwt.cookie,
                    )  # fmt: skip
                    cookie, header = jwt.cookie, jwt.header
        return Target(base=base, page_base=page_base, chat_route=chat, page_path=PAGE_ROUTE,
                      anthropic_route=anthropic_route, accounts=mint, jwt_cookie=cookie, jwt_header=header)  # fmt: skip

    async def _control_ttfb(self, model: str) -> float | None:
        """Time to first byte of legit-sized calls sent straight to the upstream: what
        the same answer takes without the gateway (subtracted from legit latency)."""
        if self.upstream_url is None:
            return None
        import aiohttp

        rng = random.Random(5)
        samples = []
        async with aiohttp.ClientSession() as session:
            for i in range(24):
                body = json.dumps({"model": model, "stream": True,
                                   "messages": [{"role": "user", "content": legit_question(rng, i % 2)}]})  # fmt: skip
                t0 = time.perf_counter()
                async with session.post(self.upstream_url + CHAT_ROUTE, data=body,
                                        headers={"content-type": "application/json"}) as r:  # fmt: skip
                    samples.append(time.perf_counter() - t0)
                    await r.read()
        return statistics.median(samples[4:]) * 1000

    async def _simulate(
        self,
        profile: Profile,
        timeline: Timeline,
        seed: int,
        target: Target,
        policy: Policy | None,
        policy_source: str,
        jwt_key: str | None,
        run_dir: Path,
    ) -> RunData:
        s = self.s
        rng = random.Random(seed)
        legit_pool = IpPool(random.Random(seed + 11), LEGIT_NET, profile.legit.users * 2,
                            profile.proxies.legit_subnets)  # fmt: skip
        kinds = attack_kinds(profile, target, s.browsers, self.notes)
        use_browsers = s.browsers and profile.legit.browser_pages > 0 and chromium_available()
        if s.browsers and profile.legit.browser_pages > 0 and not use_browsers:
            self.notes.append(
                "legit-browser: NOT RUN (Chromium or playwright missing; --skip-missing): HTTP model only"
            )
        sink: Callable[[CallRecord], None] = self.records.append
        browsers = None
        host = None
        if use_browsers:
            host = ChromiumHost(headed_like=True)
            await host.start()
            accounts = target.accounts
            browsers = LegitBrowsers(
                host, target, profile.legit, random.Random(seed + 3), lambda: legit_pool.pick(rng), sink,
                lambda new: accounts.customer(rng, new=new) if accounts is not None else None,
            )  # fmt: skip
        browser_rpm = browsers.expected_rpm() if browsers is not None else 0.0
        legit_plan, attack_plan, end = plan_arrivals(profile, timeline, seed, browser_rpm, kinds, s.max_requests)
        hash_rate = _measure_hash_rate()
        control = await self._control_ttfb(profile.legit_model)
        # Legit proofs: in C on threads when a compiler is here (the GIL is released), else
        # in a separate Python process. Registrations (background, harder) get their own
        # worker so that a message never waits behind another user's registration.
        native = native_available()
        loop = asyncio.get_running_loop()
        if native:
            messages_pool: Executor = ThreadPoolExecutor(4, thread_name_prefix="legit-solve")
            registrations_pool: Executor = ThreadPoolExecutor(1, thread_name_prefix="legit-register")
        else:
            spawn = mp.get_context("spawn")
            messages_pool = ProcessPoolExecutor(max_workers=1, mp_context=spawn)
            registrations_pool = ProcessPoolExecutor(max_workers=1, mp_context=spawn)
        self.notes.append(
            "legit proofs: solved "
            + ("in C (compiled here)" if native else "by the Python solver")
            + " and paced to each simulated browser's speed (1-5M hashes/s, median 2M)"
        )

        def pooled(executor: Executor) -> Solver:
            async def solve(challenge: str, body: bytes, difficulty: int, sig: bytes | None) -> tuple[int, float]:
                return await loop.run_in_executor(executor, solve_timed, challenge, body, difficulty, sig, native)

            return solve

        legit_solver, registration_solver = pooled(messages_pool), pooled(registrations_pool)
        await legit_solver("warm-up", b"", 1, None)  # start the solvers before the clock runs
        await registration_solver("warm-up", b"", 1, None)
        population = LegitPopulation(random.Random(seed + 5), profile.legit, legit_pool, target, legit_solver,
                                     registration_solver=registration_solver, model=profile.legit_model)  # fmt: skip
        await population.start()

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        stop_flag = ctx.Event()
        worker = None
        if attack_plan:
            config = {
                "profile": profile.model_dump(mode="json"),
                "target": target_spec(target),
                "seed": seed,
                "kinds": list(kinds),
                "plan": attack_plan,
                "records_path": str(run_dir / "attack-records.jsonl"),
            }
            worker = ctx.Process(target=attack_worker, args=(config, child, stop_flag), daemon=True)
            worker.start()
            msg = await asyncio.to_thread(_recv_until, parent, "ready", 120)
            if msg is None:
                raise SimulationError("the attack worker did not start")
        load_start = os.getloadavg()[0]
        t0 = time.time() + 0.5
        aligned = bucket_start(policy, timeline, t0) if s.target is None else None
        if aligned is not None:
            # The gateway seeds each route's traffic baseline with its first complete rate
            # bucket; starting mid-bucket would seed it with a fraction of the real rate.
            self.notes.append(
                f"traffic starts on a {policy.spike.bucket:g}-second boundary of the gateway's clock "  # type: ignore[union-attr]
                "(a route's baseline is seeded by its first rate bucket: a partial one would seed it low)"
            )
            await asyncio.sleep(max(0.0, aligned - time.time()))
            t0 = aligned
        if worker is not None:
            parent.send(t0)
        attack_done: asyncio.Future[str | None] = loop.create_future()
        if worker is not None:
            pump = asyncio.ensure_future(self._pump(parent, attack_done))
            self._background = pump  # keep a reference: the loop only holds weak ones
        else:
            attack_done.set_result(None)

        legit_tasks: set[asyncio.Task[None]] = set()

        async def legit_one(rec: CallRecord) -> None:
            user = population.pick()
            try:
                await population.call(rec, user)
            except Exception as exc:
                rec.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                rec.t_end = time.time()
            finally:
                self.legit_inflight -= 1

        async def dispatch_legit() -> None:
            for t in legit_plan:
                delay = t0 + t - time.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), timeout=delay)
                if self.stop.is_set():
                    return
                rec = CallRecord(actor="legit-http", side="legit", t_arrival=time.time())
                self.records.append(rec)
                if self.legit_inflight >= profile.legit.concurrency:
                    rec.outcome, rec.t_end = "not_sent", rec.t_arrival
                    continue
                self.legit_inflight += 1
                task = asyncio.ensure_future(legit_one(rec))
                legit_tasks.add(task)
                task.add_done_callback(legit_tasks.discard)

        deadline = t0 + end
        jobs = [asyncio.ensure_future(dispatch_legit())]
        if browsers is not None:
            jobs.append(asyncio.ensure_future(browsers.run(deadline, self.stop)))
        display = progress_view(
            timeline, t0, end, kinds, self.records, lambda: self.attack_progress, self.receiver.under_attack
        )
        try:
            live_display = (
                Live(display(), console=self.console, refresh_per_second=2, transient=False)
                if s.progress else contextlib.nullcontext(NoLive())
            )  # fmt: skip
            with live_display as live:
                while time.time() < deadline and not self.stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), timeout=0.5)
                    live.update(display())
                # Drain: calls in flight get drain_seconds to finish.
                drain_end = time.time() + profile.drain_seconds
                while (legit_tasks or (browsers is not None and browsers.active)) and time.time() < drain_end:
                    await asyncio.sleep(0.25)
                    live.update(display())
                self.stop.set()
                # The attack worker drains its own calls (drain_seconds after its last
                # one); stop_flag is for an interrupted run only.
                await asyncio.gather(*jobs, return_exceptions=True)
                for task in list(legit_tasks):
                    task.cancel()
                await asyncio.gather(*legit_tasks, return_exceptions=True)
                records_path = await asyncio.wait_for(attack_done, timeout=profile.drain_seconds + 60)
                live.update(display())
        except (KeyboardInterrupt, asyncio.CancelledError):
            self.stop.set()
            stop_flag.set()
            raise
        finally:
            await population.close()
            messages_pool.shutdown(wait=False, cancel_futures=True)
            registrations_pool.shutdown(wait=False, cancel_futures=True)
            if host is not None:
                await host.close()
            if worker is not None:
                stop_flag.set()
                await asyncio.to_thread(worker.join, 30)
                if worker.is_alive():
                    worker.terminate()
        t_end = time.time()
        for rec in self.records:
            if rec.t_end == 0.0:
                rec.t_end = t_end
                rec.error = rec.error or "still in flight when the run ended"
        if records_path:
            self.records.extend(await asyncio.to_thread(read_records, Path(records_path)))
        await asyncio.to_thread(write_records, run_dir / "records.jsonl", self.records)
        # The gateway drains its decision log when it stops: stop it before reading.
        for proc in reversed(self.procs):
            await asyncio.to_thread(proc.stop)
        self.procs.clear()
        log_path = run_dir / "decisions.db" if s.target is None else s.decision_log
        rows = read_log(log_path, t0 - 5) if log_path is not None else []
        if log_path is None:
            self.notes.append("no decision log (pass --decision-log with --target): upstream spend is not reported")
        offered = Counter("legit" for _ in legit_plan) + Counter(k for _, k in attack_plan)
        data = RunData(
            profile=profile, settings=s, timeline=timeline, t0=t0, t_end=t_end, seed=seed, records=self.records,
            log_rows=rows, alerts=list(self.receiver.events), notes=self.notes, policy=policy,
            policy_source=policy_source, target=target.base, control_ttfb_ms=control, hash_rate=hash_rate,
            attack_kinds=kinds, offered=dict(offered), not_run=dict(self.not_run),
            load={"start_1min": load_start, "end_15min": os.getloadavg()[2]},
        )  # fmt: skip
        await asyncio.to_thread(save_run, data, run_dir)
        return data

    async def _pump(self, conn: Any, done: asyncio.Future[str | None]) -> None:
        """Messages from the attack worker: progress, then where its records are."""
        while True:
            msg = await asyncio.to_thread(_recv, conn, 1.0)
            if msg is None:
                continue
            if msg == "eof":
                if not done.done():
                    done.set_result(None)
                return
            kind, payload = msg
            if kind == "progress":
                self.attack_progress = payload
            elif kind == "done":
                if not done.done():
                    done.set_result(payload)
                return


def _recv(conn: Any, timeout: float) -> Any:
    try:
        if conn.poll(timeout):
            return conn.recv()
    except (EOFError, OSError):
        return "eof"
    return None


def _recv_until(conn: Any, kind: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = _recv(conn, 0.5)
        if msg == "eof":
            return None
        if isinstance(msg, tuple) and msg[0] == kind:
            return msg
    return None


def _measure_hash_rate() -> float:
    """Hashes per second of this machine's Python solver (prices attackers' compute)."""
    hashes, spent = 0, 0.0
    while spent < 0.25:
        start = time.process_time()
        nonce, _ = solve_timed(secrets.token_urlsafe(82), b"x" * 512, 12, None)
        spent += time.process_time() - start
        hashes += nonce + 1
    return hashes / spent


ATTACKERS = ATTACKER_KINDS  # re-exported for the CLI's help
