"""Running the CLI as a user does: ``python -m tokenward.cli`` in a subprocess, its
output piped, or on a real pseudo-terminal of a given width."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tokenward.log import DecisionRecord, SQLiteLog

TOKENWARD = [sys.executable, "-m", "tokenward.cli"]
ROOT = Path(__file__).resolve().parent.parent.parent
# Settings of the test runner's own environment that would change what rich decides.
_TERMINAL_ENV = ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _TERMINAL_ENV}
    env.update(extra)
    return env


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI with stdout and stderr piped (what ``| grep`` and CI logs see)."""
    return subprocess.run(
        [*TOKENWARD, *map(str, args)],
        capture_output=True, text=True, env=env if env is not None else environment(), timeout=timeout,
    )  # fmt: skip


def run_tty(*args: str | Path, columns: int, timeout: float = 60) -> tuple[int, str]:
    """The CLI on a pseudo-terminal ``columns`` wide (stdout and stderr both on it): its
    exit code and what the terminal received, without colour codes and with ``\\n`` ends."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [*TOKENWARD, *map(str, args)],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env=environment(TERM="xterm-256color", COLUMNS=str(columns)),
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return code, _ANSI.sub("", text)


def write_log(db: Path, records: list[DecisionRecord]) -> None:
    """A real SQLite decision log holding ``records``, written as the gateway writes it."""

    async def main() -> None:
        log = SQLiteLog(db)
        await log.start()
        for rec in records:
            log.record(rec)
        await log.close()

    asyncio.run(main())


def record(i: int, **overrides: object) -> DecisionRecord:
    fields: dict[str, object] = {
        "ts": 1_700_000_000.0 + i,
        "request_id": f"id{i:04d}abcdefgh",
        "method": "POST",
        "path": "/v1/chat/completions",
        "route": "/v1/chat/completions",
        "client_ip": f"198.51.100.{i % 250}",
        "action": "challenge",
        "name": "proof/missing",
        "code": "proof_required",
        "reasons": ["proof/missing"],
        "status": 401,
        "decision_ms": 0.5,
    }
    fields.update(overrides)
    return DecisionRecord(**fields)  # type: ignore[arg-type]
