"""The evaluation report: what got through, what it cost, whom it bothered.

:func:`build_report` turns a run's call records, the gateway's decision log and its
alerts into one JSON-ready dict. Definitions (also in docs/simulate.md):

* **attack success rate** — attack calls whose final answer came from the upstream
  model (allowed or degraded) / attack calls sent;
* **legit false-refusal rate** — legit calls finally refused by the gateway (after the
  SDK's one retry on a fresh challenge) / legit calls sent;
* **added latency** — from the person pressing Enter to the first byte of the answer,
  minus the median time the demo LLM takes to the first byte without the gateway;
  it includes the challenge, the (browser-paced) proof, a retry and the gateway;
* **spend** — ``cost_usd`` of every decision in the gateway's log, attributed to the
  actor by ``Tokenward-Request-Id`` (else by the client address's pool);
* **spike spend ratio** — upstream dollars per minute while attack traffic was offered,
  over dollars per minute before it;
* **attacker economics** — proxy traffic, throwaway accounts and compute (proof-of-work
  hashes at this machine's Python solver speed, plus a farm's browser time) per
  successful stolen call, against what the call resells for.
"""

from __future__ import annotations

import ipaddress
import math
import platform
import statistics
import time
from collections import Counter, defaultdict
from typing import Any

from .population import ATTACK_NET, LEGIT_NET
from .records import CallRecord
from .rundata import RunData

__all__ = ["REFUSED", "build_report", "percentile"]

REFUSED = ("challenged", "throttled", "blocked", "spend_limit")
LEGIT_ACTORS = ("legit-http", "legit-browser")
_LEGIT = ipaddress.ip_network(LEGIT_NET)
_ATTACK = ipaddress.ip_network(ATTACK_NET)


# Attackers that drive real browsers: their compute is priced as hosted browser time.
BROWSER_ACTORS = frozenset({"headless-farm", "stealth-farm"})


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _refused(r: CallRecord) -> bool:
    return r.outcome in REFUSED or (r.outcome == "error" and r.status >= 400)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _side_of_ip(ip: str) -> str | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr in _LEGIT:
        return "legit"
    if addr in _ATTACK:
        return "attack"
    return None


def _bucket_size(duration: float) -> float:
    for size in (5, 10, 15, 20, 30, 60, 120, 300, 600):
        if duration / size <= 120:
            return float(size)
    return 900.0


