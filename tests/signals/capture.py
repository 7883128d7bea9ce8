"""A loopback capture server and the real clients whose requests it records.

The server records every request to ``/c/<label>/...`` exactly as an ASGI server hands
it over (header names and order as received, the body, the arrival time) and answers
like an LLM API so the official SDKs are satisfied. It also serves the browser SDK at
``/.tokenward/sdk.js``, a page with a prompt field at ``/``, and real tokenward
challenges at ``/.tokenward/challenge`` (signed with a test key ring), verifying every
``Tokenward-Proof`` it receives so tests get the proof's claims with the arrival time.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from tokenward.decision import Flavour
from tokenward.facts import RequestFacts, parse_call
from tokenward.proof import Key, KeyRing, ProofClaims, issue_challenge, verify_proof

ROOT = Path(__file__).resolve().parents[2]
SDK_PATH = ROOT / "src" / "tokenward" / "sdk" / "tokenward.js"
DIFFICULTY = 16
KEYS = KeyRing([Key.from_secret(secrets.token_bytes(32))])

PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>chat</title>
<script src="/.tokenward/sdk.js"></script></head>
<body><textarea id="prompt" rows="4" cols="60"></textarea></body></html>"""

_CHAT_REPLY = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)
_MESSAGES_REPLY = orjson.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
)


@dataclass(frozen=True)
class Capture:
    label: str
    method: str
    path: str
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes
    arrived: float  # time.time() when the whole body was read
    peer: str
    proof: ProofClaims | None
    proof_problem: str | None

    def facts(self, *, client_ip: str | None = None) -> RequestFacts:
        """The request as the gateway's http layer would hand it to the guard."""
        headers: dict[str, str] = {}
        for k, v in self.raw_headers:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        parsed = parse_call(Flavour.OPENAI, self.body) if self.body else None
        return RequestFacts(
            request_id=f"cap-{self.label}",
            received_at=self.arrived,
            method=self.method,
            path=self.path,
            client_ip=client_ip or self.peer,
            headers=headers,
            raw_headers=tuple(self.raw_headers),
            body=self.body,
            route=None,
            call=None if parsed is None or isinstance(parsed, str) else parsed,
        )

    @property
    def names(self) -> list[str]:
        return [k.decode().lower() for k, _ in self.raw_headers]


class CaptureApp:
    def __init__(self) -> None:
        self.captures: list[Capture] = []
        self.lock = threading.Lock()

    def by_label(self, label: str) -> list[Capture]:
        with self.lock:
            return [c for c in self.captures if c.label == label]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        arrived = time.time()
        path: str = scope["path"]
        if path == "/":
            return await _respond(send, 200, PAGE, b"text/html; charset=utf-8")
        if path == "/.tokenward/sdk.js":
            return await _respond(send, 200, SDK_PATH.read_bytes(), b"text/javascript; charset=utf-8")
        if path == "/.tokenward/challenge":
            route = orjson.loads(body).get("route", "/")
            challenge = issue_challenge(KEYS, route, DIFFICULTY, ttl=120, now=time.time())
            return await _respond(send, 200, orjson.dumps(challenge.to_wire()))
        if not path.startswith("/c/"):
            return await _respond(send, 404, b'{"error": "not found"}')
        headers = dict((k.lower(), v) for k, v in scope["headers"])
        proof: ProofClaims | None = None
        problem: str | None = None
        if b"tokenward-proof" in headers:
            result = verify_proof(
                KEYS,
                headers[b"tokenward-proof"].decode(),
                route=path,
                body=body,
                signals_header=headers.get(b"tokenward-signals"),
                now=arrived,
            )
            if isinstance(result, ProofClaims):
                proof = result
            else:
                problem = result.code
        client = scope.get("client")
        capture = Capture(
            label=path.split("/")[2],
            method=scope["method"],
            path=path,
            raw_headers=[(bytes(k), bytes(v)) for k, v in scope["headers"]],
            body=body,
            arrived=arrived,
            peer=client[0] if client else "unknown",
            proof=proof,
            proof_problem=problem,
        )
        with self.lock:
            self.captures.append(capture)
        await _respond(send, 200, _MESSAGES_REPLY if path.endswith("/messages") else _CHAT_REPLY)


async def _respond(send: Any, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CaptureServer:
    """uvicorn on 127.0.0.1:<free port> in a daemon thread; ``url`` uses ``localhost``
    (a secure context for Chromium, so client hints and Fetch Metadata are sent)."""

    def __init__(self) -> None:
        self.app = CaptureApp()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="error", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("capture server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


# --------------------------------------------------------------------------------------
# Real non-browser clients
# --------------------------------------------------------------------------------------
CHAT_BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


def capture_python_clients(base: str) -> Iterator[str]:
    """Send one request with each real client; yields the labels it captured."""
    import aiohttp
    import anthropic
    import httpx
    import openai
    import requests

    openai.OpenAI(base_url=f"{base}/c/openai/v1", api_key="sk-test", max_retries=0).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello there"}]
    )
    yield "openai"

    async def async_openai() -> None:
        client = openai.AsyncOpenAI(base_url=f"{base}/c/openai-async/v1", api_key="sk-test", max_retries=0)
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello there"}])
        await client.close()

    asyncio.run(async_openai())
    yield "openai-async"

    anthropic.Anthropic(base_url=f"{base}/c/anthropic", api_key="sk-test", max_retries=0).messages.create(
        model="m", max_tokens=16, messages=[{"role": "user", "content": "hello there"}]
    )
    yield "anthropic"

    httpx.post(f"{base}/c/httpx/v1/chat/completions", json=CHAT_BODY)
    yield "httpx"

    requests.post(f"{base}/c/requests/v1/chat/completions", json=CHAT_BODY, timeout=10)
    yield "requests"

    async def aio() -> None:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/c/aiohttp/v1/chat/completions", json=CHAT_BODY) as r:
                await r.read()

    asyncio.run(aio())
    yield "aiohttp"

    curl = shutil.which("curl")
    if curl:
        subprocess.run(
            [curl, "-s", "-o", "/dev/null", "-H", "content-type: application/json", "-d", orjson.dumps(CHAT_BODY),
             f"{base}/c/curl/v1/chat/completions"],
            check=True,
            timeout=10,
        )  # fmt: skip
        yield "curl"

    node = shutil.which("node")
    if node:
        url = orjson.dumps(f"{base}/c/node/v1/chat/completions").decode()
        body = orjson.dumps(orjson.dumps(CHAT_BODY).decode()).decode()
        script = (
            f"fetch({url}, {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: {body}}})"
            ".then(r => r.text()).then(() => process.exit(0), e => { console.error(e); process.exit(1); })"
        )
        subprocess.run([node, "-e", script], check=True, timeout=20)
        yield "node"

    try:
        from curl_cffi import requests as cffi_requests
    except ImportError:  # pragma: no cover - curl_cffi is a test dependency
        return
    # Its Chrome impersonation: browser TLS and browser-looking headers, no SDK signals.
    cffi_requests.post(f"{base}/c/curl-cffi/v1/chat/completions", json=CHAT_BODY, impersonate="chrome")
    yield "curl-cffi"
