"""docs/threat-model.md: the README links it, its relative links resolve (anchors too),
and every ``tokenward <command>`` it tells an operator to run is a real CLI command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import typer

from tokenward.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "threat-model.md"

_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
_SPAN = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)
# "tokenward" as a command word (not tokenward.yaml, not a path), then lower-case words.
_COMMAND = re.compile(r"(?<![\w./-])tokenward((?:[ \t]+[a-z][a-z0-9-]*)+)")


def _without_code_blocks(text: str) -> str:
    return _FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    return {_slug(h) for h in _HEADING.findall(_without_code_blocks(md.read_text()))}


def _code(text: str) -> list[str]:
    """Everything the document shows as code: fenced blocks and inline spans."""
    return _FENCE.findall(text) + _SPAN.findall(_FENCE.sub("", text))


def named_commands(text: str) -> list[list[str]]:
    """The words after ``tokenward`` in each command the code of ``text`` names."""
    return [m.group(1).split() for chunk in _code(text) for m in _COMMAND.finditer(chunk)]


def command_path(words: list[str]) -> tuple[str, ...] | None:
    """Walk the CLI's command tree: the command the words name (what follows a leaf
    command is its arguments), or None when a word names no command of a group."""
    cmd = typer.main.get_command(app)
    path: list[str] = []
    for word in words:
        subcommands = getattr(cmd, "commands", None)  # groups have them, leaf commands do not
        if subcommands is None:
            break
        if word not in subcommands:
            return None
        path.append(word)
        cmd = subcommands[word]
    return tuple(path)


def test_readme_links_the_threat_model() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"\]\(docs/threat-model\.md(#[^)]*)?\)", readme), "README.md does not link docs/threat-model.md"


def test_relative_links_resolve() -> None:
    text = DOC.read_text()
    links = _LINK.findall(_without_code_blocks(text))
    relative = [t for t in links if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    assert len(relative) >= 10, relative  # the document points to the pages that explain each defence
    broken = []
    for target in relative:
        file_part, _, anchor = target.partition("#")
        path = (DOC.parent / file_part).resolve() if file_part else DOC
        if not path.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, broken


def test_the_command_checker_rejects_made_up_commands() -> None:
    assert command_path(["log", "tail"]) == ("log", "tail")
    assert command_path(["check-policy", "tokenward"]) == ("check-policy",)  # a leaf's argument
    assert command_path(["no-such-command"]) is None
    assert command_path(["keys", "unrevoke"]) is None
    assert named_commands("run `tokenward keys revoke KEYID`, not tokenward.yaml") == [["keys", "revoke"]]


def test_every_named_command_is_a_real_cli_command() -> None:
    named = named_commands(DOC.read_text())
    unknown = [" ".join(words) for words in named if command_path(words) is None]
    assert not unknown, f"the threat model names commands the CLI does not have: {unknown}"
    paths = sorted({p for words in named if (p := command_path(words))})
    # What an operator runs during an incident must be among them.
    assert {("log", "tail"), ("spend",), ("keys", "revoke"), ("simulate",)} <= set(paths), paths
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    procs = {
        p: subprocess.Popen(
            [sys.executable, "-m", "tokenward.cli", *p, "--help"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for p in paths
    }  # fmt: skip
    failed = []
    for p, proc in procs.items():
        out, _ = proc.communicate(timeout=90)
        if proc.returncode != 0:
            failed.append(f"tokenward {' '.join(p)} --help: exit {proc.returncode}\n{out[-500:]}")
    assert not failed, "\n".join(failed)
