"""``tokenward simulate``: replay an inference-theft incident against a gateway and
report what got through, what it cost and whom it bothered.

Mount it on the main app with ``app.command("simulate")(simulate)``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["simulate"]

err = Console(stderr=True)


def simulate(
    profile: Annotated[
        str, typer.Option("--profile", help="smoke | steady | incident, or a profile YAML file")
    ] = "incident",
    policy: Annotated[
        Path | None, typer.Option("--policy", "-p", help="policy under test (default: the built-in demo policy)")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="drive a gateway that is already running (loopback only, unless --allow-non-loopback)"),
    ] = None,
    duration_scale: Annotated[
        float, typer.Option(help="compress (<1) or stretch the timeline's durations; rates stay per real minute")
    ] = 1.0,
    hold_minutes: Annotated[
        float | None, typer.Option(help="length of the profile's plateau (timeline minutes, before scaling)")
    ] = None,
    max_requests: Annotated[int | None, typer.Option(help="stop after this many scheduled calls")] = None,
    out: Annotated[Path, typer.Option(help="folder for report.{md,html,json} and the run's files")] = Path(
        "tokenward-simulate"
    ),
    seed: Annotated[int | None, typer.Option(help="random seed (default: the profile's)")] = None,
    browsers: Annotated[
        bool, typer.Option("--browsers/--no-browsers", help="real Chromium actors (legit pages, headless farm)")
    ] = True,
    decision_log: Annotated[
        Path | None, typer.Option(help="with --target: its SQLite decision log (for upstream spend)")
    ] = None,
    jwt_key_env: Annotated[
        str | None, typer.Option(help="with --target: environment variable holding its identity.jwt HS256 key")
    ] = None,
    allow_non_loopback: Annotated[
        bool, typer.Option("--allow-non-loopback", help="allow a --target that is not on this machine")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
    skip_missing: Annotated[
        bool,
        typer.Option(
            "--skip-missing",
            help="run without the actors whose client library (tokenward[simulate]) or Chromium is missing, "
            "instead of refusing to start",
        ),
    ] = False,
) -> None:
    """Replay an inference-theft incident (legit users, resellers, impersonators, farms)
    against a gateway; write a Markdown, HTML and JSON report. Stops by itself."""
    import os

    from .simulate.render import write_report
    from .simulate.report import build_report
    from .simulate.runner import SimulationError, SimulationSettings, run_simulation

    if not (duration_scale > 0):
        raise typer.BadParameter("must be a positive number", param_hint="--duration-scale")
    if max_requests is not None and max_requests < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-requests")
    jwt_key = None
    if jwt_key_env is not None:
        jwt_key = os.environ.get(jwt_key_env)
        if not jwt_key:
            raise typer.BadParameter(f"{jwt_key_env} is not set", param_hint="--jwt-key-env")
    settings = SimulationSettings(
        profile=profile, policy=policy, target=target, duration_scale=duration_scale, hold_minutes=hold_minutes,
        max_requests=max_requests, out=out, allow_non_loopback=allow_non_loopback, seed=seed, browsers=browsers,
        decision_log=decision_log, jwt_key=jwt_key, progress=not quiet and sys.stderr.isatty(),
        skip_missing=skip_missing,
    )  # fmt: skip
    # SIGTERM as Ctrl-C: the run's gateway, demo LLM and browsers are stopped on the way
    # out, not left running (the default handler would end the process on the spot).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        data = run_simulation(settings, err)
    except SimulationError as exc:
        err.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    report = build_report(data)
    paths = write_report(report, out)
    for g in report["goals"]:
        style = {"met": "green", "missed": "red"}.get(g["status"], "yellow")
        value = g["value"]
        shown = "n/a" if value is None else (f"{100 * value:.2f}%" if g["unit"] == "ratio" else
                                             f"{value:,.0f} ms" if g["unit"] == "ms" else f"{value:.2f}x")  # fmt: skip
        err.print(f"[{style}]{g['status'].upper():>6}[/{style}]  {g['goal']}: {shown}", highlight=False)
        for why in g.get("why") or []:
            err.print(f"        why: {why}", markup=False, highlight=False, soft_wrap=True)
    if data.not_run:
        listed = "; ".join(f"{a} ({why})" for a, why in data.not_run.items())
        err.print(f"[yellow]NOT RUN[/yellow]  {listed}: the figures above do not cover them (--skip-missing)",
                  highlight=False, soft_wrap=True)  # fmt: skip
    err.print(f"report: {paths['md']}  {paths['html']}  {paths['json']}", soft_wrap=True)


def main() -> None:
    """``python -m tokenward.cli_simulate`` (the same command, before it is mounted)."""
    typer.run(simulate)


if __name__ == "__main__":
    main()
