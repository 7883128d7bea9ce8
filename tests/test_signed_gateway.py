"""Issue 7 end to end: trusted server clients sign requests (RFC 9421) through the real
gateway; keys made and revoked with the `tokenward keys` CLI."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import anthropic
import httpx
import openai
import pytest
from tests.conftest import GatewayProc, Upstream, start_gateway
from tests.services import RedisServer, need_redis

from tokenward.log import read_recent
from tokenward.sdk.signing import RequestSigner, async_http_client, http_client, signing_middleware

CLI = [sys.executable, "-m", "tokenward.cli", "keys"]


def create_key(client: str, *where: str) -> tuple[str, str]:
    out = subprocess.run(
        [*CLI, "create", client, "-r", "/v1/chat/completions", "-r", "/v1/messages", *where],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    private = out.stdout.strip().splitlines()[-1]
    listing = json.loads(
        subprocess.run([*CLI, "list", "--json", *where], capture_output=True, text=True, check=True).stdout
    )
    keyid = next(k["keyid"] for k in listing if k["client"] == client)
    return keyid, private


def logged(gw: GatewayProc, request_id: str) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for row in read_recent(gw.db, 50):
            if row["request_id"] == request_id:
                return row
        time.sleep(0.05)
    raise AssertionError("not logged")


def test_sdks_signed_through_the_gateway(tmp_path: Path, demo_upstream: Upstream) -> None:
    keys_file = tmp_path / "keys.json"
    keyid, private = create_key("backend", "--keys-file", str(keys_file))
    gw = start_gateway(tmp_path, demo_upstream.url, {"clients": {"keys_file": str(keys_file)}})
    try:
        oa = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", http_client=http_client(private, keyid))
        reply = oa.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "signed hello"}])
        assert "signed hello" in reply.choices[0].message.content
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in oa.chat.completions.create(
                model="demo-1", messages=[{"role": "user", "content": "signed stream"}], stream=True
            )
            if c.choices
        )
        assert "signed stream" in streamed
        an = anthropic.Anthropic(base_url=gw.url, api_key="unused", http_client=http_client(private, keyid))
        msg = an.messages.create(
            model="demo-1", max_tokens=100, messages=[{"role": "user", "content": "signed claude"}]
        )
        assert "signed claude" in msg.content[0].text
        with an.messages.stream(model="demo-1", max_tokens=100, messages=[{"role": "user", "content": "x"}]) as s:
            assert s.get_final_message().content[0].text

        raw = oa.chat.completions.with_raw_response.create(
            model="demo-1", messages=[{"role": "user", "content": "log"}]
        )
        row = logged(gw, raw.headers["tokenward-request-id"])
        assert row["action"] == "allow" and "signature/ok" in [s["name"] for s in row["signals"]]
        # Named for what admitted it: a signature, not a proof (there is none).
        assert row["name"] == "signature/ok" and row["proof"] is None and "keyid" in json.dumps(row["signals"])

        # Without the helper: the route still accepts browser proofs, so it asks for one.
        with pytest.raises(openai.AuthenticationError) as info:
            openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0).chat.completions.create(
                model="demo-1", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.body["code"] == "proof_required"
        # A route the client may not call.
        with pytest.raises(openai.PermissionDeniedError) as denied:
            oa.completions.create(model="demo-1", prompt="not mine")
        assert denied.value.body["code"] == "route_forbidden"
    finally:
        gw.stop()


def test_every_signing_helper_waits_out_a_fresh_gateway_and_gets_in(tmp_path: Path, demo_upstream: Upstream) -> None:
    """On the memory store a gateway refuses signatures for its first seconds (it cannot
    tell them from ones it consumed before a restart): the sync and async transports and
    the aiohttp middleware, called at once, each wait the Retry-After and get in."""
    keys_file = tmp_path / "keys.json"
    keyid, private = create_key("backend", "--keys-file", str(keys_file))
    # max_future 8 s: the gateway's first 8-9 s, so a slow start still leaves some of them.
    policy = {"clients": {"keys_file": str(keys_file), "max_future": 8}}
    gw = start_gateway(tmp_path, demo_upstream.url, policy)
    url = f"{gw.url}/v1/chat/completions"
    body = json.dumps({"model": "demo-1", "messages": [{"role": "user", "content": "at once"}]}).encode()
    ct = {"content-type": "application/json"}
    bare = RequestSigner(private, keyid)

    def sync_call() -> int:
        with http_client(private, keyid) as client:
            return int(client.post(url, content=body, headers=ct).status_code)

    async def async_call() -> int:
        async with async_http_client(private, keyid) as client:
            return int((await client.post(url, content=body, headers=ct)).status_code)

    async def aiohttp_call() -> int:
        async with aiohttp.ClientSession(middlewares=(signing_middleware(private, keyid),)) as session:
            async with session.post(url, data=body, headers=ct) as r:
                return r.status

    async def together() -> list[int]:
        return list(await asyncio.gather(asyncio.to_thread(sync_call), async_call(), aiohttp_call()))

    try:
        first = httpx.post(url, content=body, headers={**ct, **bare.headers("POST", url, ct.items(), body)})
        assert first.status_code == 401 and first.json()["error"]["code"] == "signature_expired", first.text
        assert 1 <= int(first.headers["retry-after"]) <= 9
        assert asyncio.run(together()) == [200, 200, 200]
        deadline, rows = time.monotonic() + 5, []
        while len(rows) < 4 and time.monotonic() < deadline:  # the log is written behind the response
            rows = [r for r in read_recent(gw.db, 50) if r["code"] == "signature_expired"]
            time.sleep(0.05)
        assert len(rows) == 4  # each helper was refused once, waited, and signed again
    finally:
        gw.stop()


def test_each_signature_failure_has_its_own_code(tmp_path: Path, demo_upstream: Upstream) -> None:
    keys_file = tmp_path / "keys.json"
    keyid, private = create_key("backend", "--keys-file", str(keys_file))
    _, other_private = create_key("other", "--keys-file", str(tmp_path / "other.json"))
    gw = start_gateway(
        tmp_path, demo_upstream.url,
        {"clients": {"keys_file": str(keys_file)},
         "routes": [{"path": "/v1/chat/completions", "api": "openai", "signed": "require"}]},
    )  # fmt: skip
    url = f"{gw.url}/v1/chat/completions"
    body = json.dumps({"model": "demo-1", "messages": [{"role": "user", "content": "hi"}]}).encode()
    signer = RequestSigner(private, keyid)
    stale = RequestSigner(private, keyid, clock=lambda: time.time() - 600)  # a clock ten minutes slow

    def send(headers: dict[str, str], content: bytes = body, target: str = url) -> httpx.Response:
        return httpx.post(target, content=content, headers={"content-type": "application/json", **headers})

    def signed(content: bytes = body, target: str = url, by: RequestSigner = signer) -> dict[str, str]:
        return by.headers("POST", target, [("content-type", "application/json")], content)

    try:
        with http_client(private, keyid) as backend:  # waits out the seconds after a start
            assert backend.post(url, content=body, headers={"content-type": "application/json"}).status_code == 200
        good = signed()
        assert send(good).status_code == 200
        codes = {
            "replayed": send(good),
            "missing": send({}),
            "digest": send(signed(), content=body + b" "),
            "path": send(signed(target=f"{gw.url}/v1/messages")),
            "expired": send(signed(by=stale)),
            "unknown": send(signed(by=RequestSigner(other_private, "stranger.key"))),
        }
        got = {name: (r.status_code, r.json()["error"]["code"]) for name, r in codes.items()}
        assert got == {
            "replayed": (401, "signature_replayed"),
            "missing": (401, "signature_required"),
            "digest": (401, "digest_mismatch"),
            "path": (401, "signature_invalid"),
            "expired": (401, "signature_expired"),
            "unknown": (401, "unknown_key"),
        }, got
    finally:
        gw.stop()


def test_revocation_reaches_every_instance_within_one_request(tmp_path: Path, demo_upstream: Upstream) -> None:
    need_redis()
    with RedisServer(tmp_path / "redis") as redis:
        store = f"{redis.url}?prefix=sig{secrets.token_hex(3)}:"
        keyid, private = create_key("backend", "--store", store)
        shared = secrets.token_bytes(32)
        policy = {"store": store, "clients": {"keys_in_store": True}}
        a = start_gateway(tmp_path, demo_upstream.url, policy, name="a", key=shared)
        b = start_gateway(tmp_path, demo_upstream.url, policy, name="b", key=shared)
        try:
            clients = [openai.OpenAI(base_url=f"{g.url}/v1", api_key="u", max_retries=0,
                                     http_client=http_client(private, keyid)) for g in (a, b)]  # fmt: skip
            for c in clients:
                assert c.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "ok"}])
            subprocess.run([*CLI, "revoke", keyid, "--store", store], check=True, capture_output=True)
            for c in clients:  # the very next request on each instance
                with pytest.raises(openai.AuthenticationError) as info:
                    c.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "revoked?"}])
                assert info.value.body["code"] == "key_revoked"
        finally:
            a.stop()
            b.stop()
