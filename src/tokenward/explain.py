"""One logged decision in words: ``tokenward explain REQUEST_ID`` (docs/operations.md).

A pure function of the decision's log row and the policy it was judged under: what
happened, every signal with its weight and evidence, the risk score against the route's
thresholds, the rule that matched, and what would have changed the outcome. The policy
given may differ from the one in force at the time: the explanation says so when the
logged score and the policy's weights disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from .policy import Policy

__all__ = ["explain"]

# What a refusal code means for the client, and what would have got it through.
_BECAUSE = {
    "proof_required": "it carried no proof of work: a fresh, solved challenge was needed",
    "proof_invalid": "its proof was malformed or not signed by this gateway",
    "proof_expired": "its challenge had expired (or was issued before the gateway restarted)",
    "proof_replayed": "its proof had already been used: every request needs a fresh one",
    "body_mismatch": "its proof was solved for other bytes than the body it sent",
    "route_mismatch": "its challenge was issued for another route",
    "challenge": "its proof was easier than the risk score asked for",
    "throttled": "it was over a rate limit or the risk score's throttle threshold",
    "budget_exhausted": "a spending budget that applies to it was used up",
    "blocked": "a deny rule or the risk score's block threshold refused it",
    "bad_request": "its request could not be read as a call of the route's API",
    "spend_limit": "the whole service was over its spend ceiling (the breaker was open)",
    "store_unavailable": "the shared store could not answer (fail_closed)",
}


# A challenged call that came back with the harder proof (docs/risk.md, "Thresholds").
_AFTER_CHALLENGE = {
    "/answered": "it came back with the harder proof but nothing new about who sent it (the threshold's `answered`)",
    "/automated": "it came back with the harder proof still carrying a sign of automation, from a device with no "
    "answered call behind it (the threshold's `automated`)",
}


_PROOF_CODES = {"proof_required", "proof_invalid", "proof_expired", "proof_replayed", "body_mismatch", "route_mismatch"}


def explain(row: dict[str, Any], policy: Policy | None = None) -> list[str]:
    """The lines that explain one decision log row (as ``log tail --json`` prints it)."""
    lines = [_headline(row), _outcome(row)]
    signals = row.get("signals") or []
    lines.append(f"signals ({len(signals)}):")
    weights = {name: w for name, w in (row.get("risk") or {}).get("contributions", [])}
    for s in signals:
        weight = weights.get(s["name"], s.get("score", 0.0))
        evidence = orjson.dumps(s.get("evidence") or {}, default=str).decode()
        lines.append(f"  {weight:+6g}  {s['name']}  {evidence}")
    lines.extend(_risk(row, policy))
    lines.extend(_would_change(row, policy))
    return lines


def _headline(row: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(row["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    route = f" (route {row['route']})" if row.get("route") else " (no protected route)"
    return f"request {row['request_id']} at {when}: {row['method']} {row['path']}{route} from {row['client_ip']}"


def _outcome(row: dict[str, Any]) -> str:
    action, code = row["action"], row.get("code")
    shadow = f", shadow mode: enforce would have done {row['shadow_action']}" if row.get("shadow_action") else ""
    answer = f"{row['status']} {code}" if code else str(row["status"])
    because = f": {_BECAUSE[code]}" if code in _BECAUSE else ""
    for suffix, why in _AFTER_CHALLENGE.items():
        if str(row.get("name", "")).endswith(suffix):
            because = f": {why}"
    served = ""
    if row.get("upstream_status") is not None:
        cost = row.get("cost_usd")
        served = f"; the upstream answered {row['upstream_status']}" + (f", cost ${cost:.6g}" if cost else "")
    error = f"; error: {row['error']}" if row.get("error") else ""
    return f"outcome: {action} ({answer}) by {row['name']}{because}{shadow}{served}{error}"


def _thresholds(row: dict[str, Any], policy: Policy | None) -> list[tuple[float, str]]:
    if policy is None or not row.get("route"):
        return []
    route = policy.route_for(row["route"])
    if route is None:
        return []
    return [(t.score, t.action) for t in policy.engine_for(route).thresholds]


def _risk(row: dict[str, Any], policy: Policy | None) -> list[str]:
    risk = row.get("risk")
    if not risk and str(row.get("name", "")).startswith("proof/"):
        return ["risk: not weighed (a request without a proof that holds is refused before its signals are read)"]
    if not risk:
        return ["risk: not scored (the request was settled before its signals were weighed)"]
    reached = risk.get("threshold")
    lines = [
        f"risk score {risk['score']:g}" + (f", reached the threshold at {reached:g}" if reached is not None else "")
    ]
    thresholds = _thresholds(row, policy)
    if thresholds:
        lines.append("  thresholds of the route: " + ", ".join(f"{s:g} {a}" for s, a in sorted(thresholds)))
    if risk.get("rule"):
        lines.append(f"  rule that matched: {risk['rule']}")
    return lines


def _would_change(row: dict[str, Any], policy: Policy | None) -> list[str]:
    code, name = row.get("code"), row["name"]
    risk = row.get("risk") or {}
    out = ["what would have changed the outcome:"]
    if code in (
        "proof_required",
        "proof_invalid",
        "proof_expired",
        "proof_replayed",
        "body_mismatch",
        "route_mismatch",
    ):
        out.append("  a fresh proof, solved over this exact body for this route (the refusal carried a challenge)")
    elif name.startswith("limit/"):
        out.append(f"  fewer requests under the limit {name.removeprefix('limit/')} (or a higher limit in the policy)")
    elif name.startswith("budget/"):
        out.append(f"  room in the budget {name.removeprefix('budget/')} (it refills as its window passes)")
    elif name.startswith("rule/"):
        out.append(f"  the rule {name.removeprefix('rule/')} not matching (its conditions are in the policy)")
    elif risk.get("threshold") is not None:
        out.extend(_below(risk, _thresholds(row, policy)))
    elif row["action"] in ("allow", "degrade") and not code:
        lowest = min((s for s, _ in _thresholds(row, policy)), default=None)
        if lowest is not None and risk:
            out.append(f"  a score of {lowest:g} or more (it was {risk.get('score', 0):g}) would have met a threshold")
        else:
            out.append("  nothing in the log says what would have refused it")
    else:
        out.append("  see the outcome above: this refusal does not depend on the score")
    return out


def _below(risk: dict[str, Any], thresholds: list[tuple[float, str]]) -> list[str]:
    """The fewest signals whose weight, taken away, brings the score under the threshold reached."""
    reached = float(risk["threshold"])
    below = max((s for s, _ in thresholds if s < reached), default=None)
    score = float(risk["score"])
    removed: list[tuple[str, float]] = []
    for sig, weight in sorted(risk.get("contributions", []), key=lambda c: -c[1]):
        if score < reached:
            break
        if weight > 0:
            removed.append((sig, weight))
            score -= weight
    names = ", ".join(f"{n} ({w:+g})" for n, w in removed)
    outcome = "allowed" if below is None or score < below else "judged at the lower threshold"
    return [f"  without {names} the score would have been {score:g}, under {reached:g}: {outcome}"]
