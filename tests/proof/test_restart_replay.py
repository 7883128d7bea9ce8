"""Issue 12, finding 1: single use must outlive nothing that remembers it.

A gateway on the memory store forgets consumed challenges and signature nonces when it
restarts, while its signing keys (``proof.keys_file``) persist. Real gateways, restarted
on the same port with the same key file: a proof or a signed request used before the
restart is refused after it, and clients still get through (they solve the fresh
challenge a refusal carries, or sign again). On Redis, challenges stay valid across
restarts and instances, and replays are refused there by the shared store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
from tests.conftest import GatewayProc, Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header
from tests.services import RedisServer, free_port, need_redis

from tokenward.proof import KeyRing, issue_challenge
from tokenward.sdk.client import http_client
from tokenward.sdk.signing import RequestSigner
from tokenward.sdk.signing import http_client as signing_client

CHAT = "/v1/chat/completions"
CLI = [sys.executable, "-m", "tokenward.cli"]


def keygen(path: Path) -> Path:
    """A key file made by `tokenward keygen`, readable by its owner only."""
    key = subprocess.run([*CLI, "keygen"], check=True, capture_output=True, text=True).stdout
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return path


def post(gw: GatewayProc, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gw.url + CHAT, content=body, headers={"content-type": "application/json", **headers}, timeout=30)


def code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def restart(gw: GatewayProc, tmp_path: Path, upstream: str, policy: dict, name: str) -> GatewayProc:
    port = int(gw.url.rsplit(":", 1)[1])
    gw.stop()
    return start_gateway(tmp_path, upstream, policy, name=name, port=port)


def test_a_used_proof_is_refused_after_a_restart_and_clients_get_through(
    tmp_path: Path, demo_upstream: Upstream
) -> None:
    policy = {"proof": {"difficulty": 4, "keys_file": str(keygen(tmp_path / "signing.keys"))}}
    gw = start_gateway(tmp_path, demo_upstream.url, policy, name="before", port=free_port())
    try:
        body = chat_body("used once, before the restart")
        used = {"Tokenward-Proof": proof_header(get_challenge(gw.url, CHAT), body)}
        assert post(gw, body, used).status_code == 200
        assert code(post(gw, body, used)) == "proof_replayed"
        unused = get_challenge(gw.url, CHAT)  # fetched ahead, as the browser SDK does
        sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, http_client=http_client())
        assert sdk.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "before"}])

        gw = restart(gw, tmp_path, demo_upstream.url, policy, "after")

        replay = post(gw, body, used)
        assert replay.status_code == 401, replay.text
        assert code(replay) == "proof_expired"
        # The refusal carries a fresh challenge: solving it gets the same body through once.
        fresh = replay.json()["error"]["challenge"]
        assert post(gw, body, {"Tokenward-Proof": proof_header(fresh, body)}).status_code == 200
        # A challenge fetched before the restart and never used is refused the same way.
        late = chat_body("solved after the restart")
        assert code(post(gw, late, {"Tokenward-Proof": proof_header(unused, late)})) == "proof_expired"
        # The Python SDK (one challenge per request) goes on working with the same client.
        reply = sdk.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "after"}])
        assert "after" in reply.choices[0].message.content
    finally:
        gw.stop()


def test_a_signed_request_is_refused_after_a_restart_and_signing_again_works(
    tmp_path: Path, demo_upstream: Upstream
) -> None:
    keys_file = tmp_path / "clients.json"
    out = subprocess.run(
        [*CLI, "keys", "create", "backend", "-r", CHAT, "--keys-file", str(keys_file)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    private = out.stdout.strip().splitlines()[-1]
    keyid = next(line.split()[2] for line in out.stderr.splitlines() if line.startswith("Created key "))
    policy = {"clients": {"keys_file": str(keys_file)}}
    gw = start_gateway(tmp_path, demo_upstream.url, policy, name="signed-before", port=free_port())
    try:
        headers = {"content-type": "application/json"}
        # The signing transport waits out the first seconds after a start (Retry-After).
        with signing_client(private, keyid) as backend:
            assert backend.post(gw.url + CHAT, content=chat_body("first"), headers=headers).status_code == 200
        signer = RequestSigner(private, keyid)
        ahead = RequestSigner(private, keyid, clock=lambda: time.time() + 4)  # a clock 4 s fast
        body = chat_body("signed once, before the restart")
        signed = {**headers, **signer.headers("POST", gw.url + CHAT, headers.items(), body)}
        early = {**headers, **ahead.headers("POST", gw.url + CHAT, headers.items(), body)}
        assert post(gw, body, signed).status_code == 200
        assert post(gw, body, early).status_code == 200
        assert code(post(gw, body, signed)) == "signature_replayed"

        gw = restart(gw, tmp_path, demo_upstream.url, policy, "signed-after")  # back within a second or two

        for used in (signed, early):
            replay = post(gw, body, used)
            assert replay.status_code == 401, replay.text
            assert code(replay) == "signature_expired"
        # Signing again within 5 s of the start is refused too, with the seconds to wait (a
        # slow restart may be past them: tests/signatures/test_restart_window.py pins the rule).
        again = post(gw, body, {**headers, **signer.headers("POST", gw.url + CHAT, headers.items(), body)})
        if again.status_code != 200:
            assert code(again) == "signature_expired" and 1 <= int(again.headers["retry-after"]) <= 6
        with signing_client(private, keyid) as backend:
            assert backend.post(gw.url + CHAT, content=body, headers=headers).status_code == 200
        assert post(gw, body, signed).status_code == 401  # and the old ones stay refused
    finally:
        gw.stop()


def test_on_redis_challenges_outlive_a_restart_and_replays_are_still_refused(
    tmp_path: Path, demo_upstream: Upstream
) -> None:
    need_redis()
    keys = keygen(tmp_path / "signing.keys")
    with RedisServer(tmp_path / "redis") as redis:
        policy = {"store": redis.url, "proof": {"difficulty": 4, "keys_file": str(keys)}}
        gw = start_gateway(tmp_path, demo_upstream.url, policy, name="redis-before", port=free_port())
        try:
            body = chat_body("used once on redis")
            used = {"Tokenward-Proof": proof_header(get_challenge(gw.url, CHAT), body)}
            assert post(gw, body, used).status_code == 200
            unused = get_challenge(gw.url, CHAT)

            gw = restart(gw, tmp_path, demo_upstream.url, policy, "redis-after")

            assert code(post(gw, body, used)) == "proof_replayed"  # the store remembers
            late = chat_body("solved after the restart")
            assert post(gw, late, {"Tokenward-Proof": proof_header(unused, late)}).status_code == 200
            # Challenges made with the key elsewhere are judged by their age alone.
            ring = KeyRing.from_file(keys)
            old = issue_challenge(ring, CHAT, 4, 120, now=time.time() - 180).to_wire()
            assert code(post(gw, body, {"Tokenward-Proof": proof_header(old, body)})) == "proof_expired"
            minted = issue_challenge(ring, CHAT, 4, 120, now=time.time()).to_wire()
            other = chat_body("minted with the shared key")
            assert post(gw, other, {"Tokenward-Proof": proof_header(minted, other)}).status_code == 200
        finally:
            gw.stop()


def test_serve_refuses_several_workers_on_the_memory_store(tmp_path: Path) -> None:
    """Each worker would have its own memory (a proof used at one is fresh at another),
    and a worker-bound challenge would fail whenever the next connection lands elsewhere."""
    policy = tmp_path / "p.yaml"
    policy.write_text("upstream: {url: 'http://127.0.0.1:9'}\nlog: sqlite:///./x.db\n")
    r = subprocess.run(
        [*CLI, "serve", "--policy", str(policy), "--workers", "2", "--port", str(free_port())],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2
    assert "memory store" in r.stderr and "Traceback" not in r.stderr
