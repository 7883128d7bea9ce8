"""The signing helpers over a real loopback socket: a tiny gateway (uvicorn) builds the
request facts as tokenward's HTTP layer does, verifies the signature, consumes the nonce
and forwards to the demo LLM. httpx2, httpx, aiohttp and the official openai and anthropic
SDKs (plain and streaming) sign through the helpers and are accepted; unsigned, replayed
or tampered requests are refused with their own codes."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anthropic
import httpx
import httpx2
import openai
import orjson
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.httpx2 import adapt_message
from http_message_signatures.resolvers import MappingKeyResolver
from tests.services import free_port

from tokenward.demo.upstream import create_app
from tokenward.facts import TrustedProxies
from tokenward.http.gate import build_facts
from tokenward.proof.signature import SignatureClaims, private_key_pem, public_key_b64url, signature_failure
from tokenward.sdk.signing import (
    AsyncSigningTransport,
    RequestSigner,
    SigningTransport,
    async_http_client,
    http_client,
    signing_middleware,
)
from tokenward.store import Consume, MemoryStore
from tokenward.trusted_clients import ClientKeySpec, ClientRegistry, ClientSpec, ClientsSettings

QUESTION = "How does a signed request reach the model?"
KEY = Ed25519PrivateKey.generate()
KEYID = "backend.loopback"
NARROW = Ed25519PrivateKey.generate()  # a client allowed on /v1/messages only


@dataclass
class VerifyingGateway:
    registry: ClientRegistry
    upstream: Any = field(default_factory=lambda: create_app(chunk_delay=0.0))
    store: MemoryStore = field(default_factory=MemoryStore)
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        now = time.time()
        facts = build_facts(scope, body, None, TrustedProxies(()), "req", now)  # carries scheme, raw path, query
        result = self.registry.verify(facts, now=now)
        if result is None:  # unsigned: this gateway's routes all require signatures
            result = signature_failure("signature_required")
        if isinstance(result, SignatureClaims):
            (first,) = await self.store.execute([Consume(result.consume_key, result.consume_ttl)])
            result = self.registry.confirm(result, first_use=first, revocation=None, now=now)
        if isinstance(result, SignatureClaims):
            outcome = {"ok": True, "client": result.client, "keyid": result.keyid, "covered": list(result.covered)}
        else:
            outcome = {"ok": False, "code": result.code, "message": result.message}
        self.seen.append({**outcome, "path": scope["path"], "query": facts.query})
        if scope["path"] == "/_verify" or not outcome["ok"]:
            status = 200 if outcome["ok"] else result.status  # type: ignore[union-attr]
            if not outcome["ok"] and scope["path"] == "/v1/messages":
                payload = {"type": "error", "error": {"type": outcome["code"], "message": outcome["message"]}}
            elif not outcome["ok"]:
                payload = {"error": {"type": "tokenward", "code": outcome["code"], "message": outcome["message"]}}
            else:
                payload = outcome
            data = orjson.dumps(payload)
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.upstream(scope, replay, send)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, VerifyingGateway]]:
    settings = ClientsSettings(
        named=(
            ClientSpec(name="backend", routes=("*",),
                       keys=(ClientKeySpec(keyid=KEYID, public_key=public_key_b64url(KEY.public_key())),)),
            ClientSpec(name="narrow", routes=("/v1/messages",),
                       keys=(ClientKeySpec(keyid="narrow.k", public_key=public_key_b64url(NARROW.public_key())),)),
        )
    )  # fmt: skip
    app = VerifyingGateway(ClientRegistry(settings))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the loopback gateway did not start")
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(10)


def _url(gateway: tuple[str, VerifyingGateway]) -> str:
    return gateway[0]


# -- plain HTTP libraries ---------------------------------------------------------------------


def test_httpx2_sync(gateway: tuple[str, VerifyingGateway]) -> None:
    with httpx2.Client(transport=SigningTransport(KEY, KEYID)) as client:
        r = client.post(f"{_url(gateway)}/_verify?a=1&b=%41", json={"hello": "world"})
        assert r.status_code == 200, r.text
        assert r.json()["covered"] == ['"@method"', '"@target-uri"', '"content-digest"', '"content-type"']
        r = client.get(f"{_url(gateway)}/_verify")  # no body, no content-type
        assert r.status_code == 200, r.text
        assert r.json()["covered"] == ['"@method"', '"@target-uri"', '"content-digest"']


async def test_httpx2_async(gateway: tuple[str, VerifyingGateway]) -> None:
    async with httpx2.AsyncClient(transport=AsyncSigningTransport(private_key_pem(KEY), KEYID)) as client:
        replies = await asyncio.gather(*(client.post(f"{_url(gateway)}/_verify", content=b"x" * i) for i in range(5)))
    assert [r.status_code for r in replies] == [200] * 5


def test_httpx_sync_and_streamed_body(gateway: tuple[str, VerifyingGateway]) -> None:
    transport = SigningTransport(KEY, KEYID, transport=httpx.HTTPTransport())
    with httpx.Client(transport=transport) as client:  # type: ignore[arg-type]
        assert client.post(f"{_url(gateway)}/_verify", json={"a": 1}).status_code == 200
        chunks = (part for part in (b"one ", b"two ", b"three"))  # a generator: read once, signed, then sent
        assert client.post(f"{_url(gateway)}/_verify", content=chunks).status_code == 200


async def test_httpx_async(gateway: tuple[str, VerifyingGateway]) -> None:
    transport = AsyncSigningTransport(KEY, KEYID, transport=httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport) as client:  # type: ignore[arg-type]
        assert (await client.post(f"{_url(gateway)}/_verify?q=1", json={"a": 1})).status_code == 200


async def test_aiohttp_middleware(gateway: tuple[str, VerifyingGateway]) -> None:
    async with aiohttp.ClientSession(middlewares=(signing_middleware(KEY, KEYID),)) as session:
        async with session.post(f"{_url(gateway)}/_verify?x=%41&y=2", json={"a": 1}) as r:
            assert r.status == 200, await r.text()
        async with session.post(f"{_url(gateway)}/_verify", data=b"raw bytes") as r:
            assert r.status == 200, await r.text()

        async def stream() -> Any:
            yield b"streamed "
            yield b"body"

        async with session.post(f"{_url(gateway)}/_verify", data=stream()) as r:
            assert r.status == 200, await r.text()


# -- the official SDKs ------------------------------------------------------------------------


def test_openai_sdk_plain_and_streaming(gateway: tuple[str, VerifyingGateway]) -> None:
    client = openai.OpenAI(base_url=f"{_url(gateway)}/v1", api_key="unused", http_client=http_client(KEY, KEYID))
    reply = client.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": QUESTION}])
    assert QUESTION in (reply.choices[0].message.content or "")
    stream = client.chat.completions.create(
        model="demo-1", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == reply.choices[0].message.content
    assert client.embeddings.create(model="demo-1", input="hello").data[0].embedding


def test_anthropic_sdk_plain_and_streaming(gateway: tuple[str, VerifyingGateway]) -> None:
    client = anthropic.Anthropic(
        base_url=_url(gateway), api_key="unused",
        http_client=httpx2.Client(transport=SigningTransport(KEY, KEYID)),
    )  # fmt: skip
    reply = client.messages.create(model="demo-1", max_tokens=200, messages=[{"role": "user", "content": QUESTION}])
    assert QUESTION in reply.content[0].text  # type: ignore[union-attr]
    with client.messages.stream(model="demo-1", max_tokens=200, messages=[{"role": "user", "content": QUESTION}]) as s:
        streamed = "".join(s.text_stream)
    assert streamed == reply.content[0].text  # type: ignore[union-attr]


async def test_async_sdks(gateway: tuple[str, VerifyingGateway]) -> None:
    oa = openai.AsyncOpenAI(base_url=f"{_url(gateway)}/v1", api_key="unused", http_client=async_http_client(KEY, KEYID))
    an = anthropic.AsyncAnthropic(base_url=_url(gateway), api_key="unused", http_client=async_http_client(KEY, KEYID))
    stream = await oa.chat.completions.create(
        model="demo-1", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert QUESTION in text
    reply = await an.messages.create(model="demo-1", max_tokens=100, messages=[{"role": "user", "content": QUESTION}])
    assert reply.content
    await oa.close()
    await an.close()


def test_sdks_without_the_helper_are_refused(gateway: tuple[str, VerifyingGateway]) -> None:
    client = openai.OpenAI(base_url=f"{_url(gateway)}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "signature_required"  # type: ignore[index]
    claude = anthropic.Anthropic(base_url=_url(gateway), api_key="unused", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info2:
        claude.messages.create(model="demo-1", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info2.value.body["error"]["type"] == "signature_required"  # type: ignore[index]


def test_wrong_key_unknown_client_and_forbidden_route(gateway: tuple[str, VerifyingGateway]) -> None:
    impostor = SigningTransport(Ed25519PrivateKey.generate(), KEYID)
    with httpx2.Client(transport=impostor) as client:
        r = client.post(f"{_url(gateway)}/_verify", json={})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "signature_invalid")
    with httpx2.Client(transport=SigningTransport(Ed25519PrivateKey.generate(), "nobody.k")) as client:
        assert client.post(f"{_url(gateway)}/_verify", json={}).json()["error"]["code"] == "unknown_key"
    narrow = openai.OpenAI(
        base_url=f"{_url(gateway)}/v1", api_key="unused", max_retries=0, http_client=http_client(NARROW, "narrow.k")
    )
    with pytest.raises(openai.PermissionDeniedError) as info:
        narrow.chat.completions.create(model="demo-1", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "route_forbidden"  # type: ignore[index]


def test_a_replayed_request_is_refused(gateway: tuple[str, VerifyingGateway]) -> None:
    signer = RequestSigner(KEY, KEYID)
    url = f"{_url(gateway)}/_verify"
    body = b'{"replay": "me"}'
    headers = {
        "content-type": "application/json",
        **signer.headers("POST", url, [("content-type", "application/json")], body),
    }
    with httpx2.Client() as client:
        assert client.post(url, content=body, headers=headers).status_code == 200
        again = client.post(url, content=body, headers=headers)
    assert (again.status_code, again.json()["error"]["code"]) == (401, "signature_replayed")


def test_an_independent_signer_over_the_wire(gateway: tuple[str, VerifyingGateway]) -> None:
    resolver = MappingKeyResolver(public_keys={}, private_keys={KEYID: KEY})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    body = b'{"from": "another implementation"}'
    request = httpx2.Request("POST", f"{_url(gateway)}/_verify?lib=http-message-signatures", content=body,
                             headers={"content-type": "application/json"})  # fmt: skip
    signer.sign(
        adapt_message(request), key_id=KEYID, created=datetime.datetime.now(datetime.UTC),
        nonce="independent-" + str(time.time_ns()), covered_component_ids=("@method", "@target-uri", "content-type"),
        body=body,
    )  # fmt: skip
    with httpx2.Client() as client:
        r = client.send(request)
    assert r.status_code == 200, r.text
    assert r.json()["covered"] == ['"@method"', '"@target-uri"', '"content-type"', '"content-digest"']
