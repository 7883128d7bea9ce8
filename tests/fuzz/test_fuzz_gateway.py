"""Issue 12, finding 5 over a socket: a real gateway (``tokenward serve``, granian, the
SQLite decision log) gets a few hundred requests whose proof, signals, device and
signature headers are generated, some on top of a valid proof or a valid signature, plus
device registrations of generated keys. Every answer is below 500 and well-formed JSON
(the error shape of docs/protocol.md §3 for refusals), the gateway writes no traceback,
still answers afterwards, and its decision log holds one well-formed row per judged request.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.conftest import TOKENWARD, Upstream, stop, wait_http
from tests.fuzz.strategies import device_headers, digests, proof_headers, signals_headers, signature_inputs, signatures
from tests.fuzz.test_fuzz_inprocess import KEYID, POLICY, PRIVATE, SPKI, flipped
from tests.services import free_port

from tokenward.decision import CODE_STATUS
from tokenward.log import read_recent
from tokenward.proof import solve
from tokenward.proof.signature import SIGNATURE_CODES
from tokenward.sdk.signing import RequestSigner

CHAT, MESSAGES, SIGNED = "/v1/chat/completions", "/v1/messages", "/api/chat"
FLAVOUR = {CHAT: "openai", MESSAGES: "anthropic", SIGNED: "custom"}
ACTIONS = {"allow", "challenge", "throttle", "block", "degrade", "invalid"}
SOCKET = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
# An ECDSA key on another curve, and an SPKI whose algorithm OID is unknown (once a 500).
P384 = bytes.fromhex("3076301006072a8648ce3d020106052b8104002203620004" + "11" * 96)
UNKNOWN_OID = b"0Y0\x13\x06\x07" + b"\x00" * 7 + b"\x06\x08" + b"\x00" * 8 + b"\x03B\x00" + b"\x00" * 65


class Gateway:
    """``tokenward serve`` with its output in a file (a pipe nobody reads could fill up)."""

    def __init__(self, tmp_path: Path, upstream: str):
        self.db = tmp_path / "fuzz.db"
        policy = {**POLICY, "log": f"sqlite:///{self.db}", "devices": {"registration_difficulty": 0},
                  "routes": [*POLICY["routes"], {"path": "/_demo/*", "protect": False}]}  # fmt: skip
        (tmp_path / "fuzz.yaml").write_text(yaml.safe_dump(policy))
        self.output = tmp_path / "gateway.out"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "TOKENWARD_KEYS"}
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [*TOKENWARD, "serve", "--upstream", upstream, "--policy", "fuzz.yaml", "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
            )  # fmt: skip
        wait_http(f"{self.url}/.tokenward/health", self.proc)


def wire(headers: dict[str, str]) -> dict[str, str]:
    """What an HTTP client can send: ASCII, no line breaks."""
    return {
        k: v.encode("ascii", "ignore").decode().replace("\r", "").replace("\n", "").strip() for k, v in headers.items()
    }


def check_answer(r: httpx.Response, flavour: str) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    data = orjson.loads(r.content)
    assert isinstance(data, dict)
    if r.headers.get("tokenward-decision") in ("allow", "degrade") and "tokenward-request-id" in r.headers:
        return  # the upstream's answer
    if flavour == "device" and r.status_code == 200:
        assert isinstance(data["device"], str)
        return
    if flavour == "anthropic":
        assert data["type"] == "error"
        code, message = data["error"]["type"], data["error"]["message"]
    else:
        assert data["error"]["type"] == "tokenward"
        code, message = data["error"]["code"], data["error"]["message"]
    assert CODE_STATUS.get(code) == r.status_code, (code, r.status_code)
    assert isinstance(message, str) and message
    if r.status_code == 401 and code not in SIGNATURE_CODES:  # a proof refusal carries a fresh challenge
        assert set(data["error"].get("challenge", ())) == {"v", "challenge", "difficulty", "expires_at"}, data


request_headers = st.fixed_dictionaries(
    {},
    optional={"tokenward-proof": proof_headers(), "tokenward-signals": signals_headers,
              "tokenward-device": device_headers, "signature-input": signature_inputs, "signature": signatures,
              "content-digest": digests},
)  # fmt: skip
BODY = orjson.dumps({"model": "demo-1", "messages": [{"role": "user", "content": "fuzz"}], "max_tokens": 20})


def test_generated_headers_over_a_socket(tmp_path: Path, demo_upstream: Upstream) -> None:
    gw = Gateway(tmp_path, demo_upstream.url)
    judged: dict[str, int] = {}
    client = httpx.Client(timeout=30)
    signer = RequestSigner(PRIVATE, KEYID)

    @SOCKET
    @given(headers=request_headers, path=st.sampled_from(list(FLAVOUR)), proved=st.booleans(), signed=st.booleans())
    def one(headers: dict[str, str], path: str, proved: bool, signed: bool) -> None:
        base = {"content-type": "application/json"}
        if signed:
            base.update(signer.headers("POST", gw.url + path, base.items(), BODY))
        if proved:
            c = client.post(f"{gw.url}/.tokenward/challenge", json={"route": path}).json()
            base["tokenward-proof"] = f"v1.{c['challenge']}.{solve(c['challenge'], BODY, c['difficulty'])}"
        r = client.post(gw.url + path, content=BODY, headers=wire({**base, **headers}))
        check_answer(r, FLAVOUR[path])
        request_id = r.headers["tokenward-request-id"]
        assert request_id not in judged
        judged[request_id] = r.status_code

    @settings(SOCKET, max_examples=60)
    @given(key=st.one_of(st.binary(max_size=120), flipped(SPKI), st.sampled_from([P384, UNKNOWN_OID, SPKI])))
    @example(key=UNKNOWN_OID)
    def register(key: bytes) -> None:
        body = orjson.dumps({"public_key": base64.urlsafe_b64encode(key).rstrip(b"=").decode()})
        c = client.post(f"{gw.url}/.tokenward/challenge", json={"route": "/.tokenward/device"}).json()
        proof = f"v1.{c['challenge']}.{solve(c['challenge'], body, c['difficulty'])}"
        r = client.post(f"{gw.url}/.tokenward/device", content=body,
                        headers={"content-type": "application/json", "tokenward-proof": proof})  # fmt: skip
        check_answer(r, "device")

    try:
        one()
        register()
        assert client.get(f"{gw.url}/.tokenward/health").status_code == 200  # still answering
    finally:
        client.close()
        stop(gw.proc)
    output = gw.output.read_text(errors="replace")
    assert "Traceback" not in output and "Exception" not in output, output[-3000:]
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in read_recent(gw.db, 100_000):
        rows.setdefault(row["request_id"], []).append(row)
    assert len(judged) >= 250
    for request_id, status in judged.items():
        [row] = rows.get(request_id, [None])
        assert row is not None, f"no decision logged for {request_id}"
        assert row["status"] == status and row["action"] in ACTIONS, row
        assert row["route"] in FLAVOUR and isinstance(row["name"], str) and "/" in row["name"]
        assert all(isinstance(r, str) for r in row["reasons"])
        orjson.dumps(row, default=str)
