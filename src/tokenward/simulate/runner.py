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
from the seed, so two runs with one seed offer the same traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import secrets
import sqlite3
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..policy import Policy, load_policy
from .actors import Solver, Target, solve_timed
from .browsers import ChromiumHost, LegitBrowsers, chromium_available
from .legit import LegitPopulation
from .native import native_available
from .population import LEGIT_NET, AccountMint, IpPool, legit_question
from .profiles import ATTACKER_KINDS, Profile, Timeline, load_profile, poisson_arrivals
from .records import CallRecord, read_records, write_records
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


@dataclass(slots=True)
class SimulationSettings:
    profile: str = "incident"
    policy: Path | None = None
    target: str | None = None
    duration_scale: float = 1.0
    hold_minutes: float | None = None
    max_requests: int | None = None
    out: Path = Path("tokenward-simulate")
    allow_non_loopback: bool = False
    seed: int | None = None
    browsers: bool = True
    decision_log: Path | None = None  # with --target: the target's SQLite decision log
    jwt_key: str | None = None  # with --target: the HS256 key of its identity.jwt, if any
    progress: bool = True


@dataclass(slots=True)
class RunData:
    """Everything the report is computed from."""

    profile: Profile
    settings: SimulationSettings
    timeline: Timeline
    t0: float
    t_end: float
    seed: int
    records: list[CallRecord]
    log_rows: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    notes: list[str]
    policy: Policy | None
    policy_source: str
    target: str
    control_ttfb_ms: float | None
    hash_rate: float
    attack_kinds: dict[str, float]
    offered: dict[str, int] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)  # the machine's load average around the run


def run_simulation(settings: SimulationSettings, console: Console | None = None) -> RunData:
    """Run one simulation to the end (or to Ctrl-C) and return what happened."""
    return asyncio.run(_Run(settings, console or Console(stderr=True)).main())


# --------------------------------------------------------------------------------------
# The plan: who arrives when
# --------------------------------------------------------------------------------------
def _plan(
    profile: Profile,
    timeline: Timeline,
    seed: int,
    browser_rpm: float,
    kinds: dict[str, float],
    max_requests: int | None,
) -> tuple[list[float], list[tuple[float, str]], float]:
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


def _attack_kinds(profile: Profile, target: Target, browsers: bool, notes: list[str]) -> dict[str, float]:
    import importlib.util

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

    async def main(self) -> RunData:
        s = self.s
        try:
            profile = load_profile(s.profile)
        except ValueError as exc:
            raise SimulationError(str(exc)) from None
        seed = s.seed if s.seed is not None else profile.seed
        timeline = Timeline(profile, duration_scale=s.duration_scale, hold_minutes=s.hold_minutes)
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
        kinds = _attack_kinds(profile, target, s.browsers, self.notes)
        use_browsers = s.browsers and profile.legit.browser_pages > 0 and chromium_available()
        if s.browsers and profile.legit.browser_pages > 0 and not use_browsers:
            self.notes.append("legit-browser: Chromium (/usr/bin/chromium) or playwright missing; HTTP model only")
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
        legit_plan, attack_plan, end = _plan(profile, timeline, seed, browser_rpm, kinds, s.max_requests)
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
        aligned = _bucket_start(policy, timeline, t0) if s.target is None else None
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
        display = self._display(timeline, t0, end, kinds)
        try:
            live_display = (
                Live(display(), console=self.console, refresh_per_second=2, transient=False)
                if s.progress else contextlib.nullcontext(_NoLive())
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
                stop_flag.set()
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
        rows = _read_log(log_path, t0 - 5) if log_path is not None else []
        if log_path is None:
            self.notes.append("no decision log (pass --decision-log with --target): upstream spend is not reported")
        offered = Counter("legit" for _ in legit_plan) + Counter(k for _, k in attack_plan)
        data = RunData(
            profile=profile, settings=s, timeline=timeline, t0=t0, t_end=t_end, seed=seed, records=self.records,
            log_rows=rows, alerts=list(self.receiver.events), notes=self.notes, policy=policy,
            policy_source=policy_source, target=target.base, control_ttfb_ms=control, hash_rate=hash_rate,
            attack_kinds=kinds, offered=dict(offered),
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

    def _display(self, timeline: Timeline, t0: float, end: float, kinds: dict[str, float]) -> Callable[[], Group]:
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[phase]}"),
            TimeElapsedColumn(), TextColumn("of {task.fields[length]}"),
        )  # fmt: skip
        task = progress.add_task("simulating", total=end, phase="", length=f"{end / 60:.1f} min")
        actors = ["legit-http", "legit-browser", *kinds]

        def render() -> Group:
            now = time.time() - t0
            phase, legit_rpm, attack_rpm = timeline.at(max(now, 0.0))
            progress.update(task, completed=min(max(now, 0.0), end),
                            phase=f"{phase}: {legit_rpm:.0f} legit + {attack_rpm:.0f} attack req/min")  # fmt: skip
            table = Table(show_edge=False, pad_edge=False)
            for col in ("actor", "calls", "reached model", "refused", "not sent", "in flight"):
                table.add_column(col, justify="right" if col != "actor" else "left")
            counts: dict[str, Counter[str]] = defaultdict(Counter)
            for r in self.records:
                counts[r.actor][r.outcome if (r.t_end or r.outcome == "not_sent") else "in_flight"] += 1
            for actor, c in self.attack_progress.items():
                counts[actor] = Counter(c)
            for actor in actors:
                c = counts.get(actor, Counter())
                total = sum(c.values())
                ok = c["allowed"] + c["degraded"]
                refused = total - ok - c["not_sent"] - c["in_flight"] - c["error"]
                table.add_row(actor, str(total), str(ok), str(refused), str(c["not_sent"]), str(c["in_flight"]))
            attack = "[red]UNDER ATTACK[/red]" if self.receiver.under_attack() else "normal"
            return Group(progress, table, f"gateway mode: {attack}")

        return render


