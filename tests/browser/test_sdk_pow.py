"""The browser SDK (src/tokenward/sdk/tokenward.js) in real Chromium.

Every proof the page computes is checked here with hashlib exactly as DESIGN.md §3.2
states it, independently of the gateway's own verifier:

    body_sha    = SHA-256(body)
    signals_sha = SHA-256(Tokenward-Signals header value, or b"")
    H = SHA-256(utf8(challenge) || 0x00 || body_sha || signals_sha || nonce as u64 BE)
    leading zero bits of H >= difficulty

``tokenward.fetch`` is exercised against a small fake gateway defined below, which issues
random challenges, verifies proofs over the bytes it actually received, enforces single
use, and can answer 401 with a fresh challenge to drive the retry-once path.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .conftest import sdk_routes
from .device_spec import b64d, check_device_header, p256_key, spec_device_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


# --------------------------------------------------------------------------------------
# §3.2, written out independently of the gateway code
# --------------------------------------------------------------------------------------
def proof_hash(challenge: str, body: bytes, signals: bytes | None, nonce: int) -> bytes:
    body_sha = hashlib.sha256(body).digest()
    signals_sha = hashlib.sha256(signals if signals is not None else b"").digest()
    return hashlib.sha256(
        challenge.encode("utf-8") + b"\x00" + body_sha + signals_sha + nonce.to_bytes(8, "big")
    ).digest()


def leading_zero_bits(digest: bytes) -> int:
    return len(digest) * 8 - int.from_bytes(digest, "big").bit_length()


def proof_ok(challenge: str, body: bytes, signals: bytes | None, nonce: int, bits: int) -> bool:
    return leading_zero_bits(proof_hash(challenge, body, signals, nonce)) >= bits


def smallest_nonce(challenge: str, body: bytes, signals: bytes | None, bits: int) -> int:
    body_sha = hashlib.sha256(body).digest()
    signals_sha = hashlib.sha256(signals if signals is not None else b"").digest()
    prefix = hashlib.sha256(challenge.encode("utf-8") + b"\x00" + body_sha + signals_sha)
    nonce = 0
    while True:
        h = prefix.copy()
        h.update(nonce.to_bytes(8, "big"))
        if leading_zero_bits(h.digest()) >= bits:
            return nonce
        nonce += 1


def b64url_chars(n: int) -> str:
    """A random base64url string of exactly ``n`` characters (no dots, like a challenge)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).decode().rstrip("=")[:n]


# --------------------------------------------------------------------------------------
# tokenward.solve
# --------------------------------------------------------------------------------------
SOLVE_JS = """
async ({cases, workers}) => {
  tokenward.configure({ workers });
  const out = [];
  for (const c of cases) {
    const body = c.body_bytes ? Uint8Array.from(c.body_bytes) : c.body_text;
    const r = await tokenward.solve(c.challenge, body, c.difficulty, c.signals);
    out.push(r);
  }
  return out;
}
"""


def solve_cases() -> list[dict[str, Any]]:
    """Challenge lengths chosen so the nonce lands at every byte offset mod 4, in one- and
    two-block tails, and straddling the 64-byte block boundary (prefix = len + 65 bytes)."""
    lengths = [1, 2, 3, 4, 43, 46, 47, 50, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64]
    lengths += [110, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 200]
    bodies: list[dict[str, Any]] = [
        {"body_text": ""},
        {"body_text": '{"messages":[{"role":"user","content":"hi"}]}'},
        {"body_text": "héllo ✓ 日本語 🚀 — Ünïcödé"},
        {"body_text": "Grüße " * 700 + "🚀"},  # several KB, 4-byte UTF-8 at the end
        {"body_bytes": list(range(256))},
    ]
    cases = []
    for i, length in enumerate(lengths):
        case = {
            "challenge": b64url_chars(length),
            "difficulty": 8 + i % 6,
            "signals": None if i % 3 else b64url_chars(40 + i),
            **bodies[i % len(bodies)],
        }
        cases.append(case)
    cases.append({"challenge": b64url_chars(110), "difficulty": 0, "signals": None, "body_text": "x"})
    cases.append({"challenge": b64url_chars(110), "difficulty": 1, "signals": None, "body_text": ""})
    return cases


def case_body(case: dict[str, Any]) -> bytes:
    if "body_bytes" in case:
        return bytes(case["body_bytes"])
    return case["body_text"].encode("utf-8")


def case_signals(case: dict[str, Any]) -> bytes | None:
    return case["signals"].encode("ascii") if case["signals"] is not None else None


