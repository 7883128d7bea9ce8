"""How often each automation tell fires, per actor, in finished simulation runs.

Reads the folders ``tokenward simulate --out DIR`` leaves (``DIR/run``: the call records
and the decision log) and prints, for every actor, the share of its calls whose decision
carried each sign of automation (``signals.browser.AUTOMATION_TELLS``) and the other
browser signals. The actors are real Chromium: ``headless-farm`` unpatched (default
headless), ``stealth-farm`` patched the way stealth plugins do (no webdriver flag, no
``Headless`` in the user agent, a person's window), ``legit-browser`` the same patched
browser driven like a person (think time, typing, pasting, keyboard only, small
screens); ``legit-http`` are modelled people (cloned browser reports), not browsers.

    .venv/bin/python bench/automation_tells.py /tmp/run-a [/tmp/run-b ...]

The false-positive rates docs/signals.md states for real people are the
``legit-browser`` row (simulated people, so an estimate: real pages see dictation,
autofill and input methods the simulator does not type).
"""

from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict
from pathlib import Path

from tokenward.signals.browser import AUTOMATION_TELLS, BROWSER_WEIGHTS
from tokenward.simulate.rundata import load_run

ACTORS = ("legit-browser", "legit-http", "stealth-farm", "headless-farm")
TELLS = sorted(AUTOMATION_TELLS) + sorted(set(BROWSER_WEIGHTS) - AUTOMATION_TELLS)


def wilson_upper(k: int, n: int, z: float = 1.96) -> float:
    if n == 0:
        return 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return min(1.0, centre + half)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="folders given to tokenward simulate --out")
    args = ap.parse_args()
    calls: Counter[str] = Counter()
    fired: dict[str, Counter[str]] = defaultdict(Counter)
    for out in args.runs:
        data = load_run(out / "run")
        reasons = {row["request_id"]: set(row["reasons"] or ()) for row in data.log_rows}
        for rec in data.records:
            if rec.actor not in ACTORS or not rec.attempts:
                continue
            # Every attempt of the call: a tell on its first try counts even if the retry differs.
            seen: set[str] = set()
            for attempt in rec.attempts:
                seen |= reasons.get(attempt.request_id or "", set())
            if not seen:
                continue  # not in the log (refused before judging, or the run ended)
            calls[rec.actor] += 1
            for tell in TELLS:
                if tell in seen:
                    fired[rec.actor][tell] += 1
    shown = [t for t in TELLS if any(fired[a][t] for a in ACTORS)] or TELLS[:4]
    print(f"{'signal':30}" + "".join(f"{a:>22}" for a in ACTORS))
    print(f"{'calls':30}" + "".join(f"{calls[a]:>22}" for a in ACTORS))
    for tell in shown:
        mark = " *" if tell in AUTOMATION_TELLS else ""
        cells = []
        for a in ACTORS:
            n, k = calls[a], fired[a][tell]
            cells.append(f"{k / n:7.1%} (<={wilson_upper(k, n):5.1%})" if n else f"{'-':>20}")
        print(f"{tell + mark:30}" + "".join(f"{c:>22}" for c in cells))
    print("* a sign of automation (a harder proof does not answer it: thresholds[].automated)")
    print("(share of calls; in brackets the 95% Wilson upper bound)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