class _NoLive:
    def update(self, _: object) -> None:
        pass


_RUN_FIELDS = ("t0", "t_end", "seed", "alerts", "notes", "policy_source", "target", "control_ttfb_ms", "hash_rate",
               "attack_kinds", "offered", "load")  # fmt: skip


def save_run(data: RunData, run_dir: Path) -> None:
    """Everything but the records and the log (saved beside it) in ``run.json``, so a
    report can be computed again from the run's folder (:func:`load_run`)."""
    doc = {name: getattr(data, name) for name in _RUN_FIELDS}
    doc["profile"] = data.profile.model_dump(mode="json")
    doc["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars_of(data.settings).items()
                       if k != "jwt_key"}  # a secret: never written down  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(doc, indent=1, default=str))


def load_run(run_dir: Path) -> RunData:
    """A finished run read back from its folder (``--out/run``)."""
    doc = json.loads((run_dir / "run.json").read_text())
    raw: dict[str, Any] = {k: (Path(v) if k in ("policy", "out", "decision_log") and v else v)
                           for k, v in doc["settings"].items()}  # fmt: skip
    settings = SimulationSettings(**raw)
    profile = Profile.model_validate(doc["profile"])
    log_path = run_dir / "decisions.db" if settings.target is None else settings.decision_log
    return RunData(
        profile=profile, settings=settings,
        timeline=Timeline(profile, duration_scale=settings.duration_scale, hold_minutes=settings.hold_minutes),
        records=read_records(run_dir / "records.jsonl"),
        log_rows=_read_log(log_path, doc["t0"] - 5) if log_path is not None else [], policy=None,
        **{name: doc[name] for name in _RUN_FIELDS},
    )  # fmt: skip


def vars_of(settings: SimulationSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__slots__}  # type: ignore[attr-defined]


def _bucket_start(policy: Policy | None, timeline: Timeline, earliest: float) -> float | None:
    """The next start of a spike-rate bucket, when the run is long enough for the spike
    detector to decide anything before the attack (else None: start at once)."""
    if policy is None or not policy.spike.enabled:
        return None
    bucket = policy.spike.bucket
    first_attack = next((start for _, start, _, attacked in timeline.windows() if attacked), timeline.duration)
    if first_attack < (policy.spike.warmup + 1) * bucket:
        return None
    return math.ceil(earliest / bucket) * bucket + 0.05


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


def _read_log(path: Path, since: float) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        rows = con.execute(
            "SELECT ts, request_id, route, client_ip, action, name, code, status, shadow_action, reasons, "
            "cost_usd, reserved_usd, tokens_in, tokens_out, upstream_status FROM decisions WHERE ts >= ? "
            "AND route IS NOT NULL ORDER BY ts",
            (since,),
        ).fetchall()
    finally:
        con.close()
    out = []
    for r in rows:
        d = dict(r)
        d["reasons"] = json.loads(d["reasons"]) if d["reasons"] else []
        out.append(d)
    return out


ATTACKERS = ATTACKER_KINDS  # re-exported for the CLI's help
