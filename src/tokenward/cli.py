"""``tokenward``: serve | demo | check-policy | log tail | keygen."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .policy import Mode, Policy, PolicyError, Problem, load_policy
from .proof.keys import KeyRing, KeyRingError, encode_key, write_key_file

app = typer.Typer(
    help="tokenward: per-request proof and abuse gateway for paid AI endpoints.",
    no_args_is_help=True,
    add_completion=False,
)
log_app = typer.Typer(help="Read the decision log.", no_args_is_help=True)
app.add_typer(log_app, name="log")
console = Console()
err = Console(stderr=True, soft_wrap=True)  # paths and problems stay on one line

PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-p", help="policy YAML file (default: built-in)")]


def _load(policy: Path | None, upstream: str | None = None, *, evidence: bool = False) -> Policy:
    """Load and validate a policy; with ``evidence``, also the files it points at."""
    try:
        pol = load_policy(policy, upstream=upstream)
        if evidence:
            from .evidence import prepare_evidence

            prepare_evidence(pol, str(policy) if policy else "default policy", models=False)
        return pol
    except PolicyError as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _key_files_problem(pol: Policy) -> str | None:
    """What keeps the gateway from loading its keys, as one line (None: nothing). The
    server loads them in its worker process, where a problem would be a traceback."""
    from .trusted_clients import ClientsError, KeyFile

    try:
        if pol.proof.keys_file is not None:
            KeyRing.from_file(pol.proof.keys_file)
        else:
            KeyRing.from_env()
    except KeyRingError as exc:
        where = "proof.keys_file" if pol.proof.keys_file is not None else "TOKENWARD_KEYS"
        return f"{where}: {exc}"
    if pol.clients.keys_file is not None:
        try:
            KeyFile(pol.clients.keys_file).load()
        except (ClientsError, ValueError) as exc:  # a file that is not text is a ValueError
            return f"clients.keys_file: {exc}"
    return None


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # As the server binds: connections of a gateway that just stopped (TIME_WAIT) do not
        # hold the port, only a socket still listening on it does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            err.print(f"[red]cannot listen on {host}:{port}: {exc.strerror}[/red]")
            raise typer.Exit(2) from None


@app.command()
def serve(
    upstream: Annotated[
        str | None, typer.Option(help="upstream base URL, e.g. https://llm.example (overrides the policy)")
    ] = None,
    policy: PolicyOpt = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    workers: Annotated[int, typer.Option(help="worker processes (memory store: 1)")] = 1,
    log_level: Annotated[str, typer.Option(help="server log level")] = "warning",
) -> None:
    """Run the gateway in front of an upstream LLM endpoint."""
    problem = _key_files_problem(_load(policy, upstream))
    if problem is not None:
        err.print(
            f"cannot serve {policy or 'the default policy'}: {problem}", style="red", markup=False, highlight=False
        )
        raise typer.Exit(2)
    pol = _load(policy, upstream, evidence=True)
    if pol.upstream is None:
        err.print("[red]no upstream: pass --upstream URL or set upstream.url in the policy[/red]")
        raise typer.Exit(2)
    if workers > 1 and pol.store.startswith("memory:"):
        err.print("[red]the memory store lives in one process: use --workers 1 (or a shared store)[/red]")
        raise typer.Exit(2)
    _check_port(host, port)
    console.print(
        f"tokenward gateway on http://{host}:{port} -> {pol.upstream.url} "
        f"({len([r for r in pol.routes if r.protect])} protected routes, mode {pol.mode.value})"
    )
    from .server import serve as run

    run(
        {"policy": str(policy) if policy else None, "upstream": upstream},
        host=host, port=port, workers=workers, log_level=log_level, header_timeout=pol.header_timeout,
    )  # fmt: skip


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"demo upstream exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1):
                return
        time.sleep(0.05)
    raise RuntimeError(f"demo upstream did not answer at {url} within {timeout:.0f}s")


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="gateway port")] = 8080,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    policy: PolicyOpt = None,
    upstream_port: Annotated[int, typer.Option(help="demo LLM port (0: any free port)")] = 0,
) -> None:
    """Run the gateway in front of the built-in demo LLM, with a demo chat page."""
    with resources.as_file(resources.files("tokenward.policies") / "demo.yaml") as builtin:
        policy_path = policy or Path(builtin)
        up_port = upstream_port or _free_port("127.0.0.1")
        upstream = f"http://127.0.0.1:{up_port}"
        pol = _load(policy_path, upstream)
        _check_port(host, port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenward.demo.upstream", "--host", "127.0.0.1", "--port", str(up_port)]
        )
        try:
            _wait_http(f"{upstream}/v1/models", 20, proc)
            base = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
            console.print(
                f"[bold]tokenward demo[/bold]\n  gateway:    {base}\n  chat page:  {base}/demo\n"
                f"  demo LLM:   {upstream} (behind the gateway)\n"
                f"  health:     {base}/.tokenward/health\n  Ctrl-C to stop."
            )
            from .server import serve as run

            run(
                {"policy": str(policy_path), "upstream": upstream},
                host=host, port=port, header_timeout=pol.header_timeout,
            )  # fmt: skip
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()


@app.command("check-policy")
def check_policy(
    file: Annotated[Path, typer.Argument(help="policy YAML file")],
) -> None:
    """Validate a policy and print what it protects. Exit code 2 when it is invalid."""
    pol = _load(file, evidence=True)  # reads the key files it names too
    if pol.proof.keys_file is None:  # keys from the environment: as serve will read them
        problem = _key_files_problem(pol)
        if problem is not None:
            err.print(str(PolicyError([Problem("", problem)], str(file))), style="red", markup=False, highlight=False)
            raise typer.Exit(2)
    table = Table(title=f"{file}: valid", show_lines=False)
    for col in ("route", "api", "protected", "methods", "difficulty", "ttl s", "mode", "body cap"):
        table.add_column(col)
    for r in pol.routes:
        table.add_row(
            escape(r.path), r.api.value, "yes" if r.protect else "no (forwarded)",
            ",".join(r.methods) if r.protect else "-",
            str(pol.difficulty_for(r)) if r.protect else "-",
            f"{pol.ttl_for(r):g}" if r.protect else "-",
            pol.mode_for(r).value if r.protect else "-",
            str(pol.body_cap_for(r)),
        )  # fmt: skip
    console.print(table)
    console.print(f"other routes: {'forwarded' if pol.other_routes == 'pass' else 'refused (404)'}")
    console.print(f"upstream: {pol.upstream.url if pol.upstream else '(none: pass --upstream to serve)'}")
    console.print(f"store: {pol.store}   log: {pol.log}   trusted proxies: {', '.join(pol.trusted_proxies) or 'none'}")
    console.print(
        "limits: " + (", ".join(f"{escape(x.name)} ({x.key}: {x.limit:g}/{x.window:g}s)" for x in pol.limits) or "none")
    )
    console.print(
        "budgets: "
        + (", ".join(f"{escape(b.name)} ({b.key}: ${b.usd:g}/{b.window:g}s)" for b in pol.budgets) or "none")
        + (f"   spend breaker: ${pol.breaker.ceiling:g}/{pol.breaker.window:g}s" if pol.breaker.ceiling else "")
    )
    if not pol.budgets and pol.breaker.ceiling is None:
        console.print("[yellow]no budget and no spend breaker: nothing caps what attackers can spend[/yellow]")
    if any(pol.mode_for(r) is Mode.SHADOW for r in pol.routes if r.protect):
        console.print("[yellow]shadow mode: refusals are logged but requests are forwarded[/yellow]")


def _log_uri(policy: Path | None, db: Path | None) -> str:
    """The decision log to read: ``--db FILE`` (SQLite) or the policy's ``log`` URI."""
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
    table = Table(title=f"last {len(rows)} decisions in {escape(str(db) if db else uri.split('?')[0])}")
    for col in ("time", "request", "client", "route", "action", "rule", "status", "reasons", "ms"):
        table.add_column(col, overflow="fold")
    for row in rows:
        action = row["action"] + (f" (shadow: {row['shadow_action']})" if row["shadow_action"] else "")
        cells = (
            datetime.fromtimestamp(row["ts"], UTC).strftime("%H:%M:%S.%f")[:-3],
            row["request_id"][:10], row["client_ip"], row["route"] or row["path"], action,
            row["name"], str(row["status"]), ", ".join(row["reasons"]), f"{row['decision_ms']:.2f}",
        )  # fmt: skip
        table.add_row(*(escape(c) for c in cells))
    console.print(table)


