"""`tokenward serve --log-format json`: the gateway's own log, one JSON object per line
(docs/observability.md)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from tests.conftest import Upstream, free_port, start_gateway
from tests.independent_client import chat_body


def test_every_line_the_gateway_prints_is_a_json_object(tmp_path: Path, demo_upstream: Upstream) -> None:
    admin = free_port()
    gw = start_gateway(
        tmp_path, demo_upstream.url, {"proof": {"difficulty": 4}},
        args=["--log-format", "json", "--log-level", "info", "--admin-port", str(admin)],
        env={"TOKENWARD_KEYS": "", "TOKENWARD_ADMIN_TOKEN": ""},  # both draw a warning
    )  # fmt: skip
    try:
        json_headers = {"content-type": "application/json"}
        r = httpx.post(gw.url + "/v1/chat/completions", content=chat_body(), headers=json_headers)
        assert r.status_code == 401
        assert httpx.get(f"http://127.0.0.1:{admin}/metrics").status_code == 200
    finally:
        gw.stop()
    assert gw.proc.stdout is not None
    lines = [line for line in gw.proc.stdout.read().decode().splitlines() if line.strip()]
    records = []
    for line in lines:
        record = json.loads(line)  # a line that is not JSON fails here
        assert {"ts", "level", "logger", "message"} <= set(record), record
        records.append(record)
    messages = [(r["level"], r["logger"], r["message"]) for r in records]
    assert any(lvl == "info" and msg.startswith("tokenward gateway on http://") for lvl, _, msg in messages), messages
    assert any(lvl == "warning" and "TOKENWARD_ADMIN_TOKEN" in msg for lvl, _, msg in messages), messages
    # from the worker process: tokenward's own logger, and the server's
    assert any(lvl == "warning" and lg == "tokenward" and "no signing keys" in msg for lvl, lg, msg in messages)
    assert any(lg == "_granian" for _, lg, _ in messages), messages


def test_an_unknown_log_format_is_a_usage_error(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import TOKENWARD

    done = subprocess.run(
        [*TOKENWARD, "serve", "--upstream", "http://127.0.0.1:9", "--log-format", "xml"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2 and "--log-format" in done.stderr
