"""Propose a route's purpose threshold from its own traffic (``tokenward calibrate``).

    tokenward calibrate --route PATH [--policy FILE] [--db FILE | --log URI] [--since 7d]
                        [--until WHEN] [--max-flag-rate 0.01] [--confidence 0.95]
                        [--method semantic|lexical] [--exclude-client IP/CIDR]
                        [--exclude-account ID] [--exclude-time START..END]
                        [--min-turns 200] [--max-risk SCORE] [--write POLICY [--force]] [--json]

Reads the purpose fits the decision log recorded for the route (the evidence of
``content/purpose-fit`` and ``content/off-purpose``: fit, threshold, scorer), keeps the
turns of requests that were otherwise allowed (a valid proof or signature, the risk
without the purpose signal below the route's lowest threshold, no refusing rule, no
excluded client, account or time range), assumes those are in purpose, and proposes per
scorer the highest threshold whose in-purpose flag rate is at most ``--max-flag-rate``
with ``--confidence`` (an exact binomial bound on the order statistic). It prints the
distribution of fits with the proposed and current thresholds marked, and with
``--write`` sets ``purpose.semantic_threshold`` / ``lexical_threshold`` of the route in
the policy file, changing nothing else in it (comments and layout are kept).

Exit codes: 0 a threshold was proposed (and written); 1 nothing to calibrate (unreadable
log, unknown route, no fits) or the policy could not be edited; 2 usage (bad option,
policy that does not load); 3 too few turns: the figures are printed with a warning and
nothing is written (``--force`` writes anyway).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .calibrate_write import PolicyEditError, snippet, write_threshold

if TYPE_CHECKING:
    from ..policy import Policy, RouteSettings

__all__ = ["Calibration", "Turn", "calibrate", "main", "read_turns"]

PURPOSE_SIGNALS = ("content/purpose-fit", "content/off-purpose")
PROOF_SIGNALS = ("proof/ok", "signature/ok")
KEYS = {"semantic": "semantic_threshold", "lexical": "lexical_threshold"}
STEP = 0.001  # fits are logged with 3 decimals: thresholds are proposed on that grid
MINOR_SHARE = 0.10  # a scorer with fewer of the route's turns is only mentioned (lexical fallbacks under load)


class CalibrationError(Exception):
    """Nothing to calibrate, or the policy cannot be edited (exit code 1)."""


@dataclass(frozen=True, slots=True)
class Turn:
    ts: float
    fit: float
    method: str
    threshold: float | None
    nearest: str
    excluded: str | None  # None: counted as in purpose; else why not


@dataclass(slots=True)
class Calibration:
    method: str
    target: float
    confidence: float
    fits: list[float]  # the in-purpose turns' fits, sorted
    others: list[float]  # the fits of the turns not counted
    threshold: float  # proposed
    flagged: int  # in-purpose turns of the log at or below the proposed threshold
    upper_bound: float  # the flag rate's upper confidence bound at the proposed threshold
    observed_threshold: float  # the plain empirical quantile (no confidence margin)
    observed_flagged: int
    needed: int  # turns needed for the bound to reach the target at all
    current: float | None
    current_flagged: int | None
    nearest_flagged: list[tuple[str, int]]
    others_flagged: int
    bounded: bool  # False: too few turns for the bound to reach the target at all
    warnings: list[str] = field(default_factory=list)

    @property
    def turns(self) -> int:
        return len(self.fits)

    def quantile(self, q: float) -> float:
        return self.fits[min(len(self.fits) - 1, max(0, math.ceil(q * len(self.fits)) - 1))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "key": KEYS.get(self.method),
            "turns": self.turns,
            "target_flag_rate": self.target,
            "confidence": self.confidence,
            "threshold": self.threshold,
            "flagged": self.flagged,
            "flag_rate": self.flagged / self.turns if self.turns else None,
            "upper_bound": self.upper_bound,
            "observed_threshold": self.observed_threshold,
            "observed_flagged": self.observed_flagged,
            "turns_needed": self.needed,
            "current_threshold": self.current,
            "current_flagged": self.current_flagged,
            "quantiles": {f"{q:g}": self.quantile(q) for q in (0.001, 0.01, 0.05, 0.1, 0.25, 0.5)},
            "nearest_of_flagged": dict(self.nearest_flagged),
            "not_counted": len(self.others),
            "not_counted_below_threshold": self.others_flagged,
            "histogram": [{"lo": lo, "hi": hi, "in_purpose": a, "not_counted": b} for lo, hi, a, b in histogram(self)],
            "bounded": self.bounded,
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------------------
# Statistics: an exact (Clopper-Pearson) bound on the order statistic
# --------------------------------------------------------------------------------------
def _binom_cdf(c: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= c), summed in log space (n may be in the millions)."""
    if c < 0:
        return 0.0
    if c >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq, base = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(1.0, sum(math.exp(base - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lp + (n - j) * lq)
                        for j in range(c + 1)))  # fmt: skip


