"""Questions an operator asks of the decision log (``tokenward spend``).

Plain SQL over the ``decisions`` table, so the same queries run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SpendReport", "spend_report"]

# run(sql, params) -> rows as tuples; placeholders are written "?" and adapted by the caller.
Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_GROUPS = {"route": "COALESCE(route, path)", "model": "COALESCE(model, '-')", "client": "client_ip", "name": "name"}


@dataclass(frozen=True, slots=True)
class SpendReport:
    since: float
    spent: float
    calls: int
    estimated_calls: int  # calls whose usage was counted from streamed text, not reported
    by: list[tuple[str, int, float, int, int]]  # key, calls, dollars, tokens in, tokens out
    refused: list[tuple[str, int, float]]  # rule, requests, dollars they would have held
    degraded: tuple[int, float]  # calls, dollars


def spend_report(run: Run, since: float, group: str = "route", limit: int = 20) -> SpendReport:
    if group not in _GROUPS:
        raise ValueError(f"group by one of {', '.join(_GROUPS)}")
    key = _GROUPS[group]
    (spent, calls, estimated), = run(
        "SELECT COALESCE(SUM(cost_usd), 0), COUNT(cost_usd),"
        " COALESCE(SUM(CASE WHEN NOT usage_exact THEN 1 ELSE 0 END), 0)"
        " FROM decisions WHERE ts >= ? AND cost_usd IS NOT NULL",
        [since],
    )  # fmt: skip
    by = run(
        f"SELECT {key}, COUNT(*), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(tokens_in), 0),"
        f" COALESCE(SUM(tokens_out), 0) FROM decisions WHERE ts >= ? AND cost_usd IS NOT NULL"
        f" GROUP BY {key} ORDER BY 3 DESC LIMIT ?",
        [since, limit],
    )  # fmt: skip
    refused = run(
        "SELECT name, COUNT(*), COALESCE(SUM(COALESCE(held_usd, reserved_usd)), 0) FROM decisions"
        " WHERE ts >= ? AND status >= 400 AND upstream_status IS NULL GROUP BY name ORDER BY 2 DESC LIMIT ?",
        [since, limit],
    )  # fmt: skip
    (degraded_calls, degraded_usd), = run(
        "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0) FROM decisions WHERE ts >= ? AND action = 'degrade'",
        [since],
    )  # fmt: skip
    return SpendReport(
        since=since,
        spent=float(spent),
        calls=int(calls),
        estimated_calls=int(estimated),
        by=[(str(k), int(n), float(d), int(i), int(o)) for k, n, d, i, o in by],
        refused=[(str(k), int(n), float(d)) for k, n, d in refused],
        degraded=(int(degraded_calls), float(degraded_usd)),
    )
