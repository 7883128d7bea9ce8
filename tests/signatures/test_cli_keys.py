"""`tokenward keys` on a key file and on a real Redis: create, list, revoke, rotate, and
what a gateway instance makes of the result."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import pytest
from tests.services import RedisServer, need_redis
from typer.testing import CliRunner, Result

from tokenward.cli_keys import keys_app, parse_duration
from tokenward.proof.signature import SignatureClaims, load_private_key, public_key_b64url
from tokenward.sdk.signing import RequestSigner
from tokenward.store import Consume, Get, open_store
from tokenward.trusted_clients import ClientRegistry, ClientsSettings, KeyFile, StoreKeys

from .helpers import BODY, JSON, URL, facts

ROUTE = "/v1/chat/completions"


def keys(*args: object) -> Result:
    return CliRunner().invoke(keys_app, [str(a) for a in args])


def _verify(reg: ClientRegistry, private: str, keyid: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    signer = RequestSigner(private, keyid, clock=lambda: now)
    headers = [("host", "gateway.test:8080"), *JSON.items()]
    signed = headers + list(signer.headers("POST", URL, headers, BODY).items())
    result = reg.verify(facts("POST", URL, signed, BODY, now=now), now=now)
    return "ok" if isinstance(result, SignatureClaims) else result.code


def _keyid(result: Result) -> str:
    line = next(line for line in result.stderr.splitlines() if line.startswith("Created key"))
    return line.split()[2]


def test_create_prints_the_private_key_once_and_stores_the_public_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    r = keys("create", "backend", "--route", ROUTE, "--keys-file", path)
    assert r.exit_code == 0, r.output
    private = r.stdout.strip()  # stdout holds the key alone: `... > key.txt` works
    assert len(private) == 43 and "\n" not in private
    keyid = _keyid(r)
    assert keyid.startswith("backend.")
    assert "shown once" in r.stderr and "SigningTransport" in r.stderr
    (record,) = KeyFile(path).load()
    assert record.keyid == keyid and record.routes == (ROUTE,)
    assert record.public_key == public_key_b64url(load_private_key(private).public_key())
    assert private not in path.read_text()
    reg = ClientRegistry.load(ClientsSettings(keys_file=path))
    assert _verify(reg, private, keyid) == "ok"


def test_pem_to_a_file_and_yaml_key_file(tmp_path: Path) -> None:
    path, out = tmp_path / "keys.yaml", tmp_path / "backend.pem"
    r = keys("create", "backend", "-r", "*", "--keys-file", path, "--format", "pem", "--private-key-out", out)
    assert r.exit_code == 0, r.output
    assert r.stdout == ""  # nothing secret on the terminal
    assert out.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "keys:" in path.read_text()
    reg = ClientRegistry.load(ClientsSettings(keys_file=path))
    assert _verify(reg, out.read_text(), _keyid(r)) == "ok"
    # The private key file is never overwritten.
    assert keys("create", "other", "-r", "*", "--keys-file", path, "--private-key-out", out).exit_code != 0


def test_list_rotate_revoke_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = keys("create", "backend", "-r", ROUTE, "--keys-file", path)
    old_key, old_id = first.stdout.strip(), _keyid(first)
    rotated = keys("rotate", "backend", "--overlap", "1h", "--keys-file", path)
    assert rotated.exit_code == 0, rotated.output
    new_key, new_id = rotated.stdout.strip(), _keyid(rotated)
    assert new_id != old_id and "Still valid until" in rotated.stderr
    listed = {k["keyid"]: k for k in json.loads(keys("list", "--json", "--keys-file", path).stdout)}
    assert listed[old_id]["state"] == "retiring" and listed[new_id]["state"] == "active"
    assert listed[new_id]["routes"] == [ROUTE]  # a rotation keeps the client's routes
    assert listed[old_id]["not_after"] == pytest.approx(time.time() + 3600, abs=30)
    # During the overlap both keys verify; after it only the new one.
    reg = ClientRegistry.load(ClientsSettings(keys_file=path))
    assert (_verify(reg, old_key, old_id), _verify(reg, new_key, new_id)) == ("ok", "ok")
    later = time.time() + 3601
    assert (_verify(reg, old_key, old_id, later), _verify(reg, new_key, new_id, later)) == ("key_revoked", "ok")
    # Revoke: refused from now on.
    r = keys("revoke", new_id, "--keys-file", path)
    assert r.exit_code == 0, r.output
    reg = ClientRegistry.load(ClientsSettings(keys_file=path))
    assert _verify(reg, new_key, new_id) == "key_revoked"
    table = keys("list", "--keys-file", path)
    assert table.exit_code == 0 and "revoked" in table.stdout and "retiring" in table.stdout


def test_mistakes_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert "which routes" in keys("create", "backend", "--keys-file", path).stderr
    assert keys("create", "bad name!", "-r", "*", "--keys-file", path).exit_code == 2
    assert keys("create", "backend", "-r", "v1/chat", "--keys-file", path).exit_code == 2
    assert "where are the keys" in keys("list").stderr
    assert keys("revoke", "nope", "--keys-file", path).exit_code == 2
    assert keys("rotate", "ghost", "--keys-file", path).exit_code == 2
    assert keys("create", "x", "-r", "*", "--store", "memory://").exit_code == 2
    assert keys("create", "x", "-r", "*", "--store", "redis://x", "--keys-file", path).exit_code == 2
    assert keys("rotate", "x", "--overlap", "soon", "--keys-file", path).exit_code == 2
    path.write_text("{broken")
    assert "not valid JSON" in keys("list", "--keys-file", path).stderr
    assert parse_duration("90") == 90 and parse_duration("15m") == 900 and parse_duration("7d") == 604800


def test_keys_file_from_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"clients:\n  keys_file: {path}\n  named:\n    - name: backend\n      routes: ['{ROUTE}']\n")
    r = keys("create", "backend", "--policy", policy)  # routes come from the policy
    assert r.exit_code == 0, r.output
    assert KeyFile(path).load()[0].routes == ()
    policy.write_text("clients:\n  bogus: 1\n")
    assert keys("list", "--policy", policy).exit_code == 2


def test_store_keys_and_revocation_across_instances(tmp_path: Path) -> None:
    """Two gateway instances share one Redis; a revocation made with the CLI is refused by
    both on their very next request, though each had the key cached."""
    need_redis()
    with RedisServer(tmp_path) as redis:
        created = keys("create", "backend", "-r", "*", "--store", redis.url)
        assert created.exit_code == 0, created.output
        private, keyid = created.stdout.strip(), _keyid(created)
        listed = json.loads(keys("list", "--json", "--store", redis.url).stdout)
        assert [k["keyid"] for k in listed] == [keyid] and listed[0]["state"] == "active"
        settings = ClientsSettings(keys_in_store=True)
        instances = [ClientRegistry(settings), ClientRegistry(settings)]

        async def request(reg: ClientRegistry) -> str:
            """What the guard does: prefetch unseen keys, verify, one batch, confirm."""
            store = open_store(redis.url)
            try:
                now = time.time()
                signer = RequestSigner(private, keyid, clock=lambda: now)
                headers = [("host", "gateway.test:8080"), *JSON.items()]
                f = facts(
                    "POST", URL, headers + list(signer.headers("POST", URL, headers, BODY).items()), BODY, now=now
                )
                fetch = reg.prefetch(f.headers)
                if fetch:
                    reg.learn(fetch, await store.execute(fetch))
                claims = reg.verify(f, now=now)
                if not isinstance(claims, SignatureClaims):
                    return claims.code
                revocation = reg.revocation_op(claims)
                assert isinstance(revocation, Get)
                first, revoked = await store.execute([Consume(claims.consume_key, claims.consume_ttl), revocation])
                result = reg.confirm(claims, first_use=first, revocation=revoked, now=now)
                return "ok" if isinstance(result, SignatureClaims) else result.code
            finally:
                await store.close()

        async def both() -> list[str]:
            return [await request(reg) for reg in instances]

        assert asyncio.run(both()) == ["ok", "ok"]
        assert keys("revoke", keyid, "--store", redis.url).exit_code == 0
        assert asyncio.run(both()) == ["key_revoked", "key_revoked"]
        # Rotation on the Store: the new key verifies at once, on both.
        rotated = keys("rotate", "backend", "--overlap", "0", "--store", redis.url)
        assert rotated.exit_code == 0, rotated.output
        private, keyid = rotated.stdout.strip(), _keyid(rotated)
        assert asyncio.run(both()) == ["ok", "ok"]
        states = {k["keyid"]: k["state"] for k in json.loads(keys("list", "--json", "--store", redis.url).stdout)}
        assert sorted(states.values()) == ["active", "revoked"]

        async def stored() -> list[str]:
            store = open_store(redis.url)
            try:
                return [r.keyid for r in await StoreKeys(store).all()]
            finally:
                await store.close()

        assert len(asyncio.run(stored())) == 2
    assert "redis://127.0.0.1" in created.stderr  # where it went (no credentials in that URL anyway)
