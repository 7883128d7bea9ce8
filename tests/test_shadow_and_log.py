"""Shadow mode forwards but logs what enforce would have done; `log tail` shows reasons."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
from tests.conftest import Upstream, start_gateway
from tests.independent_client import chat_body

from tokenward.log import read_recent


def test_shadow_mode_forwards_and_logs_the_would_be_decision(tmp_path, demo_upstream: Upstream) -> None:
    gw = start_gateway(tmp_path, demo_upstream.url, {"mode": "shadow"})
    try:
        r = httpx.post(gw.url + "/v1/chat/completions", content=chat_body("no proof at all"),
                       headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 200 and "no proof at all" in r.text
        assert r.headers["tokenward-decision"] == "allow"
        request_id = r.headers["tokenward-request-id"]
        deadline = time.monotonic() + 5
        row = None
        while row is None and time.monotonic() < deadline:
            row = next((x for x in read_recent(gw.db, 10) if x["request_id"] == request_id), None)
            time.sleep(0.05)
        assert row is not None
        assert row["action"] == "allow" and row["shadow_action"] == "challenge"
        assert row["code"] == "proof_required" and row["reasons"] == ["proof/missing"]
        assert row["upstream_status"] == 200

        out = subprocess.run(
            [sys.executable, "-m", "tokenward.cli", "log", "tail", "--db", str(gw.db), "-n", "5"],
            capture_output=True, text=True, check=True, env={"COLUMNS": "200", "PATH": ""},
        )  # fmt: skip
        assert "shadow: challenge" in out.stdout and "proof/missing" in out.stdout
        as_json = subprocess.run(
            [sys.executable, "-m", "tokenward.cli", "log", "tail", "--db", str(gw.db), "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        first = json.loads(as_json.stdout.splitlines()[0])
        assert first["request_id"] == request_id and first["reasons"] == ["proof/missing"]
    finally:
        gw.stop()