def upper_bound(flagged: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound on a rate seen ``flagged`` times in ``n``."""
    if flagged >= n:
        return 1.0
    alpha, lo, hi = 1.0 - confidence, flagged / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _binom_cdf(flagged, n, mid) > alpha else (lo, mid)
    return hi


def allowed_flags(n: int, rate: float, confidence: float) -> int | None:
    """The most in-purpose turns a threshold may flag among ``n`` so that, with
    ``confidence``, it flags at most ``rate`` of traffic like them: the largest c with
    P(Binomial(n, rate) <= c) <= 1 - confidence. None when even 0 is too many (n too small)."""
    alpha = 1.0 - confidence
    c = -1
    while c + 1 < n and _binom_cdf(c + 1, n, rate) <= alpha:
        c += 1
    return c if c >= 0 else None


def turns_needed(rate: float, confidence: float) -> int:
    """The fewest turns with which a threshold flagging none of them shows ``rate``."""
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-rate))


def _below(fits: Sequence[float], index: int) -> float:
    """The threshold just below ``fits[index]`` (sorted): it flags fits[:index] at most."""
    if index >= len(fits):
        return 1.0
    return max(0.0, round(fits[index] - STEP, 3))


def _flagged(fits: Sequence[float], threshold: float) -> int:
    """Logged fits at or below the threshold: a logged fit equal to it may be a true fit
    just under it (fits are rounded to 3 decimals), so it counts as flagged."""
    return sum(1 for f in fits if f <= threshold + 1e-9)


def calibrate(
    turns: Sequence[Turn], method: str, rate: float, confidence: float, current: float | None, min_turns: int
) -> Calibration:
    fits = sorted(t.fit for t in turns if t.method == method and t.excluded is None)
    others = sorted(t.fit for t in turns if t.method == method and t.excluded is not None)
    if not fits:
        raise CalibrationError(f"no {method} fits of in-purpose turns to calibrate on")
    n = len(fits)
    c = allowed_flags(n, rate, confidence)
    needed = turns_needed(rate, confidence)
    threshold = _below(fits, 0 if c is None else c)
    observed = _below(fits, math.floor(rate * n))
    flagged = _flagged(fits, threshold)
    near = Counter(t.nearest or "-" for t in turns if t.method == method and t.excluded is None and t.fit <= threshold)
    cal = Calibration(
        method=method, target=rate, confidence=confidence, fits=fits, others=others, threshold=threshold,
        flagged=flagged, upper_bound=upper_bound(flagged, n, confidence), observed_threshold=observed,
        observed_flagged=_flagged(fits, observed), needed=needed, current=current,
        current_flagged=sum(1 for f in fits if f < current) if current is not None else None,
        nearest_flagged=near.most_common(5), others_flagged=_flagged(others, threshold), bounded=c is not None,
    )  # fmt: skip
    if n < min_turns:
        cal.warnings.append(f"only {n} in-purpose {method} turns (at least {min_turns} wanted): collect more traffic")
    if c is None:
        cal.warnings.append(
            f"with {n} turns no threshold can be shown to flag at most {rate:.2%} with {confidence:.0%} confidence"
            f" ({needed} turns needed): proposing the threshold just below every logged fit"
        )
    logged = {t.threshold for t in turns if t.method == method and t.threshold is not None}
    if len(logged) > 1:
        cal.warnings.append(
            f"the route's {method} threshold changed during the window ({', '.join(f'{x:g}' for x in sorted(logged))}):"
            " if its description or examples changed too, fits from before are not comparable (use --since)"
        )
    return cal


# --------------------------------------------------------------------------------------
# Reading the log
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Filters:
    since: float
    until: float
    max_risk: float
    allow_rules: frozenset[str]  # rules whose match does not make a request suspect
    clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    accounts: frozenset[str] = frozenset()
    times: tuple[tuple[float, float], ...] = ()


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _excluded(row: tuple[Any, ...], signals: list[dict[str, Any]], f: Filters) -> str | None:
    ts, client_ip, account, _, risk = row
    if any(a <= ts < b for a, b in f.times):
        return "excluded time range"
    if f.clients:
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            ip = None
        if ip is not None and any(ip in net for net in f.clients):
            return "excluded client"
    if account is not None and account in f.accounts:
        return "excluded account"
    if not any(s.get("name") in PROOF_SIGNALS for s in signals):
        return "no valid proof or signature"
    risk = _json(risk) or {}
    rule = risk.get("rule")
    if rule is not None and rule not in f.allow_rules:
        return f"matched rule {rule}"
    other = sum(float(w) for name, w in risk.get("contributions", ()) if name not in PURPOSE_SIGNALS)
    if other >= f.max_risk:
        return f"risk {f.max_risk:g} or more without the purpose signal"
    return None


def read_turns(run: Any, route: str, f: Filters) -> tuple[list[Turn], int]:
    """The route's logged purpose fits in the window, each marked counted or why not;
    and the number of the route's decisions read."""
    rows = run(
        "SELECT ts, client_ip, account, signals, risk FROM decisions WHERE route = ? AND ts >= ? AND ts < ?"
        " ORDER BY ts",
        [route, f.since, f.until],
    )  # fmt: skip
    turns: list[Turn] = []
    for row in rows:
        signals = _json(row[3]) or []
        fit = next((s.get("evidence") or {} for s in signals if s.get("name") in PURPOSE_SIGNALS), None)
        if not fit or not isinstance(fit.get("fit"), int | float):
            continue
        turns.append(
            Turn(
                ts=float(row[0]), fit=float(fit["fit"]), method=str(fit.get("method") or "unknown"),
                threshold=fit.get("threshold"), nearest=str(fit.get("nearest") or ""),
                excluded=_excluded(row, signals, f),
            )
        )  # fmt: skip
    return turns, len(rows)


def logged_routes(run: Any, since: float) -> list[str]:
    rows = run("SELECT DISTINCT route FROM decisions WHERE ts >= ? AND route IS NOT NULL", [since])
    return sorted(str(r[0]) for r in rows)


# --------------------------------------------------------------------------------------
# Showing it
# --------------------------------------------------------------------------------------
def histogram(cal: Calibration, max_bins: int = 24) -> list[tuple[float, float, int, int]]:
    """(lo, hi, in-purpose turns, turns not counted) per bin of a round width."""
    everything = cal.fits + cal.others
    lo_fit, hi_fit = min(everything), max(everything)
    width = next(
        (w for w in (0.005, 0.01, 0.02, 0.025, 0.05, 0.1) if (hi_fit - lo_fit) / w < max_bins), 0.1
    )  # fmt: skip
    start = math.floor(lo_fit / width + 1e-9) * width
    bins = max(1, math.floor((hi_fit - start) / width + 1e-9) + 1)
    counts = [[0, 0] for _ in range(bins)]
    for side, values in ((0, cal.fits), (1, cal.others)):
        for v in values:
            counts[min(bins - 1, math.floor((v - start) / width + 1e-9))][side] += 1
    return [(round(start + i * width, 3), round(start + (i + 1) * width, 3), a, b) for i, (a, b) in enumerate(counts)]


def render(cal: Calibration, route: str, bar_width: int = 30) -> str:
    utf = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "") == "utf8"
    full, other, mark = ("█", "░", "◀") if utf else ("#", ".", "<")
    rows = histogram(cal)
    top = max(a + b for _, _, a, b in rows) or 1
    lines = [
        _wrap(
            f"{cal.method} scorer on {route}: {cal.turns} in-purpose turns {full},"
            f" {len(cal.others)} not counted {other}"
        ),
        f"  {'fit':<11}  {'':<{bar_width}}  {'in':>5} {'other':>5}",
    ]
    for lo, hi, a, b in rows:
        na, nb = round(a * bar_width / top), round(b * bar_width / top)
        if a and not na:
            na = 1
        if b and not nb and na < bar_width:
            nb = 1
        bar = (full * na + other * nb)[:bar_width]
        notes = []
        if lo <= cal.threshold < hi:
            notes.append("proposed")
        if cal.current is not None and lo <= cal.current < hi:
            notes.append("current")
        note = f" {mark} " + ", ".join(notes) if notes else ""
        lines.append(f"  {lo:.3f}-{hi:.3f}  {bar:<{bar_width}}  {a:>5} {b:>5}{note}")
    n = cal.turns
    notes = ["in-purpose fit quantiles  " + "  ".join(f"{p:g}%: {cal.quantile(p / 100):.3f}" for p in (1, 5, 10, 50))]
    if cal.current is not None and cal.current_flagged is not None:
        notes.append(
            f"current {cal.current:g}: flags {cal.current_flagged} of {n} in-purpose turns"
            f" ({cal.current_flagged / n:.1%})"
        )
    notes.append(
        f"proposed {cal.threshold:.3f}: flags {cal.flagged} of {n} here ({cal.flagged / n:.1%}); with"
        f" {cal.confidence:.0%} confidence at most {cal.upper_bound:.2%} of traffic like this"
        f" (target {cal.target:.2%})"
    )
    notes.append(
        f"plain {cal.target:.2%} quantile, no confidence margin: {cal.observed_threshold:.3f}"
        f" (flags {cal.observed_flagged} here)"
    )
    if cal.nearest_flagged:
        near = ", ".join(f"{k} {v}" for k, v in cal.nearest_flagged)
        notes.append(f"nearest anchors of the in-purpose turns it flags: {near}")
    if cal.others:
        notes.append(f"of the {len(cal.others)} turns not counted, {cal.others_flagged} are at or below it")
    notes.extend(f"warning: {w}" for w in cal.warnings)
    lines.extend(_wrap(note, "  ", "    ") for note in notes)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: float) -> float:
    """``7d``/``24h``/``30m`` ago, a Unix time, or an ISO 8601 date/time (UTC unless it says)."""
    text = text.strip()
    if text and text[-1] in _UNITS:
        try:
            return now - float(text[:-1]) * _UNITS[text[-1]]
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: use 7d, 24h, 30m, a Unix time or an ISO date like 2025-06-01T12:00") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenward calibrate",
        description="Propose a route's purpose threshold from the fits its decision log recorded (docs/content.md).",
    )
    p.add_argument("--route", required=True, help="the route's path, as in the policy (e.g. /api/chat)")
    p.add_argument("--policy", "-p", type=Path, help="policy YAML (default: the --write file, else built-in)")
    p.add_argument("--db", type=Path, help="SQLite decision log (default: the policy's log)")
    p.add_argument("--log", help="decision log URI (sqlite:///PATH or postgresql://...; default: the policy's)")
    p.add_argument("--since", default="7d", help="start of the window: 7d, 24h, 30m, a Unix time or ISO date")
    p.add_argument("--until", help="end of the window (default: now)")
    p.add_argument("--max-flag-rate", type=float, default=0.01, help="in-purpose turns flagged at most (0.01)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the bound on that rate (0.95)")
    p.add_argument("--method", choices=tuple(KEYS), help="calibrate one scorer only (default: each one logged)")
    p.add_argument("--exclude-client", action="append", default=[], metavar="IP/CIDR", help="repeatable")
    p.add_argument("--exclude-account", action="append", default=[], metavar="ID", help="repeatable")
    p.add_argument("--exclude-time", action="append", default=[], metavar="START..END", help="repeatable")
    p.add_argument("--min-turns", type=int, default=200, help="warn (exit 3) below this many in-purpose turns")
    p.add_argument("--max-risk", type=float, help="risk without the purpose signal that makes a turn suspect"
                   " (default: the route's lowest threshold)")  # fmt: skip
    p.add_argument("--write", type=Path, metavar="POLICY", help="set the proposed threshold(s) in this policy file")
    p.add_argument("--force", action="store_true", help="--write even with too few turns")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def _filters(args: argparse.Namespace, policy: Policy, route: RouteSettings | None) -> Filters:
    now = time.time()
    times = []
    for spec in args.exclude_time:
        start, sep, end = spec.partition("..")
        if not sep:
            raise ValueError(f"--exclude-time {spec!r}: use START..END")
        times.append((parse_when(start, now), parse_when(end, now)))
    thresholds = (route.thresholds if route is not None and route.thresholds is not None else policy.thresholds) or ()
    max_risk = args.max_risk if args.max_risk is not None else min((t.score for t in thresholds), default=math.inf)
    try:
        clients = tuple(ipaddress.ip_network(c, strict=False) for c in args.exclude_client)
    except ValueError as exc:
        raise ValueError(f"--exclude-client: {exc}") from None
    return Filters(
        since=parse_when(args.since, now), until=parse_when(args.until, now) if args.until else now + 1,
        max_risk=max_risk, allow_rules=frozenset(r.name for r in policy.rules if r.action in ("allow", "weigh")),
        clients=clients, accounts=frozenset(args.exclude_account), times=tuple(times),
    )  # fmt: skip


