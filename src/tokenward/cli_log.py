"""The decision log's commands: ``log tail``, ``explain``, ``spend`` and ``db init``.

Mount them on the main app with ``app.add_typer(log_app, name="log")``,
``app.add_typer(db_app, name="db")``, ``app.command()(explain)`` and ``app.command()(spend)``.
They read the log named by ``--db FILE`` (SQLite) or by the policy's ``log`` URI, which may
be PostgreSQL shared by several instances.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .cli_output import mask_uri, print_json, print_table, usd

__all__ = ["db_app", "explain", "log_app", "spend"]

PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-p", help="policy YAML file (default: built-in)")]
log_app = typer.Typer(help="Read the decision log.", no_args_is_help=True, rich_markup_mode=None)
db_app = typer.Typer(help="The decision log's database.", no_args_is_help=True, rich_markup_mode=None)
console = Console()
console.soft_wrap = not console.is_terminal  # piped: lines are never wrapped at COLUMNS
err = Console(stderr=True, soft_wrap=True)


def _log_uri(policy: Path | None, db: Path | None) -> str:
    """The decision log to read: ``--db FILE`` (SQLite) or the policy's ``log`` URI."""
    from .cli import _load  # the main app's policy loader (exit 2 on a bad policy)

    return f"sqlite:///{db}" if db is not None else _load(policy).log


@log_app.command("tail")
def log_tail(
    policy: PolicyOpt = None,
    db: Annotated[Path | None, typer.Option(help="SQLite decision log (default: the policy's log)")] = None,
    n: Annotated[int, typer.Option("-n", help="how many decisions")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Show the most recent decisions, newest first, with their reasons."""
    import orjson

    from .log import recent

    uri = _log_uri(policy, db)
    try:
        rows = recent(uri, n)
    except (FileNotFoundError, ConnectionError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row, default=str).decode() + "\n")
        return
    cells = []
    for row in rows:
        action = row["action"] + (f" (shadow: {row['shadow_action']})" if row["shadow_action"] else "")
        cells.append((
            datetime.fromtimestamp(row["ts"], UTC).strftime("%H:%M:%S.%f")[:-3],
            row["request_id"][:10], row["client_ip"], row["route"] or row["path"], action,
            row["name"], str(row["status"]), ", ".join(row["reasons"]), f"{row['decision_ms']:.2f}",
        ))  # fmt: skip
    print_table(
        console, f"last {len(rows)} decisions in {str(db) if db else mask_uri(uri.split('?')[0])}",
        ("time", "request", "client", "route", "action", "rule", "status", "reasons", "ms"), cells,
        right=("status", "ms"), wrap="reasons",
    )  # fmt: skip


def explain(
    request_id: Annotated[
        str,
        typer.Argument(
            metavar="REQUEST_ID", help="the Tokenward-Request-Id (or its first characters, as log tail shows)"
        ),
    ],
    policy: PolicyOpt = None,
    db: Annotated[Path | None, typer.Option(help="SQLite decision log (default: the policy's log)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the decision's log row as JSON")] = False,
) -> None:
    """One decision in words: every signal and its weight, the score against the route's
    thresholds, the rule that matched, and what would have changed the outcome."""
    import orjson

    from .explain import explain as explain_row
    from .log import find

    uri = _log_uri(policy, db)
    try:
        row = find(uri, request_id)
    except (FileNotFoundError, ConnectionError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if row is None:
        err.print(f"no decision with request id {request_id!r} in the log", style="red", markup=False, highlight=False)
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(orjson.dumps(row, default=str).decode() + "\n")
        return
    from .cli import _load

    for line in explain_row(row, _load(policy) if db is None or policy is not None else None):
        sys.stdout.write(line + "\n")


@db_app.command("init")
def db_init(policy: PolicyOpt = None) -> None:
    """Create the decision log's tables (PostgreSQL; SQLite logs create themselves)."""
    from .cli import _load

    uri = _load(policy).log
    if not uri.startswith(("postgresql:", "postgres:")):
        console.print(f"{escape(uri)}: SQLite logs are created on first start; nothing to do")
        return
    from .log.postgres import init_schema, mask_dsn

    try:
        init_schema(uri)
    except Exception as exc:  # psycopg's errors: report them as they are, never a traceback
        err.print(f"cannot initialise {mask_dsn(uri)}: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    console.print(f"decision log tables ready in {escape(mask_dsn(uri))}")


def _since(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return time.time() - float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise typer.BadParameter("use a number and a unit, e.g. 30m, 24h, 7d") from None


def spend(
    policy: PolicyOpt = None,
    db: Annotated[Path | None, typer.Option(help="SQLite decision log (default: the policy's)")] = None,
    since: Annotated[str, typer.Option(help="how far back: 30m, 24h, 7d")] = "24h",
    by: Annotated[str, typer.Option(help="group spend by route, model, client or name")] = "route",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document (docs/operations.md)")] = False,
) -> None:
    """Upstream spend from the decision log: what was spent, by what, and what was refused."""
    from .log import runner
    from .log.queries import spend_report

    try:
        report = spend_report(runner(_log_uri(policy, db)), _since(since), by)
    except (FileNotFoundError, ConnectionError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    exact = report.calls - report.estimated_calls
    calls, degraded_usd = report.degraded
    if as_json:
        print_json(
            {
                "since": since, "since_ts": report.since, "by": by,
                "usd": report.spent, "calls": report.calls, "exact_calls": exact,
                "estimated_calls": report.estimated_calls,
                "groups": [
                    {"key": key, "calls": n, "usd": d, "tokens_in": tin, "tokens_out": tout}
                    for key, n, d, tin, tout in report.by
                ],
                "refused": [{"rule": name, "requests": count, "usd": d} for name, count, d in report.refused],
                "degraded": {"calls": calls, "usd": degraded_usd},
            }
        )  # fmt: skip
        return
    console.print(
        f"[bold]${usd(report.spent)}[/bold] upstream spend over {report.calls} calls in the last {escape(since)}"
        f" ({exact} with usage reported by the upstream, {report.estimated_calls} counted from streamed text)"
    )
    print_table(
        console, f"spend by {by}", (by, "calls", "USD", "tokens in", "tokens out"),
        [(key, str(n), usd(d), f"{tin:,}", f"{tout:,}") for key, n, d, tin, tout in report.by],
        right=("calls", "USD", "tokens in", "tokens out"), lead=1,
    )  # fmt: skip
    print_table(
        console, "refused before reaching the upstream", ("rule", "requests", "USD they would have held"),
        [(name, str(count), usd(d) if d else "-") for name, count, d in report.refused],
        right=("requests", "USD they would have held"), lead=1,
    )  # fmt: skip
    console.print(f"degraded: {calls} calls, ${usd(degraded_usd)}")
