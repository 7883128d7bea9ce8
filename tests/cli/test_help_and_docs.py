"""Issue 14: ``tokenward --version`` and ``-h`` did not exist, help showed ``<bool>``
after every flag, and docs/operations.md left out ``keys``, ``simulate`` and
``eval-content``. Every command is walked from the CLI itself, so a command added later
is held to the same."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

import pytest
import typer
from tests.cli.helpers import ROOT, TOKENWARD, environment, run

from tokenward.cli import app


def command_paths() -> list[tuple[str, ...]]:
    """Every group and command of the CLI, as the words that name it (root first)."""
    paths: list[tuple[str, ...]] = []

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


def leaf_paths() -> list[tuple[str, ...]]:
    groups = {p[:-1] for p in command_paths() if p}
    return [p for p in command_paths() if p and p not in groups]


@pytest.fixture(scope="module")
def helps() -> dict[tuple[tuple[str, ...], str], subprocess.CompletedProcess[str]]:
    """``-h`` and ``--help`` of every command, run as a user runs them (80 columns, piped)."""
    env = environment(COLUMNS="80")
    jobs = [(p, flag) for p in command_paths() for flag in ("-h", "--help")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = pool.map(lambda job: run(*job[0], job[1], env=env, timeout=120), jobs)
        return dict(zip(jobs, done, strict=True))


def test_the_walk_finds_every_command() -> None:
    leaves = leaf_paths()
    for expected in [("serve",), ("check-policy",), ("log", "tail"), ("keys", "revoke"), ("simulate",),
                     ("eval-content",), ("db", "init"), ("keygen",), ("spend",), ("explain",)]:  # fmt: skip
        assert expected in leaves, expected


def test_version_prints_the_installed_version() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"tokenward {version('tokenward')}\n"


def test_dash_h_is_help_on_every_command(helps: dict) -> None:
    failed = []
    for path in command_paths():
        short, long = helps[(path, "-h")], helps[(path, "--help")]
        name = " ".join(["tokenward", *path])
        if short.returncode != 0 or long.returncode != 0:
            failed.append(f"{name}: exit {short.returncode} / {long.returncode}: {short.stderr[-300:]}")
        elif short.stdout != long.stdout or not re.match(r"^[Uu]sage: ", short.stdout):
            failed.append(f"{name} -h is not its --help:\n{short.stdout[:300]}")
    assert not failed, "\n".join(failed)


def test_no_help_shows_type_placeholders_for_flags(helps: dict) -> None:
    bad = [" ".join(p) or "(root)" for (p, flag), r in helps.items() if "<bool>" in r.stdout]
    assert not bad, f"help with <bool>: {bad}"
    # Text with brackets is printed as written (rich markup used to eat "[simulate]").
    assert "tokenward[simulate]" in helps[(("simulate",), "--help")].stdout.replace("\n", " ").replace(" ", "")


def test_help_lines_fit_80_columns(helps: dict) -> None:
    for (path, _), result in helps.items():
        if path and path[0] in ("eval-content", "calibrate"):
            continue  # argparse's own help, wrapped by argparse
        too_long = [line for line in result.stdout.splitlines() if len(line) > 80]
        assert not too_long, (path, too_long)


def test_operations_md_lists_every_command() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `tokenward ")]
    documented = {re.match(r"\| `tokenward ([a-z][a-z0-9-]*(?: [a-z][a-z0-9-]*)*)", line).group(1) for line in table}  # type: ignore[union-attr]
    missing = [" ".join(p) for p in leaf_paths() if " ".join(p) not in documented]
    assert not missing, f"docs/operations.md's command table does not list: {missing}"
    assert "--version" in section and "-h" in section
    # ...and every command it lists exists.
    unknown = sorted(documented - {" ".join(p) for p in leaf_paths()})
    assert not unknown, unknown


def test_operations_md_documents_the_exit_codes() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    assert re.search(r"^#+ .*[Ee]xit codes", text, re.M), "docs/operations.md has no exit codes section"


def test_cli_tokenward_command_runs_without_arguments() -> None:
    result = subprocess.run([*TOKENWARD], capture_output=True, text=True, env=environment(), timeout=60)
    assert "Usage: " in result.stdout + result.stderr and "<bool>" not in result.stdout