def _say(text: str) -> None:
    sys.stderr.write(f"tokenward calibrate: {text}\n")


def _calibrations(
    args: argparse.Namespace, turns: Sequence[Turn], route: RouteSettings | None
) -> tuple[list[Calibration], list[str]]:
    """One calibration per scorer to calibrate, and notes about the turns left aside."""
    by_method = Counter(t.method for t in turns)
    methods = [args.method] if args.method else [m for m, k in by_method.items() if k >= MINOR_SHARE * len(turns)]
    notes = [f"{k} turns scored {m} not calibrated (--method {m})" for m, k in by_method.items() if m not in methods]
    cals: list[Calibration] = []
    for m in sorted(methods):
        if m not in KEYS:
            notes.append(f"{by_method[m]} turns logged without a known scorer ({m}): not used")
            continue
        current = getattr(route.purpose, KEYS[m]) if route is not None and route.purpose is not None else None
        if current is None:
            current = next((t.threshold for t in reversed(turns) if t.method == m and t.threshold is not None), None)
        try:
            cals.append(calibrate(turns, m, args.max_flag_rate, args.confidence, current, args.min_turns))
        except CalibrationError as exc:
            notes.append(str(exc))
    return cals, notes


def _print(
    args: argparse.Namespace, uri: str, f: Filters, turns: Sequence[Turn], cals: Sequence[Calibration],
    written: str | None, notes: Sequence[str],
) -> None:  # fmt: skip
    excluded = Counter(t.excluded for t in turns if t.excluded is not None)
    if args.json:
        report = {
            "route": args.route, "log": uri.partition("?")[0], "since": f.since, "until": f.until,
            "turns_with_fit": len(turns), "counted": sum(1 for t in turns if t.excluded is None),
            "not_counted": dict(excluded), "max_risk": f.max_risk if math.isfinite(f.max_risk) else None,
            "methods": [c.as_dict() for c in cals], "written": written, "notes": list(notes),
        }  # fmt: skip
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        head = (
            f"route {args.route}: {len(turns)} turns with a purpose fit from {_ts(f.since)} to {_ts(f.until)}"
            f" in {uri.partition('?')[0]}; {len(turns) - sum(excluded.values())} counted as in purpose"
        )
        out = [_wrap(head)]
        if excluded:
            not_counted = "not counted: " + ", ".join(f"{k} {v}" for k, v in excluded.most_common())
            out.append(_wrap(not_counted, "  ", "    "))
        out.extend(render(c, args.route) for c in cals)
        if written:
            keys = ", ".join(f"{KEYS[c.method]}: {c.threshold:.3f}" for c in cals)
            out.append(f"wrote purpose.{keys} for route {args.route} to {written}")
        elif cals and not args.write:
            out.append("to set it, add --write POLICY, or paste:\n" + snippet(args.route, _values(cals)))
        sys.stdout.write("\n".join(out) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if not 0 < args.max_flag_rate < 0.5 or not 0.5 <= args.confidence < 1:
        p.error("--max-flag-rate must be in (0, 0.5) and --confidence in [0.5, 1)")
    from ..log import runner
    from ..policy import PolicyError, load_policy

    policy_file = args.policy or args.write
    try:
        policy = load_policy(policy_file)
    except PolicyError as exc:
        _say(str(exc))
        return 2
    route = next((r for r in policy.routes if r.path == args.route), None)
    if policy_file is not None and (route is None or route.purpose is None):
        paths = ", ".join(r.path for r in policy.routes if r.purpose is not None) or "none"
        what = "no route" if route is None else "no purpose on route"
        _say(f"{what} {args.route} in {policy_file} (routes with a purpose: {paths})")
        return 1
    try:
        f = _filters(args, policy, route)
    except ValueError as exc:
        p.error(str(exc))
    uri = args.log or (f"sqlite:///{args.db}" if args.db else policy.log)
    if uri.startswith("sqlite:") and not Path(uri.partition("?")[0].removeprefix("sqlite:///")).exists():
        _say(f"no decision log at {uri.partition('?')[0]}")
        return 1
    try:
        run = runner(uri)
        turns, decisions = read_turns(run, args.route, f)
        if not turns:
            known = ", ".join(logged_routes(run, f.since)) or "none"
            what = "no decisions" if not decisions else f"{decisions} decisions but no purpose fits"
            _say(f"{what} for route {args.route} in the window (routes in the log since then: {known})")
            return 1
    except (FileNotFoundError, ConnectionError) as exc:
        _say(str(exc))
        return 1
    cals, notes = _calibrations(args, turns, route)
    short = any(c.turns < args.min_turns or not c.bounded for c in cals)
    written: str | None = None
    code = 0 if cals else 1
    if args.write and cals:
        if short and not args.force:
            notes.append(f"not written to {args.write}: too few turns (--force to write anyway)")
        else:
            try:
                for c in cals:
                    write_threshold(args.write, args.route, KEYS[c.method], c.threshold)
                written = str(args.write)
            except (PolicyEditError, OSError) as exc:
                notes.append(f"not written: {exc}; paste this instead:\n{snippet(args.route, _values(cals))}")
                code = 1
    if short and code == 0:
        code = 3
    _print(args, uri, f, turns, cals, written, notes)
    for note in notes + ([w for c in cals for w in c.warnings] if args.json else []):
        _say(note)
    return code


def _values(cals: Sequence[Calibration]) -> dict[str, float]:
    return {KEYS[c.method]: c.threshold for c in cals}


def _wrap(text: str, first: str = "", rest: str = "  ") -> str:
    return textwrap.fill(
        text, 80, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False, break_long_words=False
    )


def _ts(t: float) -> str:
    return datetime.fromtimestamp(min(t, time.time()), UTC).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    raise SystemExit(main())