@app.command()
def explain(
    request_id: Annotated[
        str, typer.Argument(help="the Tokenward-Request-Id (or its first characters, as log tail shows)")
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
    for line in explain_row(row, _load(policy) if db is None or policy is not None else None):
        sys.stdout.write(line + "\n")


from .cli_keys import keys_app  # noqa: E402 - the sub-app is defined in its own module
from .cli_simulate import simulate as _simulate  # noqa: E402

app.add_typer(keys_app, name="keys")
app.command("simulate")(_simulate)

db_app = typer.Typer(help="The decision log's database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("init")
def db_init(policy: PolicyOpt = None) -> None:
    """Create the decision log's tables (PostgreSQL; SQLite logs create themselves)."""
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


@app.command()
def spend(
    policy: PolicyOpt = None,
    db: Annotated[Path | None, typer.Option(help="SQLite decision log (default: the policy's)")] = None,
    since: Annotated[str, typer.Option(help="how far back: 30m, 24h, 7d")] = "24h",
    by: Annotated[str, typer.Option(help="group spend by route, model, client or name")] = "route",
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
    console.print(
        f"[bold]${report.spent:,.4f}[/bold] upstream spend over {report.calls} calls in the last {escape(since)}"
        f" ({exact} with usage reported by the upstream, {report.estimated_calls} counted from streamed text)"
    )
    table = Table(title=f"spend by {by}")
    for col in (by, "calls", "USD", "tokens in", "tokens out"):
        table.add_column(col, overflow="fold")
    for key, calls, usd, tin, tout in report.by:
        table.add_row(escape(key), str(calls), f"{usd:,.4f}", f"{tin:,}", f"{tout:,}")
    console.print(table)
    refused = Table(title="refused before reaching the upstream")
    for col in ("rule", "requests", "USD they would have held"):
        refused.add_column(col)
    for name, count, usd in report.refused:
        refused.add_row(escape(name), str(count), f"{usd:,.4f}" if usd else "-")
    console.print(refused)
    calls, usd = report.degraded
    console.print(f"degraded: {calls} calls, ${usd:,.4f}")


@app.command(
    "eval-content",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def eval_content(ctx: typer.Context) -> None:
    """Score the labelled prompt sets: precision, recall and false positives per content
    signal, semantic and lexical-only, and latency (--help for its options)."""
    from .content.evaluate import main as evaluate

    raise typer.Exit(evaluate(list(ctx.args)))


@app.command()
def keygen(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write it to this key file (mode 0600), before the keys already in it"),
    ] = None,
) -> None:
    """Make a new challenge-signing key: printed (for TOKENWARD_KEYS), or put first in a
    key file for proof.keys_file (--out; the older keys stay, to verify until dropped)."""
    secret = secrets.token_bytes(32)
    if out is None:
        sys.stdout.write(encode_key(secret) + "\n")
        return
    older: list[bytes] = []
    if out.exists():
        try:
            older = [k.secret for k in KeyRing.from_file(out).keys]
        except KeyRingError as exc:
            err.print(f"{exc}; nothing written", style="red", markup=False, highlight=False)
            raise typer.Exit(2) from None
    try:
        write_key_file(out, [secret, *older])
    except OSError as exc:
        err.print(f"cannot write {out}: {exc.strerror}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    err.print(
        f"{'Added a new signing key to' if older else 'Wrote a new signing key to'} {out} (mode 0600"
        + (f"; {len(older)} older key(s) kept after it)" if older else ")"),
        markup=False, highlight=False,
    )  # fmt: skip


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
