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
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .cli_output import mask_uri, print_json, print_table
from .policy import Mode, Policy, PolicyError, Problem, load_policy
from .proof.keys import KeyRing, KeyRingError, encode_key, write_key_file

if TYPE_CHECKING:
    from .cli_secrets import UnsetSecret
    from .server import AdminListener

# Help is plain text (rich_markup_mode=None: no "<bool>" after flags, brackets printed as
# written, nothing boxed when piped); -h is --help on every command.
HELP_NAMES = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    help="tokenward: per-request proof and abuse gateway for paid AI endpoints.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings=HELP_NAMES,
)
console = Console()
console.soft_wrap = not console.is_terminal  # piped: lines are never wrapped at COLUMNS
err = Console(stderr=True, soft_wrap=True)  # paths and problems stay on one line

PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-p", help="policy YAML file (default: built-in)")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from . import __version__

        try:
            number = version("tokenward")
        except PackageNotFoundError:  # run from a source tree that is not installed
            number = __version__
        sys.stdout.write(f"tokenward {number}\n")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    pass


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
    log_format: Annotated[
        str, typer.Option(help="the gateway's own log: text, or json (one object per line)")
    ] = "text",
    admin_port: Annotated[
        int | None, typer.Option(help="admin listener port: /metrics and the dashboard (default: admin.port)")
    ] = None,
    admin_host: Annotated[
        str | None, typer.Option(help="admin listener address (default: the policy's admin.host, 127.0.0.1)")
    ] = None,
) -> None:
    """Run the gateway in front of an upstream LLM endpoint."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--log-format")
    say = _reporter(log_format)
    problem = _key_files_problem(_load(policy, upstream))
    if problem is not None:
        say("error", f"cannot serve {policy or 'the default policy'}: {problem}")
        raise typer.Exit(2)
    pol = _load(policy, upstream, evidence=True)
    if pol.upstream is None:
        say("error", "no upstream: pass --upstream URL or set upstream.url in the policy")
        raise typer.Exit(2)
    if workers > 1 and pol.store.startswith("memory:"):
        say("error", "the memory store lives in one process: use --workers 1 (or a shared store)")
        raise typer.Exit(2)
    _check_port(host, port)
    admin = _admin_listener(pol, admin_host, admin_port, say)
    say(
        "info",
        f"tokenward gateway on http://{host}:{port} -> {pol.upstream.url} "
        f"({len([r for r in pol.routes if r.protect])} protected routes, mode {pol.mode.value})",
    )
    if admin is not None:
        say("info", f"admin listener on http://{admin.host}:{admin.port}: /metrics, /.tokenward/dashboard")
    from .server import serve as run

    run(
        {"policy": str(policy) if policy else None, "upstream": upstream},
        host=host, port=port, workers=workers, log_level=log_level, log_format=log_format,
        header_timeout=pol.header_timeout, admin=admin,
    )  # fmt: skip


def _reporter(log_format: str) -> Callable[[str, str], None]:
    """How ``serve`` reports before the server starts: as the server's log will (one JSON
    object per line with ``--log-format json``), or as text (errors red on stderr)."""
    if log_format == "json":
        import logging

        from .oplog import JsonFormatter

        formatter = JsonFormatter()

        def as_json(level: str, text: str) -> None:
            record = logging.LogRecord("tokenward", logging.getLevelName(level.upper()), "", 0, text, None, None)
            sys.stderr.write(formatter.format(record) + "\n")

        return as_json

    def as_text(level: str, text: str) -> None:
        if level == "info":
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            err.print(text, style="red" if level == "error" else "yellow", markup=False, highlight=False)

    return as_text


def _admin_listener(
    pol: Policy, host: str | None, port: int | None, say: Callable[[str, str], None]
) -> AdminListener | None:
    """The admin listener's settings, checked: a token that is long enough, and no open
    metrics on a non-loopback address (docs/observability.md)."""
    from .admin.app import is_loopback
    from .errors import ConfigurationError
    from .server import AdminListener

    host = host or pol.admin.host
    port = port if port is not None else pol.admin.port
    try:
        token = pol.admin.token()
    except ConfigurationError as exc:
        say("error", str(exc))
        raise typer.Exit(2) from None
    if port is None:
        return None
    if token is None and not is_loopback(host):
        say(
            "error",
            f"the admin listener on {host} would serve metrics to anyone: set {pol.admin.token_env} "
            "(an admin token) or listen on 127.0.0.1",
        )
        raise typer.Exit(2)
    _check_port(host, port)
    if token is None:
        say("warning", f"no {pol.admin.token_env}: the dashboard is off; /metrics is open on {host}")
    return AdminListener(host=host, port=port, log_uri=pol.log, token_env=pol.admin.token_env)


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
    file: Annotated[Path, typer.Argument(metavar="FILE", help="policy YAML file")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document (docs/operations.md)")] = False,
    no_secrets: Annotated[
        bool,
        typer.Option(
            "--no-secrets",
            help="validate without the secrets (CI): unset ${VAR} and key_env variables get placeholders, "
            "and are listed as not checked",
        ),
    ] = False,
) -> None:
    """Validate a policy and print what it protects. Exit code 2 when it is invalid."""
    from .cli_secrets import placeholders, unset_secrets
    from .evidence import prepare_evidence
    from .policy import read_policy_data

    unset: list[UnsetSecret] = []
    try:
        if no_secrets:
            unset = unset_secrets(read_policy_data(file))
        with placeholders(unset):
            pol = load_policy(file)
            prepare_evidence(pol, str(file), models=False)  # reads the files it names too
            # keys from the environment: as serve will read them
            problem = _key_files_problem(pol) if pol.proof.keys_file is None else None
        if problem is not None:
            raise PolicyError([Problem("", problem)], str(file))
    except PolicyError as exc:
        if as_json:
            problems = [{"where": p.where, "message": p.message} for p in exc.problems]
            print_json({"file": str(file), "valid": False, "problems": problems, "unchecked_secrets": _unset(unset)})
        err.print(str(exc), style="red", markup=False, highlight=False)
        if not no_secrets and any("environment variable" in p.message for p in exc.problems):
            err.print(f"to validate without secrets (CI): tokenward check-policy --no-secrets {file}", style="yellow")
        raise typer.Exit(2) from None
    protected = [r for r in pol.routes if r.protect]
    warnings = []
    if not pol.budgets and pol.breaker.ceiling is None:
        warnings.append("no budget and no spend breaker: nothing caps what attackers can spend")
    if any(pol.mode_for(r) is Mode.SHADOW for r in protected):
        warnings.append("shadow mode: refusals are logged but requests are forwarded")
    anyone = [r.path for r in protected if r.clients == "any" and r.signed != "require"]
    if anyone:
        warnings.append(
            f"{', '.join(anyone)}: clients: any, so an SDK adapter or a script that solves proofs is judged like "
            "your page; a route only your page calls should say clients: browser, one only your servers call "
            "signed: require (docs/risk.md)"
        )
    if unset:
        names = ", ".join(f"{s.variable} ({s.where})" for s in unset)
        warnings.append(f"not checked, unset (placeholders used): {names}")
    if as_json:
        print_json(
            {
                "file": str(file), "valid": True, "problems": [],
                "routes": [
                    {
                        "path": r.path, "api": r.api.value, "protected": r.protect,
                        "methods": list(r.methods) if r.protect else [],
                        "difficulty": pol.difficulty_for(r) if r.protect else None,
                        "ttl": pol.ttl_for(r) if r.protect else None,
                        "mode": pol.mode_for(r).value if r.protect else None,
                        "body_cap": pol.body_cap_for(r),
                    }
                    for r in pol.routes
                ],
                "other_routes": "forward" if pol.other_routes == "pass" else "refuse",
                "upstream": pol.upstream.url if pol.upstream else None,
                "store": mask_uri(pol.store), "log": mask_uri(pol.log),
                "trusted_proxies": list(pol.trusted_proxies),
                "limits": [{"name": x.name, "key": x.key, "limit": x.limit, "window": x.window} for x in pol.limits],
                "budgets": [{"name": b.name, "key": b.key, "usd": b.usd, "window": b.window} for b in pol.budgets],
                "breaker": {"usd": pol.breaker.ceiling, "window": pol.breaker.window} if pol.breaker.ceiling else None,
                "warnings": warnings,
                "unchecked_secrets": _unset(unset),
            }
        )  # fmt: skip
        return
    print_table(
        console, f"{file}: valid",
        ("route", "api", "protected", "methods", "difficulty", "ttl s", "mode", "body cap"),
        [
            (
                r.path, r.api.value, "yes" if r.protect else "no (forwarded)",
                ",".join(r.methods) if r.protect else "-",
                str(pol.difficulty_for(r)) if r.protect else "-",
                f"{pol.ttl_for(r):g}" if r.protect else "-",
                pol.mode_for(r).value if r.protect else "-",
                str(pol.body_cap_for(r)),
            )
            for r in pol.routes
        ],
        right=("difficulty", "ttl s", "body cap"), lead=1,
    )  # fmt: skip
    console.print(f"other routes: {'forwarded' if pol.other_routes == 'pass' else 'refused (404)'}")
    console.print(f"upstream: {pol.upstream.url if pol.upstream else '(none: pass --upstream to serve)'}")
    console.print(
        f"store: {mask_uri(pol.store)}   log: {mask_uri(pol.log)}   "
        f"trusted proxies: {', '.join(pol.trusted_proxies) or 'none'}",
        markup=False, highlight=False,
    )  # fmt: skip
    console.print(
        "limits: " + (", ".join(f"{escape(x.name)} ({x.key}: {x.limit:g}/{x.window:g}s)" for x in pol.limits) or "none")
    )
    console.print(
        "budgets: "
        + (", ".join(f"{escape(b.name)} ({b.key}: ${b.usd:g}/{b.window:g}s)" for b in pol.budgets) or "none")
        + (f"   spend breaker: ${pol.breaker.ceiling:g}/{pol.breaker.window:g}s" if pol.breaker.ceiling else "")
    )
    for warning in warnings:
        console.print(warning, style="yellow", markup=False, highlight=False)


def _unset(unset: list[UnsetSecret]) -> list[dict[str, str]]:
    return [{"variable": s.variable, "where": s.where} for s in unset]


from .cli_keys import keys_app  # noqa: E402 - the sub-apps are defined in their own modules
from .cli_log import db_app, explain, log_app, spend  # noqa: E402
from .cli_simulate import simulate as _simulate  # noqa: E402

app.add_typer(keys_app, name="keys")
app.add_typer(log_app, name="log")
app.add_typer(db_app, name="db")
app.command()(explain)
app.command()(spend)
app.command("simulate")(_simulate)


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


@app.command(
    "calibrate",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def calibrate(ctx: typer.Context) -> None:
    """Propose a route's purpose threshold from the fits its decision log recorded, for a
    target in-purpose flag rate, with the distribution shown (--help for its options)."""
    from .content.calibrate import main as run_calibrate

    raise typer.Exit(run_calibrate(list(ctx.args)))


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