@pytest.mark.parametrize("workers", [1, 2, 0], ids=["1-worker", "2-workers", "main-thread"])
async def test_solve_finds_the_smallest_valid_nonce(page_factory, static_site, workers):
    page = await page_factory(static_site + "/")
    cases = solve_cases()
    results = await page.evaluate(SOLVE_JS, {"cases": cases, "workers": workers})
    assert len(results) == len(cases)
    for case, result in zip(cases, results, strict=True):
        body, signals = case_body(case), case_signals(case)
        nonce = result["nonce"]
        label = f"challenge of {len(case['challenge'])} chars, difficulty {case['difficulty']}"
        assert isinstance(nonce, int) and nonce >= 0, label
        assert proof_ok(case["challenge"], body, signals, nonce, case["difficulty"]), label
        # Exhaustive search from 0: the smallest valid nonce, whatever the worker count.
        assert nonce == smallest_nonce(case["challenge"], body, signals, case["difficulty"]), label
        if case["difficulty"] > 0:
            assert result["hashes"] >= nonce + 1, label
            assert result["workers"] == workers, label
        assert result["solveMs"] >= 0
    assert not [e for e in page.tw_errors if e.startswith("pageerror")]


async def test_solve_falls_back_to_the_main_thread_when_csp_forbids_workers(page_factory, serve):
    async def csp_page(_: Request) -> Response:
        html = "<!doctype html><script src='/.tokenward/sdk.js'></script>"
        return Response(
            html,
            media_type="text/html",
            headers={"Content-Security-Policy": "worker-src 'none'"},
        )

    url = serve(Starlette(routes=[*sdk_routes(), Route("/csp", csp_page)]))
    page = await page_factory(url + "/csp")
    case = {"challenge": b64url_chars(110), "difficulty": 12, "signals": None, "body_text": "é"}
    [result] = await page.evaluate(SOLVE_JS, {"cases": [case], "workers": 2})
    assert result["workers"] == 0  # no worker could start: solved on the page itself
    assert result["nonce"] == smallest_nonce(case["challenge"], "é".encode(), None, 12)


async def test_concurrent_solves_and_reconfiguring_workers(page_factory, static_site):
    page = await page_factory(static_site + "/")
    challenges = [b64url_chars(110) for _ in range(6)]
    nonces = await page.evaluate(
        """async (challenges) => {
          const runs = challenges.slice(0, 3).map((c) => tokenward.solve(c, "body", 12));
          tokenward.configure({ workers: 1 });  // while those are queued or running
          runs.push(...challenges.slice(3).map((c) => tokenward.solve(c, "body", 12)));
          return (await Promise.all(runs)).map((r) => r.nonce);
        }""",
        challenges,
    )
    assert nonces == [smallest_nonce(c, b"body", None, 12) for c in challenges]


async def test_solve_without_webcrypto(page_factory, static_site):
    """Plain-http pages have no crypto.subtle: the SDK hashes body and signals in JS."""
    page = await page_factory(static_site + "/")
    await page.evaluate("Object.defineProperty(Crypto.prototype, 'subtle', {get: () => undefined})")
    assert await page.evaluate("typeof crypto.subtle") == "undefined"
    cases = [
        {"challenge": b64url_chars(110), "difficulty": 10, "signals": "c2ln", **body}
        for body in ({"body_text": ""}, {"body_text": "héllo ✓ " * 40}, {"body_bytes": [0] * 64})
    ]
    results = await page.evaluate(SOLVE_JS, {"cases": cases, "workers": 1})
    for case, result in zip(cases, results, strict=True):
        body, signals = case_body(case), case_signals(case)
        assert result["nonce"] == smallest_nonce(case["challenge"], body, signals, 10)


RATE_JS = """
async ({challenges, difficulty, workers}) => {
  tokenward.configure({ workers });
  await tokenward.solve("warm-up", "", 4);  // starts the workers outside the measurement
  let hashes = 0, ms = 0;
  for (const ch of challenges) {
    const r = await tokenward.solve(ch, '{"messages":[]}', difficulty);
    hashes += r.hashes; ms += r.solveMs;
  }
  return { hashes, ms, rate: hashes / (ms / 1000) };
}
"""