def build_report(data: RunData) -> dict[str, Any]:
    profile = data.profile
    t0 = data.t0
    sent = [r for r in data.records if r.outcome != "not_sent"]
    legit = [r for r in sent if r.side == "legit"]
    attack = [r for r in sent if r.side == "attack"]
    by_request: dict[str, CallRecord] = {rid: r for r in data.records for rid in r.request_ids}
    windows = data.timeline.windows()
    attacked = [w for w in windows if w[3]]
    spike_start = min((w[1] for w in attacked), default=None)
    spike_end = max((w[2] for w in attacked), default=None)
    run_seconds = max(data.t_end - t0, 1.0)
    bucket = _bucket_size(run_seconds)

    # -- spend from the decision log -----------------------------------------------------
    spend_side: defaultdict[str, float] = defaultdict(float)
    spend_actor: defaultdict[str, float] = defaultdict(float)
    stolen_value: dict[str, list[float]] = defaultdict(list)
    spend_series: dict[str, dict[int, float]] = {"legit": defaultdict(float), "attack": defaultdict(float)}
    decisions_by_actor: dict[str, Counter[str]] = defaultdict(Counter)
    signals_by_actor: dict[str, Counter[str]] = defaultdict(Counter)
    allowed_with: dict[str, Counter[str]] = defaultdict(Counter)  # signal sets on forwarded requests
    unattributed = 0.0
    for row in data.log_rows:
        rec = by_request.get(row["request_id"])
        actor = rec.actor if rec is not None else None
        side = rec.side if rec is not None else _side_of_ip(row["client_ip"])
        if actor is not None:
            decisions_by_actor[actor][row["name"]] += 1
            scored = [reason for reason in row["reasons"] if not reason.startswith("proof/")]
            for reason in scored:
                signals_by_actor[actor][reason] += 1
            if row["action"] in ("allow", "degrade"):
                allowed_with[actor][" + ".join(sorted(scored)) or "no signal"] += 1
        cost = row["cost_usd"] or 0.0
        if not cost:
            continue
        if side is None:
            unattributed += cost
            continue
        spend_side[side] += cost
        spend_series[side][int((row["ts"] - t0) // bucket)] += cost
        if actor is not None:
            spend_actor[actor] += cost
            if side == "attack":
                stolen_value[actor].append(cost)

    def per_minute(side: str, start: float, end: float) -> float | None:
        if end <= start:
            return None
        total = sum(
            row["cost_usd"] or 0.0
            for row in data.log_rows
            if start <= row["ts"] - t0 < end
            and (
                (
                    by_request[row["request_id"]].side
                    if row["request_id"] in by_request
                    else _side_of_ip(row["client_ip"])
                )
                in ((side,) if side != "all" else ("legit", "attack"))
            )
        )
        return total / ((end - start) / 60)

    # The pre-spike baseline is the second half of the time before the attack: in the
    # first half the simulated users' conversations are still growing to their steady
    # mix (later turns carry more history, so they cost more).
    base_from = spike_start / 2 if spike_start else 0.0
    baseline_spend = per_minute("all", base_from, spike_start) if spike_start else None
    spike_window = (spike_start, min(spike_end, run_seconds)) if spike_start is not None and spike_end else None
    spike_spend = per_minute("all", *spike_window) if spike_window else None
    spend_ratio = spike_spend / baseline_spend if spike_spend is not None and baseline_spend else None
    legit_base = per_minute("legit", base_from, spike_start) if spike_start else None
    legit_spike = per_minute("legit", *spike_window) if spike_window else None
    legit_ratio = legit_spike / legit_base if legit_spike is not None and legit_base else None

    # -- per actor -----------------------------------------------------------------------
    actors: list[dict[str, Any]] = []
    names = [a for a in LEGIT_ACTORS if any(r.actor == a for r in data.records)]
    names += [k for k in data.attack_kinds]
    for name in names:
        recs = [r for r in data.records if r.actor == name]
        s = [r for r in recs if r.outcome != "not_sent"]
        c = Counter(r.outcome for r in s)
        reached = sum(1 for r in s if r.reached_upstream)
        entry: dict[str, Any] = {
            "actor": name,
            "side": "legit" if name in LEGIT_ACTORS else "attack",
            "offered": data.offered.get("legit" if name == "legit-http" else name, len(recs)),
            "sent": len(s),
            "not_sent": len(recs) - len(s),
            "allowed": c["allowed"],
            "degraded": c["degraded"],
            "challenged": c["challenged"],
            "throttled": c["throttled"],
            "blocked": c["blocked"],
            "spend_limit": c["spend_limit"],
            "errors": c["error"],
            "met_a_challenge": sum(1 for r in s if r.challenged),
            "reached_upstream": reached,
            "success_rate": _rate(reached, len(s)),
            "spend_usd": round(spend_actor.get(name, 0.0), 6),
            "decisions": dict(decisions_by_actor[name].most_common(6)),
            "signals": dict(signals_by_actor[name].most_common(8)),
            "forwarded_with": dict(allowed_with[name].most_common(4)),
            "error_samples": sorted({r.error for r in s if r.error})[:3],
        }
        if name == "legit-http" and not entry["offered"]:
            entry["offered"] = len(recs)
        actors.append(entry)

    # -- legit friction ------------------------------------------------------------------
    control = data.control_ttfb_ms
    added = [
        (r.t_first_byte - r.t_start) * 1000 - (control or 0.0)
        for r in legit
        if r.reached_upstream and r.t_first_byte is not None and r.t_start
    ]
    solve_ms = [r.solve_s * 1000 for r in legit if r.reached_upstream]
    legit_refused = [r for r in legit if _refused(r)]
    legit_errors = [r for r in legit if r.outcome == "error" and not _refused(r)]
    friction: dict[str, Any] = {
        "calls": len(legit),
        "refused": len(legit_refused),
        "false_refusal_rate": _rate(len(legit_refused), len(legit)),
        "refusals_by_code": dict(Counter(r.code or r.outcome for r in legit_refused)),
        "errors_not_from_gateway": len(legit_errors),
        "error_samples": sorted({r.error for r in legit_errors if r.error})[:3],
        "met_a_challenge": sum(1 for r in legit if r.challenged),
        "degraded": sum(1 for r in legit if r.outcome == "degraded"),
        "added_ms_p50": percentile(added, 0.5),
        "added_ms_p95": percentile(added, 0.95),
        "added_ms_mean": statistics.fmean(added) if added else None,
        "solve_ms_p50": percentile(solve_ms, 0.5),
        "solve_ms_p95": percentile(solve_ms, 0.95),
        "control_ttfb_ms": control,
        "new_accounts": sum(1 for r in legit if r.new_account),
    }

    # -- attack outcome ------------------------------------------------------------------
    stolen = [r for r in attack if r.reached_upstream]
    attack_summary: dict[str, Any] = {
        "offered": sum(v for k, v in data.offered.items() if k != "legit"),
        "sent": len(attack),
        "not_sent": sum(1 for r in data.records if r.side == "attack" and r.outcome == "not_sent"),
        "reached_upstream": len(stolen),
        "success_rate": _rate(len(stolen), len(attack)),
        "degraded": sum(1 for r in stolen if r.outcome == "degraded"),
    }

    # -- phases --------------------------------------------------------------------------
    phases = []
    for name, start, end, is_attacked in windows:
        in_phase = [r for r in sent if start <= r.t_arrival - t0 < end]
        lp = [r for r in in_phase if r.side == "legit"]
        ap = [r for r in in_phase if r.side == "attack"]
        phases.append({
            "name": name, "start_s": round(start, 1), "end_s": round(end, 1), "attacked": is_attacked,
            "legit_calls": len(lp), "legit_refused": sum(1 for r in lp if _refused(r)),
            "attack_calls": len(ap), "attack_reached": sum(1 for r in ap if r.reached_upstream),
            "spend_per_min_usd": per_minute("all", start, min(end, run_seconds)),
        })  # fmt: skip

    # -- under-attack mode ---------------------------------------------------------------
    events: list[dict[str, Any]] = [
        {"event": e.get("event"), "subject": e.get("subject"), "at_s": round(float(e.get("at", 0)) - t0, 2),
         "reason": e.get("reason")}
        for e in data.alerts
    ]  # fmt: skip
    engaged = [e for e in events if e["event"] == "spike/under_attack"]
    released = [e for e in events if e["event"] == "spike/normal"]
    spike = {
        "events": events,
        "engaged_at_s": engaged[0]["at_s"] if engaged else None,
        "engaged_after_attack_start_s": (engaged[0]["at_s"] - spike_start)
        if engaged and spike_start is not None else None,
        "released_at_s": released[-1]["at_s"] if released else None,
        "intervals": _intervals(events, run_seconds),
    }  # fmt: skip

    # -- economics -----------------------------------------------------------------------
    econ = profile.economics
    economics: list[dict[str, Any]] = []
    for name in data.attack_kinds:
        recs = [r for r in attack if r.actor == name]
        if not recs:
            continue
        gb = sum(r.bytes_up + r.bytes_down for r in recs) / 1e9
        accounts = sum(1 for r in recs if r.new_account)
        # Measured CPU where the client solved itself; the SDK transports' solves (no
        # timing of their own) at this machine's Python solver speed.
        core_s = sum(r.cpu_s if r.cpu_s else r.hashes / data.hash_rate for r in recs)
        hourly = econ.browser_usd_per_hour if name in BROWSER_ACTORS else econ.compute_usd_per_core_hour
        cost = gb * econ.proxy_usd_per_gb + accounts * econ.account_usd + core_s / 3600 * hourly
        n_stolen = sum(1 for r in recs if r.reached_upstream)
        values = stolen_value.get(name, [])
        value = statistics.fmean(values) * econ.resale_fraction if values else None
        devices = max(sum(1 for r in recs if r.new_device), len({r.device for r in recs if r.device}))
        addresses = len({r.ip for r in recs if r.ip})
        economics.append({
            "actor": name, "calls": len(recs), "stolen": n_stolen,
            "proxy_gb": round(gb, 6), "accounts": accounts, "compute_core_s": round(core_s, 2),
            "devices": devices, "addresses": addresses,
            # What one device key, one proxy exit and one second of compute bought the attacker.
            "stolen_per_device": n_stolen / devices if devices else None,
            "stolen_per_address": n_stolen / addresses if addresses else None,
            "stolen_per_cpu_s": n_stolen / core_s if core_s else None,
            "cost_usd": round(cost, 6),
            "cost_per_call_usd": cost / len(recs),
            "cost_per_stolen_call_usd": cost / n_stolen if n_stolen else None,
            "resale_value_per_call_usd": value,
            "profitable": bool(value is not None and n_stolen and value > cost / n_stolen),
        })  # fmt: skip
    total_cost = sum(e["cost_usd"] for e in economics)
    all_values = [v for vs in stolen_value.values() for v in vs]
    economics_total = {
        "cost_usd": round(total_cost, 6),
        "stolen": len(stolen),
        "cost_per_stolen_call_usd": total_cost / len(stolen) if stolen else None,
        "resale_value_per_call_usd": statistics.fmean(all_values) * econ.resale_fraction if all_values else None,
        "prices": econ.model_dump(),
        "hash_rate": round(data.hash_rate),
    }

    # -- series for the charts -----------------------------------------------------------
    n_buckets = max(1, math.ceil(run_seconds / bucket))
    calls_series: dict[str, list[int]] = {}
    for name in names:
        counts = [0] * n_buckets
        for r in data.records:
            if r.actor == name and r.outcome != "not_sent":
                i = int((r.t_arrival - t0) // bucket)
                if 0 <= i < n_buckets:
                    counts[i] += 1
        calls_series[name] = counts
    latency_p50, latency_p95 = [], []
    for i in range(n_buckets):
        vals = [
            (r.t_first_byte - r.t_start) * 1000 - (control or 0.0)
            for r in legit
            if r.reached_upstream and r.t_first_byte and int((r.t_arrival - t0) // bucket) == i
        ]
        latency_p50.append(percentile(vals, 0.5))
        latency_p95.append(percentile(vals, 0.95))
    series = {
        "bucket_s": bucket,
        "n": n_buckets,
        "calls": calls_series,
        "spend_usd": {
            side: [round(spend_series[side].get(i, 0.0), 6) for i in range(n_buckets)] for side in ("legit", "attack")
        },
        "legit_added_ms_p50": latency_p50,
        "legit_added_ms_p95": latency_p95,
        "phases": [{"name": w[0], "start_s": w[1], "end_s": w[2], "attacked": w[3]} for w in windows],
    }

    # When the attackers' CPU share could not send everything offered, the spend they
    # would have caused is extrapolated per attacker at its measured success (what each
    # sent call cost): the goal is judged on the larger of the two figures.
    extra = 0.0
    for a in actors:
        if a["side"] == "attack" and a["sent"] and a["offered"] > a["sent"]:
            extra += a["spend_usd"] * (a["offered"] / a["sent"] - 1)
    spike_minutes = (spike_window[1] - spike_window[0]) / 60 if spike_window else 0.0
    extrapolated_ratio = None
    if spend_ratio is not None and baseline_spend and spike_spend is not None and spike_minutes > 0:
        extrapolated_ratio = (spike_spend + extra / spike_minutes) / baseline_spend
    not_sent_share = attack_summary["not_sent"] / attack_summary["offered"] if attack_summary["offered"] else 0.0
    judged_ratio = spend_ratio
    if extrapolated_ratio is not None and not_sent_share > 0.05:
        judged_ratio = max(spend_ratio or 0.0, extrapolated_ratio)

    # -- goals ---------------------------------------------------------------------------
    g = profile.goals
    goals = [
        _goal("attack success rate", attack_summary["success_rate"], g.attack_success_max, "ratio"),
        _goal("legit false-refusal rate", friction["false_refusal_rate"], g.legit_false_refusal_max, "ratio"),
        _goal("legit p50 added latency", friction["added_ms_p50"], g.legit_p50_added_ms_max, "ms"),
        _goal("upstream spend during the spike / pre-spike baseline", judged_ratio, g.spike_spend_ratio_max, "x"),
    ]
    if spike_start is None:
        goals[0]["status"] = goals[3]["status"] = "n/a"
    for goal in goals:
        goal["why"] = []
    if goals[0]["status"] == "missed":
        goals[0]["why"] = _why_attack(data, actors, attack_summary, g.attack_success_max)
    if goals[3]["status"] == "missed":
        goals[3]["why"] = _why_spend(spend_actor, legit_ratio, g.spike_spend_ratio_max)

    settings = data.settings
    return {
        "tokenward_simulate": 1,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": _cpus(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": {k: round(v, 2) for k, v in data.load.items()},
        },
        "run": {
            "profile": profile.name,
            "description": profile.description,
            "seed": data.seed,
            "duration_scale": settings.duration_scale,
            "hold_minutes": settings.hold_minutes,
            "max_requests": settings.max_requests,
            "policy": data.policy_source,
            "target": data.target,
            "managed": settings.target is None,
            "duration_s": round(run_seconds, 1),
            "timeline_s": round(data.timeline.duration, 1),
            "attack_mix": {k: round(v, 3) for k, v in data.attack_kinds.items()},
        },
        "notes": data.notes,
        "not_run": data.not_run,
        "goals": goals,
        "attack": attack_summary,
        "legit": friction,
        "spend": {
            "legit_usd": round(spend_side["legit"], 6),
            "attack_usd": round(spend_side["attack"], 6),
            "unattributed_usd": round(unattributed, 6),
            "baseline_usd_per_min": baseline_spend,
            "spike_usd_per_min": spike_spend,
            "spike_ratio": spend_ratio,
            "baseline_window_s": [base_from, spike_start] if spike_start is not None else None,
            "legit_only_spike_ratio": legit_ratio,
            "extrapolated_spike_ratio": extrapolated_ratio,
            "attack_not_sent_share": not_sent_share,
            "by_actor": {k: round(v, 6) for k, v in sorted(spend_actor.items(), key=lambda kv: -kv[1])},
        },
        "under_attack": spike,
        "actors": actors,
        "phases": phases,
        "economics": economics,
        "economics_total": economics_total,
        "series": series,
    }


# Attackers whose SDK, script or headless-browser fingerprints (or, for the stealth farm,
# a prompt with no input behind it) give them away, but only on a route that expects
# browsers (clients: browser; docs/risk.md#weights).
_FINGERPRINTED = ("adapter-openai", "adapter-anthropic", "native-solver", "headless-farm", "stealth-farm")


def _why_attack(data: RunData, actors: list[dict[str, Any]], attack: dict[str, Any], limit: float) -> list[str]:
    """Plain sentences: which attackers got through, and the policy setting that let them."""
    through = sorted((a for a in actors if a["side"] == "attack" and a["reached_upstream"]),
                     key=lambda a: -a["reached_upstream"])  # fmt: skip
    out = []
    if through:
        out.append("got through: " + ", ".join(f"{a['actor']} {a['reached_upstream']} of {a['sent']}"
                                               + (" (after solving a harder challenge)" if a["met_a_challenge"]
                                                  else "") for a in through))  # fmt: skip
    explained = set()
    policy = data.policy
    if policy is not None:
        from .services import CHAT_ROUTE

        chat = policy.route_for(CHAT_ROUTE)
        anthropic = next((r for r in policy.routes if r.protect and r.api.value == "anthropic"
                          and not r.path.endswith("*")), None)  # fmt: skip
        loose: dict[str, list[str]] = {}
        routes = {}
        for a in through:
            route = anthropic if a["actor"] == "adapter-anthropic" else chat
            if a["actor"] in _FINGERPRINTED and route is not None and route.clients != "browser":
                loose.setdefault(route.path, []).append(a["actor"])
                routes[route.path] = route
        for path, names in loose.items():
            clients = routes[path].clients
            page = (
                "the simulated site's page calls it: a route only your own page calls should say clients: browser"
                if path == CHAT_ROUTE
                else f"the simulated site's page never calls it (only {CHAT_ROUTE}): if no API client of yours "
                "does either, remove it; if only your page does, say clients: browser"
            )
            out.append(
                f"{path} accepts {'any client' if clients == 'any' else 'server clients'} (clients: {clients}), "
                f"so the SDK, script, headless-browser and missing-input evidence against {', '.join(names)} "
                "does not count there; "
                f"{page} (docs/risk.md)"
            )
            explained.update(names)
        imp = next((a for a in through if a["actor"] == "impersonator"), None)
        if imp is not None:
            carried = ", ".join(imp["forwarded_with"]) or "no signal"
            out.append(
                f"impersonator (curl_cffi with Chrome's TLS, the page's headers and a cloned signals report) carried "
                f"only {carried}, below the lowest threshold: if your edge keeps browsers' header order, weigh "
                "client/header-order 4; accounts (identity.jwt with expect_account) and per-account limits and "
                "budgets bind it otherwise (examples/support-bot/policy.yaml does both)"
            )
            explained.add("impersonator")
    if any(a["met_a_challenge"] and a["actor"] not in explained for a in through):
        out.append("a challenge only costs a script a harder proof: give the signals these calls carried enough "
                   "weight to throttle or block (weights:, docs/signals.md)")  # fmt: skip
    sent = attack["sent"]
    if sent and attack["reached_upstream"] == 1 and 1 / sent > limit:
        out.append(f"one stolen call of {sent} is {100 / sent:.1f}%: this run has too few calls to resolve a "
                   f"{100 * limit:g}% goal")  # fmt: skip
    return out


def _why_spend(spend_actor: dict[str, float], legit_ratio: float | None, limit: float) -> list[str]:
    out = []
    attack_usd = sum(v for k, v in spend_actor.items() if k not in LEGIT_ACTORS)
    if attack_usd > 0:
        out.append(f"attack calls that reached the model cost ${attack_usd:.4f} (see attack success rate)")
    if legit_ratio is not None and legit_ratio > limit:
        out.append(
            f"legit users' spend alone moved {legit_ratio:.2f}x between the baseline and the attack (their "
            "conversations grow turn by turn): this run is too short to resolve a "
            f"{limit:.2f}x goal; judge spend on --profile incident"
        )
    return out


def _goal(name: str, value: float | None, limit: float, unit: str) -> dict[str, Any]:
    status = "n/a" if value is None else ("met" if value <= limit else "missed")
    return {"goal": name, "value": value, "limit": limit, "unit": unit, "status": status}


def _intervals(events: list[dict[str, Any]], end: float) -> list[tuple[float, float]]:
    """Periods (seconds from the start) during which any route was under attack."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for e in sorted(events, key=lambda e: e["at_s"]):
        if e["event"] == "spike/under_attack" and start is None:
            start = e["at_s"]
        elif e["event"] == "spike/normal" and start is not None:
            out.append((start, e["at_s"]))
            start = None
    if start is not None:
        out.append((start, end))
    return out


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
