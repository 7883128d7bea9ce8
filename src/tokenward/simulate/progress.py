"""The live progress display of a run (``rich``): the timeline's phase and rates, and
per actor the calls sent, let through to the model, refused, not sent and in flight.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable

from rich.console import Group
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .profiles import Timeline
from .records import CallRecord

__all__ = ["NoLive", "progress_view"]


def progress_view(
    timeline: Timeline,
    t0: float,
    end: float,
    kinds: dict[str, float],
    records: list[CallRecord],
    attack_progress: Callable[[], dict[str, dict[str, int]]],
    under_attack: Callable[[], bool],
) -> Callable[[], Group]:
    """A function that renders the run's progress now: the phase, and per actor its
    calls so far (this process's ``records``, the attack worker's ``attack_progress``)."""
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
        for r in records:
            counts[r.actor][r.outcome if (r.t_end or r.outcome == "not_sent") else "in_flight"] += 1
        for actor, c in attack_progress().items():
            counts[actor] = Counter(c)
        for actor in actors:
            c = counts.get(actor, Counter())
            total = sum(c.values())
            ok = c["allowed"] + c["degraded"]
            refused = total - ok - c["not_sent"] - c["in_flight"] - c["error"]
            table.add_row(actor, str(total), str(ok), str(refused), str(c["not_sent"]), str(c["in_flight"]))
        attack = "[red]UNDER ATTACK[/red]" if under_attack() else "normal"
        return Group(progress, table, f"gateway mode: {attack}")

    return render


class NoLive:
    """Stands in for ``rich.live.Live`` when the progress display is off."""

    def update(self, _: object) -> None:
        pass