async def test_hash_rate(page_factory, static_site):
    """Measured and printed, never asserted: machines differ."""
    page = await page_factory(static_site + "/")
    lines = []
    for workers in (1, 2):
        for difficulty, count in ((16, 24), (18, 8)):
            challenges = [b64url_chars(110) for _ in range(count)]
            r = await page.evaluate(RATE_JS, {"challenges": challenges, "difficulty": difficulty, "workers": workers})
            lines.append(
                f"  workers={workers} difficulty={difficulty}: {r['rate'] / 1e3:,.0f}k hashes/s"
                f" ({r['hashes']:,} hashes in {r['ms']:.0f} ms, {count} proofs,"
                f" {r['ms'] / count:.0f} ms/proof)"
            )
    print("\nChromium proof-of-work rate (110-char challenge):\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------
# tokenward.fetch against a fake gateway
# --------------------------------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    challenge: str | None = None
    nonce: int | None = None
    device: tuple[str, str | None] | None = None  # check_device_header's verdict, if sent


PROTECTED = ("/v1/chat/completions", "/v1/messages")
DEVICE_ROUTE = "/.tokenward/device"


@dataclass
class FakeGateway:
    """Just enough of a gateway to check the SDK's side of wire protocol v1."""

    difficulty: int = 8
    retry_difficulty: int = 10
    ttl: float = 60.0
    challenge_status: int = 200  # set to 503 to simulate a failing challenge endpoint
    issued: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    issue_order: list[str] = field(default_factory=list)
    challenge_requests: list[str] = field(default_factory=list)  # the routes asked for
    used: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    bounced: set[bytes] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Device registration (§4.2): kept apart from the request challenges above.
    device_enabled: bool = True
    device_difficulty: int = 10
    device_delay: float = 0.0  # seconds the registration endpoint takes to answer
    device_keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    registrations: list[str] = field(default_factory=list)  # device ids, one per successful POST
    registration_proofs: list[tuple[str, bytes, int, int]] = field(default_factory=list)  # challenge, body, nonce, bits
    device_posts: int = 0

    def issue(self, route: str, difficulty: int | None = None) -> dict[str, Any]:
        challenge = b64url_chars(110)
        bits = self.difficulty if difficulty is None else difficulty
        expires_at = time.time() + self.ttl
        with self.lock:
            self.issued[challenge] = (route, bits, expires_at)
            if route != DEVICE_ROUTE:
                self.issue_order.append(challenge)
        return {"v": 1, "challenge": challenge, "difficulty": bits, "expires_at": int(expires_at)}

    async def challenge_endpoint(self, request: Request) -> Response:
        payload = await request.json()
        if payload["route"] == DEVICE_ROUTE and self.device_enabled:
            return JSONResponse(self.issue(DEVICE_ROUTE, self.device_difficulty))
        with self.lock:
            self.challenge_requests.append(payload["route"])
        if self.challenge_status != 200:
            return JSONResponse({"error": "down"}, status_code=self.challenge_status)
        if payload["route"] not in PROTECTED:  # §3.1: not a protected route
            return JSONResponse({"error": {"code": "bad_request"}}, status_code=400)
        return JSONResponse(self.issue(payload["route"]))

    async def device_endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.device_posts += 1
        if self.device_delay:
            await asyncio.sleep(self.device_delay)
        if not self.device_enabled:
            return JSONResponse({"error": {"code": "not_found"}}, status_code=404)
        assert json.loads(body).keys() == {"public_key"}
        assert "tokenward-signals" not in request.headers  # registration proofs carry none
        parts = request.headers["tokenward-proof"].split(".")
        challenge, nonce = parts[1], int(parts[2])
        with self.lock:
            route, bits, _ = self.issued[challenge]
            assert route == DEVICE_ROUTE and challenge not in self.used
            self.used.add(challenge)
        assert proof_ok(challenge, body, None, nonce, bits)
        with self.lock:
            self.registration_proofs.append((challenge, body, nonce, bits))
        spki = b64d(json.loads(body)["public_key"])
        device = spec_device_id(spki)
        with self.lock:
            self.device_keys[device] = p256_key(spki)
            self.registrations.append(device)
        return JSONResponse({"device": device})

    def refuse(self, route: str, code: str, challenge: dict[str, Any] | None = None) -> JSONResponse:
        if route == "/v1/messages":  # Anthropic flavour
            error: dict[str, Any] = {"type": code, "message": f"refused: {code}"}
            body: dict[str, Any] = {"type": "error", "error": error}
        else:
            error = {"type": "tokenward", "code": code, "message": f"refused: {code}"}
            body = {"error": error}
        if challenge is not None:
            error["challenge"] = challenge
        return JSONResponse(body, status_code=401)

    def check(self, route: str, rec: Received) -> Response:
        header = rec.headers.get("tokenward-proof")
        device_header = rec.headers.get("tokenward-device")
        if device_header is not None:
            with self.lock:
                keys = dict(self.device_keys)
            rec.device = check_device_header(device_header, header or "", rec.body, keys)
        if header is None:
            return self.refuse(route, "proof_required", self.issue(route))
        parts = header.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not parts[2].isdigit():
            return self.refuse(route, "proof_invalid")
        challenge, nonce = parts[1], int(parts[2])
        rec.challenge, rec.nonce = challenge, nonce
        with self.lock:
            meta = self.issued.get(challenge)
            if meta is None:
                return self.refuse(route, "proof_invalid")
            if challenge in self.used:
                return self.refuse(route, "proof_replayed")
            self.used.add(challenge)
        issued_route, bits, expires_at = meta
        if time.time() >= expires_at:
            return self.refuse(route, "proof_expired", self.issue(route))
        if issued_route != route:
            return self.refuse(route, "route_mismatch", self.issue(route))
        signals = rec.headers.get("tokenward-signals")
        signals_bytes = signals.encode("latin-1") if signals is not None else None
        if not proof_ok(challenge, rec.body, signals_bytes, nonce, bits):
            return self.refuse(route, "body_mismatch", self.issue(route))
        # Markers in the body drive the refusal paths the SDK must handle.
        if b"bounce-always" in rec.body:
            return self.refuse(route, "challenge", self.issue(route, self.retry_difficulty))
        if b"bounce-once" in rec.body and rec.body not in self.bounced:
            self.bounced.add(rec.body)
            return self.refuse(route, "challenge", self.issue(route, self.retry_difficulty))
        if b"deny" in rec.body:
            return self.refuse(route, "proof_invalid")
        return JSONResponse({"ok": True, "route": route, "difficulty": bits, "bytes": len(rec.body)})

    async def protected(self, request: Request) -> Response:
        rec = Received(request.url.path, dict(request.headers), await request.body())
        with self.lock:
            self.received.append(rec)
        response = self.check(request.url.path, rec)
        rec.status = response.status_code
        return response

    async def echo(self, request: Request) -> Response:
        rec = Received(request.url.path, dict(request.headers), await request.body(), 200)
        with self.lock:
            self.received.append(rec)
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                *sdk_routes(),
                Route("/.tokenward/challenge", self.challenge_endpoint, methods=["POST"]),
                Route("/.tokenward/device", self.device_endpoint, methods=["POST"]),
                Route("/v1/chat/completions", self.protected, methods=["POST"]),
                Route("/v1/messages", self.protected, methods=["POST"]),
                Route("/echo", self.echo, methods=["GET", "POST"]),
            ]
        )


