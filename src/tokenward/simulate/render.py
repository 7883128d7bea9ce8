"""Writing the report: ``report.json`` (for machines), ``report.md`` and a
self-contained ``report.html`` (inline CSS and SVG; it loads nothing)."""

from __future__ import annotations

import json
import re
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from .charts import hbar_chart, line_chart, stacked_chart

__all__ = ["render_html", "render_markdown", "write_report"]


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    paths["md"].write_text(render_markdown(report))
    paths["html"].write_text(render_html(report))
    return paths


def _json_default(o: object) -> object:
    if isinstance(o, tuple | set):
        return list(o)
    return str(o)


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------
def pct(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f} ms"


def usd(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"${v:,.2f}" if abs(v) >= 1 else f"${v:.4f}"


_YIELD_HEADERS = ["devices", "addresses", "stolen / device", "stolen / address", "stolen / CPU-second"]


def _yields(e: dict[str, Any]) -> list[str]:
    def per(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3g}"

    return [str(e["devices"]), str(e["addresses"]), per(e["stolen_per_device"]), per(e["stolen_per_address"]),
            per(e["stolen_per_cpu_s"])]  # fmt: skip


def times(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _value(goal: dict[str, Any]) -> str:
    unit, v = goal["unit"], goal["value"]
    return {"ratio": pct, "ms": ms, "x": times}[unit](v)


def _limit(goal: dict[str, Any]) -> str:
    unit, v = goal["unit"], goal["limit"]
    return {"ratio": lambda x: pct(x, 1), "ms": ms, "x": times}[unit](v)


def _when(s: float | None) -> str:
    if s is None:
        return "n/a"
    sign = "-" if s < 0 else ""
    s = abs(s)
    return f"{sign}{int(s // 60)}:{int(s % 60):02d}"


def _load(report: dict[str, Any]) -> str:
    """The machine's load around the run: everything (gateway, LLM, clients) shared it."""
    load = report["machine"].get("load_average") or {}
    if not load:
        return "n/a"
    return f"{load.get('start_1min', 0):.1f} at the start, {load.get('end_15min', 0):.1f} over the last 15 min"


def _extrapolated(spend: dict[str, Any]) -> str:
    share = spend.get("attack_not_sent_share") or 0.0
    if share <= 0.05 or spend.get("extrapolated_spike_ratio") is None:
        return ""
    return (
        f" {pct(share, 0)} of the offered attack calls were not sent (the attackers' CPU share): had they been "
        f"sent at the measured success rates, the ratio would have been "
        f"**{times(spend['extrapolated_spike_ratio'])}** (the goal is judged on the larger figure)."
    )


def _actor_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in report["actors"]:
        rows.append([
            a["actor"], str(a["offered"]), str(a["sent"]), str(a["allowed"]), str(a["degraded"]),
            str(a["challenged"]), str(a["throttled"]), str(a["blocked"]), str(a["spend_limit"]), str(a["errors"]),
            str(a["met_a_challenge"]), pct(a["success_rate"], 1), usd(a["spend_usd"]),
        ])  # fmt: skip
    return rows


ACTOR_HEAD = ["actor", "offered", "sent", "allowed", "degraded", "challenged", "throttled", "blocked",
              "spend limit", "errors", "met a challenge", "reached model", "upstream $"]  # fmt: skip


def _explanations(report: dict[str, Any]) -> list[str]:
    """Plain sentences on goals that were missed: what the numbers say about why."""
    out = []
    by = {g["goal"]: g for g in report["goals"]}
    attack = report["attack"]
    goal = by["attack success rate"]
    if goal["status"] == "missed":
        worst = sorted((a for a in report["actors"] if a["side"] == "attack" and a["reached_upstream"]),
                       key=lambda a: -a["reached_upstream"])  # fmt: skip
        parts = []
        for a in worst:
            carried = "; ".join(f"{k} ({v})" for k, v in a["forwarded_with"].items()) or "not in the log"
            parts.append(f"{a['actor']} {a['reached_upstream']} of {a['sent']} (forwarded requests carried: {carried})")
        out.append(
            f"Attack success {pct(attack['success_rate'])}: " + "; ".join(parts) + ". A request is refused only "
            "when its signals reach a threshold or it meets a limit, a budget or the spend breaker; these did not."
        )
    goal = by["legit false-refusal rate"]
    if goal["status"] == "missed":
        codes = ", ".join(f"{k}: {v}" for k, v in report["legit"]["refusals_by_code"].items())
        out.append(f"Legit refusals {pct(goal['value'])} ({codes}).")
    goal = by["legit p50 added latency"]
    if goal["status"] == "missed":
        out.append(
            f"Legit p50 added latency {ms(goal['value'])}: proof solving alone took "
            f"{ms(report['legit']['solve_ms_p50'])} at the median; {report['legit']['met_a_challenge']} calls met "
            "a challenge and paid a second round trip."
        )
    goal = by["upstream spend during the spike / pre-spike baseline"]
    if goal["status"] == "missed":
        s = report["spend"]
        out.append(
            f"Spend during the attack {usd(s['spike_usd_per_min'])}/min vs {usd(s['baseline_usd_per_min'])}/min "
            f"before it ({times(s['spike_ratio'])}); attackers' calls cost {usd(s['attack_usd'])} in total, legit "
            f"users' {usd(s['legit_usd'])}." + _extrapolated(s)
        )
    for g in report["goals"]:  # what the report found about why (report.py: goal["why"])
        for w in g.get("why") or []:
            if not w.startswith(("got through", "attack calls that")):
                out.append(f"{g['goal'].capitalize()}: {w}.")
    return out


def _not_run(report: dict[str, Any]) -> str:
    listed = "; ".join(f"{a} ({why})" for a, why in report["not_run"].items())
    return f"**Not run** (--skip-missing): {listed}. The figures cover the other actors only."


def _inline(text: str) -> str:
    """The report's inline Markdown (``**bold**``, ```code```) as HTML; the rest escaped."""
    html = escape(text)
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html)


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------
def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    run, attack, legit, spend = report["run"], report["attack"], report["legit"], report["spend"]
    out = [
        f"# tokenward simulate: `{run['profile']}` against {run['policy']}",
        "",
        f"{run['description'].strip()}".strip(),
        "",
        f"Seed {run['seed']}, duration scale {run['duration_scale']:g}, {run['duration_s'] / 60:.1f} minutes "
        f"on {report['machine']['cpus']} CPUs ({report['generated_at']}; load average {_load(report)}). "
        f"Target: `{run['target']}`.",
        "",
        "## Goals",
        "",
        _md_table(
            ["goal", "value", "limit", "status"],
            [[g["goal"], _value(g), _limit(g), g["status"].upper()] for g in report["goals"]],
        ),
        "",
    ]
    if report.get("not_run"):
        out += [_not_run(report), ""]
    why = _explanations(report)
    if why:
        out += ["Where the goals were missed:", ""] + [f"* {w}" for w in why] + [""]
    ua = report["under_attack"]
    intervals = ", ".join(f"{_when(a)}-{_when(b)}" for a, b in ua["intervals"]) or "never"
    out += [
        "## Summary",
        "",
        f"* Attack calls: {attack['sent']} sent ({attack['not_sent']} more offered but not sent: the attackers' CPU "
        f"share could not keep up), {attack['reached_upstream']} reached the model "
        f"(**{pct(attack['success_rate'])}**, {attack['degraded']} of them degraded).",
        f"* Legit calls: {legit['calls']}, refused {legit['refused']} (**{pct(legit['false_refusal_rate'])}**), "
        f"{legit['degraded']} answered degraded; {legit['met_a_challenge']} met a challenge and retried. "
        f"Added latency p50 **{ms(legit['added_ms_p50'])}**, "
        f"p95 {ms(legit['added_ms_p95'])} (proof solving p50 {ms(legit['solve_ms_p50'])}; the demo LLM's own time "
        f"to first byte, {ms(legit['control_ttfb_ms'])}, is subtracted).",
        f"* Upstream spend: legit {usd(spend['legit_usd'])}, attackers {usd(spend['attack_usd'])}. Per minute: "
        f"{usd(spend['baseline_usd_per_min'])} before the attack (its second half), {usd(spend['spike_usd_per_min'])} "
        f"while it was offered (**{times(spend['spike_ratio'])}**; legit users' spend alone moved "
        f"{times(spend['legit_only_spike_ratio'])}: the noise floor of this figure)." + _extrapolated(spend),
        f"* Under-attack mode: engaged at {_when(ua['engaged_at_s'])} "
        f"({_when(ua['engaged_after_attack_start_s'])} after attack traffic began); periods: {intervals}.",
        "",
        "## Per actor",
        "",
        _md_table(ACTOR_HEAD, _actor_rows(report)),
        "",
        "Decisions and signals the gateway logged, per actor:",
        "",
    ]
    for a in report["actors"]:
        dec = ", ".join(f"`{k}` {v}" for k, v in a["decisions"].items()) or "none logged"
        sig = ", ".join(f"`{k}` {v}" for k, v in a["signals"].items()) or "none"
        out.append(f"* **{a['actor']}** — decisions: {dec}; signals: {sig}")
        for e in a["error_samples"]:
            out.append(f"  * client error: {e}")
    out += ["", "## Phases", ""]
    out.append(_md_table(
        ["phase", "from", "to", "legit calls", "legit refused", "attack calls", "attack reached model", "$ / min"],
        [[p["name"], _when(p["start_s"]), _when(p["end_s"]), str(p["legit_calls"]), str(p["legit_refused"]),
          str(p["attack_calls"]), str(p["attack_reached"]), usd(p["spend_per_min_usd"])] for p in report["phases"]],
    ))  # fmt: skip
    et = report["economics_total"]
    out += [
        "",
        "## Attacker economics",
        "",
        f"Prices: residential proxy traffic ${et['prices']['proxy_usd_per_gb']:g}/GB, a throwaway account "
        f"${et['prices']['account_usd']:g}, compute ${et['prices']['compute_usd_per_core_hour']:g}/core-hour "
        f"(a hosted headless browser ${et['prices']['browser_usd_per_hour']:g}/hour) "
        f"(proofs at {et['hash_rate']:,} hashes/s, this machine's Python solver); a stolen call resells for "
        f"{100 * et['prices']['resale_fraction']:g}% of what it cost the victim.",
        "",
        _md_table(
            ["attacker", "calls", "stolen", "proxy GB", "accounts", "core-seconds", "cost", "cost / call",
             "cost / stolen call", "resale / call", "profitable"],
            [[e["actor"], str(e["calls"]), str(e["stolen"]), f"{e['proxy_gb']:.4f}", str(e["accounts"]),
              f"{e['compute_core_s']:.1f}", usd(e["cost_usd"]), usd(e["cost_per_call_usd"]),
              usd(e["cost_per_stolen_call_usd"]), usd(e["resale_value_per_call_usd"]),
              "yes" if e["profitable"] else "no"] for e in report["economics"]],
        ),
        "",
        "What each resource bought the attacker (calls that reached the model):",
        "",
        _md_table(["attacker", *_YIELD_HEADERS], [[e["actor"], *_yields(e)] for e in report["economics"]]),
        "",
        f"All attackers: {usd(et['cost_usd'])} for {et['stolen']} stolen calls = "
        f"**{usd(et['cost_per_stolen_call_usd'])} per stolen call**, against a resale value of "
        f"{usd(et['resale_value_per_call_usd'])}.",
        "",
        "## Simulation settings",
        "",
    ]  # fmt: skip
    out += [f"* {n}" for n in report["notes"]]
    out += ["", "The charts are in `report.html`; every figure is in `report.json`.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------
def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    run, legit, spend = report["run"], report["legit"], report["spend"]
    series = report["series"]
    shade = [tuple(x) for x in report["under_attack"]["intervals"]]
    phases = series["phases"]
    b = series["bucket_s"]
    parts = [
        f"<h1>tokenward simulate: {escape(run['profile'])}</h1>",
        f'<p class="sub">Policy: {escape(run["policy"])} · seed {run["seed"]} · duration scale '
        f"{run['duration_scale']:g} · {run['duration_s'] / 60:.1f} min on {report['machine']['cpus']} CPUs "
        f"(load average {escape(_load(report))}) · {escape(report['generated_at'])}</p>",
        "<h2>Goals</h2>",
        '<div class="cards">',
    ]
    for g in report["goals"]:
        cls = {"met": "met", "missed": "missed"}.get(g["status"], "na")
        parts.append(
            f'<div class="card {cls}"><div class="label">{escape(g["goal"])}</div>'
            f'<div class="value">{escape(_value(g))}</div>'
            f'<div class="status">{escape(g["status"].upper())} (limit {escape(_limit(g))})</div></div>'
        )
    parts.append("</div>")
    if report.get("not_run"):
        parts.append(f'<p class="why">{_inline(_not_run(report))}</p>')
    why = _explanations(report)
    if why:
        parts.append('<div class="why"><p><strong>Where the goals were missed</strong></p><ul>'
                     + "".join(f"<li>{_inline(w)}</li>" for w in why) + "</ul></div>")  # fmt: skip
    parts.append("<h2>Traffic</h2>")
    parts.append(stacked_chart(
        f"Calls per {b:g} s by actor (shaded: under-attack mode)",
        {k: [float(x) for x in v] for k, v in series["calls"].items()}, b,
        y_label=f"calls per {b:g} s", shade=shade, phases=phases,
    ))  # fmt: skip
    parts.append("<h2>Upstream spend</h2>")
    parts.append(stacked_chart(
        f"Upstream dollars per {b:g} s: legit users vs attackers", series["spend_usd"], b,
        unit="$", y_label=f"USD per {b:g} s", shade=shade, phases=phases, bars=True,
    ))  # fmt: skip
    parts.append(
        f"<p>Legit {escape(usd(spend['legit_usd']))}, attackers {escape(usd(spend['attack_usd']))}. "
        f"Per minute: {escape(usd(spend['baseline_usd_per_min']))} before the attack, "
        f"{escape(usd(spend['spike_usd_per_min']))} while it was offered ({escape(times(spend['spike_ratio']))}).</p>"
    )
    parts.append("<h2>What happened to each actor's calls</h2>")
    rows = []
    for a in report["actors"]:
        rows.append((a["actor"], {"allowed": a["allowed"], "degraded": a["degraded"], "challenged": a["challenged"],
                                  "throttled": a["throttled"], "blocked": a["blocked"],
                                  "spend_limit": a["spend_limit"], "errors": a["errors"],
                                  "not_sent": a["not_sent"]}))  # fmt: skip
    parts.append(hbar_chart("Final outcome of each actor's calls", rows))
    parts.append(_html_table(ACTOR_HEAD, _actor_rows(report)))
    parts.append("<h2>What legit users felt</h2>")
    parts.append(line_chart(
        f"Added latency of legit calls per {b:g} s (p50, p95)",
        {"p50": series["legit_added_ms_p50"], "p95": series["legit_added_ms_p95"]}, b,
        y_label="ms", shade=shade, phases=phases,
    ))  # fmt: skip
    parts.append(
        f"<p>{legit['calls']} legit calls, {legit['refused']} refused ({escape(pct(legit['false_refusal_rate']))}), "
        f"{legit['met_a_challenge']} met a challenge. Added latency p50 {escape(ms(legit['added_ms_p50']))}, "
        f"p95 {escape(ms(legit['added_ms_p95']))}; proof solving p50 {escape(ms(legit['solve_ms_p50']))}.</p>"
    )
    ua = report["under_attack"]
    parts.append("<h2>Under-attack mode</h2>")
    if ua["events"]:
        parts.append(_html_table(["event", "route", "at", "reason"],
                                 [[e["event"] or "", e["subject"] or "", _when(e["at_s"]), e["reason"] or ""]
                                  for e in ua["events"]]))  # fmt: skip
    else:
        parts.append("<p>No state change was reported by the gateway.</p>")
    parts.append("<h2>Decisions and signals per actor</h2>")
    parts.append(_html_table(
        ["actor", "decisions", "signals"],
        [[a["actor"], ", ".join(f"{k} {v}" for k, v in a["decisions"].items()),
          ", ".join(f"{k} {v}" for k, v in a["signals"].items())] for a in report["actors"]],
    ))  # fmt: skip
    et = report["economics_total"]
    parts.append("<h2>Attacker economics</h2>")
    pr = et["prices"]
    parts.append(
        f"<p>Prices: residential proxy traffic ${pr['proxy_usd_per_gb']:g}/GB, a throwaway account "
        f"${pr['account_usd']:g}, compute ${pr['compute_usd_per_core_hour']:g}/core-hour, a hosted headless browser "
        f"${pr['browser_usd_per_hour']:g}/hour; a stolen call resells for {100 * pr['resale_fraction']:g}% of what "
        "it cost the victim.</p>"
    )
    parts.append(_html_table(
        ["attacker", "calls", "stolen", "proxy GB", "accounts", "core-s", "cost", "cost / stolen call",
         "resale / call"],
        [[e["actor"], str(e["calls"]), str(e["stolen"]), f"{e['proxy_gb']:.4f}", str(e["accounts"]),
          f"{e['compute_core_s']:.1f}", usd(e["cost_usd"]), usd(e["cost_per_stolen_call_usd"]),
          usd(e["resale_value_per_call_usd"])] for e in report["economics"]],
    ))  # fmt: skip
    parts.append(_html_table(["attacker", *_YIELD_HEADERS], [[e["actor"], *_yields(e)] for e in report["economics"]]))
    parts.append(
        f"<p>All attackers: {escape(usd(et['cost_usd']))} for {et['stolen']} stolen calls = "
        f"<strong>{escape(usd(et['cost_per_stolen_call_usd']))}</strong> per stolen call, against a resale value of "
        f"{escape(usd(et['resale_value_per_call_usd']))}.</p>"
    )
    parts.append("<h2>Phases</h2>")
    parts.append(_html_table(
        ["phase", "from", "to", "legit calls", "legit refused", "attack calls", "attack reached model", "$ / min"],
        [[p["name"], _when(p["start_s"]), _when(p["end_s"]), str(p["legit_calls"]), str(p["legit_refused"]),
          str(p["attack_calls"]), str(p["attack_reached"]), usd(p["spend_per_min_usd"])] for p in report["phases"]],
    ))  # fmt: skip
    parts.append("<h2>Simulation settings</h2><ul class=\"notes\">"
                 + "".join(f"<li>{_inline(n)}</li>" for n in report["notes"]) + "</ul>")  # fmt: skip
    template = Template((resources.files("tokenward.simulate") / "report_template.html").read_text())
    return template.substitute(title=escape(f"tokenward simulate: {run['profile']}"), body="\n".join(parts))
