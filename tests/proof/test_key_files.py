"""Issue 12, findings 2-4: key files as an operator handles them, over real processes.

* A running gateway picks up ``tokenward keys revoke --keys-file`` and a new signing key
  in ``proof.keys_file`` within seconds, with no policy edit (the policy watcher watches
  the key files the policy names).
* A key file that is not one fails ``check-policy`` and ``serve`` with exit code 2 and
  one line, never a traceback.
* ``tokenward keygen --out`` writes 0600; a key file that group or others can read is
  refused, naming the file and the ``chmod 600`` that fixes it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header
from tests.services import free_port

from tokenward.proof import KeyRing
from tokenward.sdk.signing import http_client as signing_client

CHAT = "/v1/chat/completions"
CLI = [sys.executable, "-m", "tokenward.cli"]
SETTLE = 15.0  # seconds allowed for a change to be seen; the watcher polls every second


def run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )  # fmt: skip


def keygen(path: Path) -> Path:
    """A key file made by `tokenward keygen` (stdout) and written 0600 by the test."""
    key = run("keygen").stdout
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return path


def until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {SETTLE:g}s: {what}")


def prove_and_post(url: str, challenge: dict, body: bytes) -> httpx.Response:
    headers = {"content-type": "application/json", "Tokenward-Proof": proof_header(challenge, body)}
    return httpx.post(url + CHAT, content=body, headers=headers, timeout=30)


# -- 2: the running gateway sees key files change ----------------------------------------------


def test_revoking_with_the_cli_refuses_the_client_within_seconds_without_a_policy_edit(
    tmp_path: Path, demo_upstream: Upstream
) -> None:
    keys_file = tmp_path / "clients.json"
    out = run("keys", "create", "backend", "-r", CHAT, "--keys-file", keys_file)
    assert out.returncode == 0, out.stderr
    private = out.stdout.strip().splitlines()[-1]
    keyid = next(line.split()[2] for line in out.stderr.splitlines() if line.startswith("Created key "))
    gw = start_gateway(tmp_path, demo_upstream.url, {"clients": {"keys_file": str(keys_file)}})
    policy_file = tmp_path / "gw.yaml"
    policy_stamp = policy_file.stat().st_mtime_ns
    backend = signing_client(private, keyid, timeout=30)  # waits out the seconds after a start

    def call() -> httpx.Response:
        return backend.post(gw.url + CHAT, content=chat_body("signed"), headers={"content-type": "application/json"})

    try:
        assert call().status_code == 200
        revoked = run("keys", "revoke", keyid, "--keys-file", keys_file)
        assert revoked.returncode == 0, revoked.stderr
        last: list[httpx.Response] = []

        def refused() -> bool:
            last[:] = [call()]
            return last[0].status_code == 401

        until(refused, "the revoked key is refused")
        assert last[0].json()["error"]["code"] == "key_revoked"
        assert policy_file.stat().st_mtime_ns == policy_stamp  # no policy edit was needed
        assert "within a couple of seconds" in revoked.stderr  # and the CLI says so
    finally:
        backend.close()
        gw.stop()


def test_a_new_signing_key_is_used_without_a_restart_and_old_challenges_still_verify(
    tmp_path: Path, demo_upstream: Upstream
) -> None:
    keys = keygen(tmp_path / "signing.keys")
    gw = start_gateway(tmp_path, demo_upstream.url, {"proof": {"difficulty": 4, "keys_file": str(keys)}})
    try:
        before = get_challenge(gw.url, CHAT)
        new = keygen(tmp_path / "new.keys").read_text()
        rotated = tmp_path / "rotated.keys"
        rotated.write_text(new + keys.read_text())  # the new key first, the old one kept after it
        rotated.chmod(0o600)
        rotated.replace(keys)  # as an operator (or `keygen --out`) swaps it in
        assert len(KeyRing.from_file(keys).keys) == 2
        until(lambda: get_challenge(gw.url, CHAT)["challenge"][:8] != before["challenge"][:8], "the new key signs")
        body = chat_body("issued under the previous key")
        ok = prove_and_post(gw.url, before, body)
        assert ok.status_code == 200, ok.text
        # A broken edit is ignored: the gateway keeps the keys it has and goes on serving.
        keys.write_text("not a key\n")
        time.sleep(2.5)
        body = chat_body("after a broken edit")
        c = get_challenge(gw.url, CHAT)
        ok = prove_and_post(gw.url, c, body)
        assert ok.status_code == 200, ok.text
        assert gw.proc.poll() is None
    finally:
        gw.stop()


# -- 3: a file that is not a key file ----------------------------------------------------------


def policy_with(tmp_path: Path, section: str, keys_file: Path) -> Path:
    p = tmp_path / f"{section}.yaml"
    p.write_text(
        f"upstream: {{url: 'http://127.0.0.1:9'}}\nlog: sqlite:///./x.db\n{section}: {{keys_file: {keys_file}}}\n"
    )
    return p


def serve(policy: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("serve", "--policy", policy, "--port", str(free_port()), env=env, cwd=policy.parent)


@pytest.mark.parametrize("section", ["proof", "clients"])
def test_a_file_that_is_not_a_key_file_fails_check_policy_and_serve_in_one_line(tmp_path: Path, section: str) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello, I am not a key\n")
    junk.chmod(0o600)
    policy = policy_with(tmp_path, section, junk)
    checked = run("check-policy", policy)
    assert checked.returncode == 2
    assert f"{section}.keys_file" in checked.stderr + checked.stdout or "clients" in checked.stderr
    assert str(junk) in checked.stderr and "Traceback" not in checked.stderr
    served = serve(policy)
    assert served.returncode == 2, served.stderr[-2000:]
    assert "Traceback" not in served.stderr + served.stdout
    lines = served.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{section}.keys_file" in lines[0] and str(junk) in lines[0], served.stderr


def test_a_binary_file_as_signing_keys_is_one_line_too(tmp_path: Path) -> None:
    junk = tmp_path / "random.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    junk.chmod(0o600)
    served = serve(policy_with(tmp_path, "proof", junk))
    assert served.returncode == 2 and len(served.stderr.strip().splitlines()) == 1, served.stderr
    assert "not a key file" in served.stderr


def test_bad_keys_in_the_environment_fail_check_policy_and_serve_in_one_line(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("upstream: {url: 'http://127.0.0.1:9'}\nlog: sqlite:///./x.db\n")
    env = {"TOKENWARD_KEYS": "not-a-key"}
    checked = run("check-policy", policy, env=env)
    assert checked.returncode == 2 and "TOKENWARD_KEYS" in checked.stderr
    served = serve(policy, env)
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert served.stderr.strip().count("\n") == 0 and "TOKENWARD_KEYS" in served.stderr


# -- 4: permissions ------------------------------------------------------------------------------


def test_keygen_out_writes_an_owner_only_file_and_adds_to_it(tmp_path: Path) -> None:
    keys = tmp_path / "signing.keys"
    first = run("keygen", "--out", keys)
    assert first.returncode == 0 and first.stdout == ""  # the secret is not printed
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    ring = KeyRing.from_file(keys)
    second = run("keygen", "--out", keys)
    assert second.returncode == 0, second.stderr
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    rotated = KeyRing.from_file(keys)
    assert len(rotated.keys) == 2 and rotated.keys[1] == ring.signing  # the new key first, the old kept


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_signing_key_file_others_can_read_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    keys = keygen(tmp_path / "signing.keys")
    keys.chmod(mode)
    policy = policy_with(tmp_path, "proof", keys)
    checked = run("check-policy", policy)
    assert checked.returncode == 2 and f"chmod 600 {keys}" in checked.stderr, checked.stderr
    served = serve(policy)
    assert served.returncode == 2, served.stderr
    [line] = served.stderr.strip().splitlines()
    assert f"chmod 600 {keys}" in line and "Traceback" not in served.stdout
    refused = run("keygen", "--out", keys)  # nor does keygen add to (and so bless) such a file
    assert refused.returncode == 2 and f"chmod 600 {keys}" in refused.stderr
    keys.chmod(0o600)
    assert run("check-policy", policy).returncode == 0