@pytest.fixture
def gateway(serve: Callable[..., str]) -> tuple[FakeGateway, str]:
    gw = FakeGateway()
    return gw, serve(gw.app())


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (up to 5 s) until a condition on the fake gateway's state holds."""
    async with asyncio.timeout(5):
        while True:  # the state changes in the server thread: poll it
            if predicate():
                return
            await asyncio.sleep(0.02)


# Calls tokenward.fetch in the page and reports what the caller sees.
FETCH_JS = """
async ({path, text, kind}) => {
  let body = text;
  if (kind === "bytes") body = Uint8Array.from({length: 256}, (_, i) => i);
  if (kind === "arraybuffer") body = new TextEncoder().encode(text).buffer;
  if (kind === "blob") body = new Blob([text, new Uint8Array([0, 255])], {type: "application/x-test"});
  if (kind === "params") body = new URLSearchParams({q: text});
  if (kind === "form") { body = new FormData(); body.append("q", text); }
  const headers = kind === "json" ? {"Content-Type": "application/json"} : undefined;
  const r = await tokenward.fetch(path, {method: "POST", headers, body});
  return {status: r.status, json: await r.json(), lastProof: tokenward.lastProof};
}
"""


async def test_fetch_proves_the_exact_bytes_it_sends(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    text = json.dumps({"messages": [{"role": "user", "content": "héllo ✓ 日本語 🚀"}]})
    r = await page.evaluate(FETCH_JS, {"path": "/v1/chat/completions", "text": text, "kind": "json"})
    assert r["status"] == 200, r
    [rec] = gw.received
    assert rec.body == text.encode("utf-8")
    assert rec.headers["content-type"] == "application/json"
    assert decode_signals(rec.headers["tokenward-signals"])["v"] == 1  # the built-in report, by default
    assert rec.headers["tokenward-proof"] == f"v1.{rec.challenge}.{rec.nonce}"
    proof = r["lastProof"]
    assert proof["route"] == "/v1/chat/completions"
    assert proof["difficulty"] == gw.difficulty
    assert proof["hashes"] >= rec.nonce + 1
    assert proof["solveMs"] >= 0
    # The device key was registered first (one proved POST) and signed this request.
    [device] = gw.registrations
    assert rec.device == ("ok", device)
    assert proof["device"] == device and proof["signMs"] >= 0


@pytest.mark.parametrize(
    ("kind", "expected_body", "expected_type"),
    [
        ("text", "plain ✓".encode(), "text/plain;charset=UTF-8"),
        ("bytes", bytes(range(256)), None),
        ("arraybuffer", "plain ✓".encode(), None),
        ("blob", "plain ✓".encode() + b"\x00\xff", "application/x-test"),
        ("params", b"q=plain+%E2%9C%93", "application/x-www-form-urlencoded;charset=UTF-8"),
        ("form", None, "multipart/form-data; boundary="),
    ],
)
async def test_fetch_body_kinds(page_factory, gateway, kind, expected_body, expected_type):
    gw, url = gateway
    page = await page_factory(url + "/")
    r = await page.evaluate(FETCH_JS, {"path": "/v1/chat/completions", "text": "plain ✓", "kind": kind})
    assert r["status"] == 200, r  # the gateway verified the proof over what it received
    [rec] = gw.received
    if expected_body is not None:
        assert rec.body == expected_body
    content_type = rec.headers.get("content-type")
    if expected_type is None:
        assert content_type is None
    else:
        assert content_type is not None and content_type.startswith(expected_type)
    if kind == "form":
        boundary = content_type.split("boundary=", 1)[1]
        assert boundary.encode() in rec.body and "plain ✓".encode() in rec.body


async def test_fetch_refuses_a_plain_object_body(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    message = await page.evaluate(
        """async () => {
          try { await tokenward.fetch("/v1/chat/completions", {method: "POST", body: {a: 1}}); }
          catch (e) { return e.constructor.name + ": " + e.message; }
          return "no error";
        }"""
    )
    assert message.startswith("TypeError") and "JSON.stringify" in message
    assert gw.received == []


async def test_fetch_accepts_a_request_object(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    status = await page.evaluate(
        """async () => {
          const req = new Request("/v1/chat/completions",
            {method: "POST", body: "from a Request é", headers: {"X-Extra": "1"}});
          return (await tokenward.fetch(req)).status;
        }"""
    )
    assert status == 200
    [rec] = gw.received
    assert rec.body == "from a Request é".encode()
    assert rec.headers["x-extra"] == "1"


async def test_fetch_hashes_the_signals_header_into_the_proof(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    signals = {"tz": "Europe/Berlin", "note": "é✓🚀", "n": 3, "touch": False}
    r = await page.evaluate(
        """async (signals) => {
          tokenward.configure({ signals: () => signals });
          const r = await tokenward.fetch("/v1/chat/completions",
            {method: "POST", body: '{"q":"with signals"}'});
          return {status: r.status};
        }""",
        signals,
    )
    assert r["status"] == 200  # the fake gateway hashed the header value into the check
    [rec] = gw.received
    value = rec.headers["tokenward-signals"]
    assert "=" not in value and "+" not in value and "/" not in value
    assert decode_signals(value) == signals
    assert proof_ok(rec.challenge, rec.body, value.encode(), rec.nonce, gw.difficulty)


def decode_signals(value: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


async def test_built_in_signals_report_the_environment(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    statuses = await page.evaluate(
        """async () => {  // signals: true is the default
          const out = [];
          for (const body of ["first", "second"]) {
            out.push((await tokenward.fetch("/v1/chat/completions", {method: "POST", body})).status);
          }
          return out;
        }"""
    )
    assert statuses == [200, 200]  # both proofs hashed the signals header the gateway got
    first, second = (decode_signals(rec.headers["tokenward-signals"]) for rec in gw.received)
    assert len(gw.received[0].headers["tokenward-signals"]) <= (4096 * 4 + 2) // 3  # §4.1: 4 KB
    assert first["v"] == 1 and first["wd"] is True  # Playwright sets navigator.webdriver
    assert first["ua"] == gw.received[0].headers["user-agent"]
    assert "ua-headless" in first["hl"]
    assert isinstance(first["tz"], str) and isinstance(first["tzo"], int)
    assert len(first["scr"]) == 6 and len(first["vp"]) == 4
    assert first["hc"] >= 1 and isinstance(first["langs"], list)
    assert "prev" not in first  # no proof solved yet on this page
    # Nothing was typed or pasted on this page: the SDK observes on its own and says so.
    assert first["input"] == {"keys": 0, "pastes": 0, "pasted_chars": 0, "focus_ms": 0}
    assert second["prev"]["difficulty"] == gw.difficulty
    assert second["prev"]["hashes"] >= gw.received[0].nonce + 1


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_fetch_retries_once_with_the_challenge_from_a_401(page_factory, gateway, path):
    gw, url = gateway
    page = await page_factory(url + "/")
    text = '{"marker":"bounce-once","content":"ünïcode"}'
    r = await page.evaluate(FETCH_JS, {"path": path, "text": text, "kind": "text"})
    assert r["status"] == 200, r
    first, second = gw.received
    assert (first.status, second.status) == (401, 200)
    assert first.body == second.body == text.encode()
    assert first.challenge != second.challenge
    # Each attempt is signed over its own proof value (check_device_header verified both).
    [device] = gw.registrations
    assert first.device == second.device == ("ok", device)
    assert first.headers["tokenward-device"] != second.headers["tokenward-device"]
    assert first.headers["tokenward-signals"] == second.headers["tokenward-signals"]
    assert gw.issued[second.challenge][1] == gw.retry_difficulty  # the challenge from the 401
    assert r["lastProof"]["difficulty"] == gw.retry_difficulty


async def test_fetch_retries_only_once(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    r = await page.evaluate(FETCH_JS, {"path": "/v1/chat/completions", "text": "bounce-always", "kind": "text"})
    assert r["status"] == 401
    assert r["json"]["error"]["code"] == "challenge"  # the caller can still read the body
    assert len(gw.received) == 2


async def test_fetch_returns_other_401s_untouched(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    r = await page.evaluate(FETCH_JS, {"path": "/v1/messages", "text": "deny", "kind": "text"})
    assert r["status"] == 401
    assert r["json"] == {
        "type": "error",
        "error": {"type": "proof_invalid", "message": "refused: proof_invalid"},
    }
    assert len(gw.received) == 1


async def test_fetch_without_a_challenge_endpoint_uses_the_401_challenge(page_factory, gateway):
    gw, url = gateway
    gw.challenge_status = 503
    page = await page_factory(url + "/")
    r = await page.evaluate(FETCH_JS, {"path": "/v1/chat/completions", "text": "no prefetch", "kind": "text"})
    assert r["status"] == 200
    first, second = gw.received
    assert "tokenward-proof" not in first.headers and first.status == 401
    assert second.status == 200


async def test_only_protected_requests_carry_a_proof(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    statuses = await page.evaluate(
        """async () => {
          const a = await tokenward.fetch("/echo?x=1");  // GET: never protected
          const b = await tokenward.fetch("/v1/messages", {method: "POST", body: "all POSTs"});
          tokenward.configure({ routes: ["/v1/chat/completions"] });
          const c = await tokenward.fetch("/echo", {method: "POST", body: "not listed"});
          const d = await tokenward.fetch("/v1/chat/completions", {method: "post", body: "listed"});
          return [a.status, b.status, c.status, d.status];
        }"""
    )
    assert statuses == [200, 200, 200, 200]
    a, b, c, d = gw.received
    assert "tokenward-proof" not in a.headers
    assert b.headers["tokenward-proof"].startswith("v1.")  # routes: null = every POST
    assert "tokenward-proof" not in c.headers
    assert d.headers["tokenward-proof"].startswith("v1.")
    assert "/echo" not in gw.challenge_requests  # unlisted: not even a challenge request


async def test_prefetched_challenges_are_used_once_each(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    await page.evaluate("tokenward.configure({ routes: ['/v1/chat/completions'] })")
    await eventually(lambda: len(gw.issue_order) == 1)  # fetched ahead, before any request
    send = """() => tokenward.fetch("/v1/chat/completions", {method: "POST", body: "x"})
                     .then((r) => r.status)"""
    assert await page.evaluate(send) == 200
    assert gw.received[0].challenge == gw.issue_order[0]
    await eventually(lambda: len(gw.issue_order) == 2)  # the next one, right after use
    assert await page.evaluate(send) == 200
    assert gw.received[1].challenge == gw.issue_order[1]
    # Concurrent requests never share a challenge (the gateway refuses a replay).
    statuses = await page.evaluate(
        """() => Promise.all(Array.from({length: 6}, (_, i) =>
             tokenward.fetch("/v1/chat/completions", {method: "POST", body: "c" + i})
               .then((r) => r.status)))"""
    )
    assert statuses == [200] * 6
    challenges = [rec.challenge for rec in gw.received]
    assert len(set(challenges)) == len(challenges) == 8


async def test_prefetched_challenge_close_to_expiry_is_discarded(page_factory, gateway):
    gw, url = gateway
    gw.ttl = 4.0  # within the SDK's 5 s margin: useless by the time it would be used
    page = await page_factory(url + "/")
    await page.evaluate("tokenward.configure({ routes: ['/v1/chat/completions'] })")
    await eventually(lambda: len(gw.issue_order) == 1)
    gw.ttl = 60.0
    status = await page.evaluate(
        """() => tokenward.fetch("/v1/chat/completions", {method: "POST", body: "late"})
                   .then((r) => r.status)"""
    )
    assert status == 200
    [rec] = gw.received
    assert rec.challenge != gw.issue_order[0]
    assert rec.challenge in gw.issue_order[1:]


async def test_routes_the_gateway_does_not_protect_are_remembered(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    statuses = await page.evaluate(
        """async () => {
          const out = [];
          for (const body of ["one", "two", "three"]) {
            out.push((await tokenward.fetch("/echo", {method: "POST", body})).status);
          }
          return out;
        }"""
    )
    assert statuses == [200, 200, 200]
    # One challenge request answered 400, then no more challenge requests for that route.
    assert gw.challenge_requests == ["/echo"]
    assert all("tokenward-proof" not in rec.headers for rec in gw.received)
    assert [rec.body for rec in gw.received] == [b"one", b"two", b"three"]


async def test_signals_can_be_turned_off(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    status = await page.evaluate(
        """async () => {
          tokenward.configure({ signals: false });
          return (await tokenward.fetch("/v1/chat/completions", {method: "POST", body: "quiet"})).status;
        }"""
    )
    assert status == 200
    [rec] = gw.received
    assert "tokenward-signals" not in rec.headers
    assert proof_ok(rec.challenge, rec.body, None, rec.nonce, gw.difficulty)


# --------------------------------------------------------------------------------------
# Device keys (docs/protocol.md §4.2) against the fake gateway
# --------------------------------------------------------------------------------------
async def test_concurrent_first_requests_register_one_device(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    r = await page.evaluate(
        """async () => {
          const statuses = await Promise.all(Array.from({length: 5}, (_, i) =>
            tokenward.fetch("/v1/chat/completions", {method: "POST", body: "n" + i}).then((r) => r.status)));
          return {statuses, device: await tokenward.device()};
        }"""
    )
    assert r["statuses"] == [200] * 5
    assert gw.registrations == [r["device"]["id"]]  # registered once, for all five
    assert [rec.device for rec in gw.received] == [("ok", r["device"]["id"])] * 5
    registration = r["device"]["registration"]
    assert registration["difficulty"] == gw.device_difficulty and registration["hashes"] >= 1


async def test_configure_registers_in_the_background(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    await page.evaluate("tokenward.configure({ routes: ['/v1/chat/completions'] })")
    await eventually(lambda: len(gw.registrations) == 1)  # before any request
    assert gw.received == []
    await page.evaluate("tokenward.fetch('/v1/chat/completions', {method: 'POST', body: 'x'})")
    assert gw.received[0].device == ("ok", gw.registrations[0])


async def test_device_disabled_on_the_gateway(page_factory, gateway):
    """A gateway that offers no registration (404): requests go without a device header,
    and the page does not ask again."""
    gw, url = gateway
    gw.device_enabled = False
    page = await page_factory(url + "/")
    r = await page.evaluate(
        """async () => {
          const out = [];
          for (const body of ["a", "b", "c"]) {
            out.push((await tokenward.fetch("/v1/chat/completions", {method: "POST", body})).status);
          }
          return {out, device: await tokenward.device(), last: tokenward.lastProof};
        }"""
    )
    assert r["out"] == [200, 200, 200]
    assert r["device"] is None and r["last"]["device"] is None
    assert all("tokenward-device" not in rec.headers for rec in gw.received)
    assert gw.device_posts == 0  # the challenge endpoint refused the device route already


async def test_slow_registration_does_not_hold_requests(page_factory, gateway):
    """A request waits at most deviceWaitMs (default 2 s) for a registration in flight,
    then goes without the header; once registered, requests are signed."""
    gw, url = gateway
    gw.device_delay = 4.0
    page = await page_factory(url + "/")
    r = await page.evaluate(
        """async () => {
          const t0 = performance.now();
          const a = await tokenward.fetch("/v1/chat/completions", {method: "POST", body: "early"});
          const waited = performance.now() - t0;
          const device = await tokenward.device();  // the registration finishes meanwhile
          const b = await tokenward.fetch("/v1/chat/completions", {method: "POST", body: "later"});
          return {statuses: [a.status, b.status], waited, device};
        }"""
    )
    assert r["statuses"] == [200, 200]
    assert 1900 <= r["waited"] < 3500, r["waited"]
    early, later = gw.received
    assert "tokenward-device" not in early.headers
    assert later.device == ("ok", r["device"]["id"])


async def test_no_device_header_without_a_proof(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    await page.evaluate(
        """async () => {
          await tokenward.fetch("/echo", {method: "POST", body: "unprotected"});  // 400 from the challenge endpoint
          await tokenward.fetch("/echo", {method: "POST", body: "again"});
        }"""
    )
    assert [rec.path for rec in gw.received] == ["/echo", "/echo"]
    for rec in gw.received:
        assert not {"tokenward-proof", "tokenward-device", "tokenward-signals"} & rec.headers.keys()


async def test_device_off(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    r = await page.evaluate(
        """async () => {
          tokenward.configure({ device: false });
          const s = (await tokenward.fetch("/v1/chat/completions", {method: "POST", body: "x"})).status;
          return {s, device: await tokenward.device()};
        }"""
    )
    assert r == {"s": 200, "device": None}
    assert gw.device_posts == 0 and "tokenward-device" not in gw.received[0].headers


async def test_forget_device_makes_a_new_key(page_factory, gateway):
    gw, url = gateway
    page = await page_factory(url + "/")
    ids = await page.evaluate(
        """async () => {
          const a = (await tokenward.device()).id;
          await tokenward.forgetDevice();
          const b = (await tokenward.device()).id;
          return [a, b];
        }"""
    )
    assert ids[0] != ids[1]
    assert gw.registrations == ids


async def test_requests_take_the_workers_from_a_registration(page_factory, gateway):
    """A registration solves in the background: requests arriving meanwhile take the
    workers instead of waiting behind it (here it would take hours: 40 bits)."""
    gw, url = gateway
    gw.device_difficulty = 40
    page = await page_factory(url + "/")
    r = await page.evaluate(
        """async () => {
          tokenward.configure({ workers: 2, device: true, deviceWaitMs: 0 });  // registration starts
          await new Promise((resolve) => setTimeout(resolve, 300));  // ... and is solving now
          const out = [];
          for (const body of ["one", "two", "three"]) {
            const t0 = performance.now();
            const status = (await tokenward.fetch("/v1/chat/completions", {method: "POST", body})).status;
            out.push({status, ms: performance.now() - t0, proof: tokenward.lastProof});
          }
          return out;
        }"""
    )
    assert [x["status"] for x in r] == [200, 200, 200]
    for x in r:
        assert x["proof"]["device"] is None  # not registered, and deviceWaitMs: 0
        assert x["proof"]["solveMs"] < 1000, x  # 8 bits: ~256 hashes, not 2^40
    assert gw.device_posts == 0
    assert all("tokenward-device" not in rec.headers for rec in gw.received)


async def test_a_preempted_registration_still_finds_the_smallest_nonce(page_factory, gateway):
    gw, url = gateway
    gw.device_difficulty = 20  # ~1M hashes: requests keep interrupting it below
    page = await page_factory(url + "/")
    r = await page.evaluate(
        """async () => {
          tokenward.configure({ workers: 2, device: true, deviceWaitMs: 0 });
          let done = false;
          const device = tokenward.device().then((d) => { done = true; return d; });
          let during = 0;
          while (!done) {
            await tokenward.fetch("/v1/chat/completions", {method: "POST", body: "during " + during});
            during++;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          return {device: await device, during};
        }"""
    )
    reg = r["device"]["registration"]
    print(f"\nregistration: {reg['ms']:.0f} ms, {reg['hashes']:,} hashes, {r['during']} requests meanwhile")
    [(challenge, body, nonce, bits)] = gw.registration_proofs
    assert nonce == smallest_nonce(challenge, body, None, bits)
    assert reg["hashes"] >= nonce + 1
    assert all(rec.status == 200 for rec in gw.received)
