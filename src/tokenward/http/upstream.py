"""Forwarding to the upstream LLM with aiohttp.

Why aiohttp and not httpx: on this kind of machine an aiohttp client pass-through
served 1,889–2,165 req/s against httpx's 444 at the same concurrency, with a far lower
p99 (docs/operations.md); httpx's pool does per-connection work on every request.

Responses stream through as they arrive (``iter_any``: whatever bytes the socket has),
so SSE chunks are never held back. A watcher waits for the client's ``http.disconnect``
and closes the upstream response, which closes its connection: the upstream sees the
client leave and can stop generating. The watcher is a task (it must sit in
``receive()``), which costs about 30 µs of CPU per request (bench/ablation.py,
``nowatch``); it is started only once a call has lasted ``WATCH_AFTER`` seconds, so
quick answers never pay for it and a client that leaves a long generation is noticed
within that delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ..decision import Decision
from ..facts import RequestFacts
from ..guard import RequestOutcome
from ..money.call import CallPlan
from ..money.usage import UsageMeter
from ..policy import UpstreamSettings
from .common import Receive, Scope, Send, send_error

__all__ = ["Upstream"]

log = logging.getLogger("tokenward.upstream")

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
    }
)  # fmt: skip
_CLIENT_AUTH = frozenset({"authorization", "x-api-key", "api-key"})
# Where a client may claim to come from. The upstream gets what the gateway believes
# (TrustedProxies) instead of what the client wrote.
_CLIENT_ADDRESS = frozenset(
    {
        "x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-proto", "x-forwarded-host",
        "x-forwarded-port", "x-client-ip", "true-client-ip", "cf-connecting-ip", "x-cluster-client-ip",
        "fastly-client-ip", "x-original-forwarded-for",
    }
)  # fmt: skip
# Never sent upstream: hop-by-hop, our own protocol headers, what aiohttp computes, and
# the client's claims about its address.
_REQUEST_DROP = HOP_BY_HOP | _CLIENT_ADDRESS | {"host", "content-length", "tokenward-proof", "tokenward-signals"}
# The ASGI server sets its own date/server; passing the upstream's doubles them.
_RESPONSE_DROP = HOP_BY_HOP | {b"date", b"server"}
_RESPONSE_DROP_BYTES = frozenset(h.encode() if isinstance(h, str) else h for h in _RESPONSE_DROP)
# A metered response may lose the usage chunk the gateway asked for: its length changes.
_RESPONSE_DROP_METERED = _RESPONSE_DROP_BYTES | {b"content-length"}
_SKIP_AUTO = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})
WATCH_AFTER = 0.25  # seconds into a call before its client is watched for a disconnect


class Upstream:
    def __init__(self, settings: UpstreamSettings):
        self.settings = settings
        self.base = settings.url
        self._inject = [(k, v.get_secret_value()) for k, v in settings.headers.items()]
        self._inject_names = frozenset(k.lower() for k, _ in self._inject)
        self._drop = _REQUEST_DROP | self._inject_names
        if not settings.forward_client_auth:
            self._drop = self._drop | _CLIENT_AUTH
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # injected headers are credentials: never print them
        return f"Upstream({self.base!r}, inject={sorted(self._inject_names)})"

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections, ttl_dns_cache=300, enable_cleanup_closed=True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # bytes pass through as the upstream encoded them
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.settings.connect_timeout,
                sock_read=self.settings.read_timeout,
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _request_headers(self, scope: Scope, client_ip: str) -> CIMultiDict[str]:
        out: CIMultiDict[str] = CIMultiDict()
        drop = self._drop
        for k, v in scope["headers"]:
            if k == b"connection":  # headers it names are hop-by-hop too (RFC 9110 7.6.1)
                named = {n.strip().lower() for n in v.decode("latin-1").split(",")}
                drop = drop | named
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            if name in drop:
                continue
            out.add(name, v.decode("latin-1"))
        scheme = scope.get("scheme", "http")
        out["x-forwarded-for"] = client_ip
        out["x-real-ip"] = client_ip
        out["x-forwarded-proto"] = scheme
        node = f'"[{client_ip}]"' if ":" in client_ip else client_ip  # RFC 7239: IPv6 quoted
        out["forwarded"] = f"for={node};proto={scheme}"
        for k, v in self._inject:
            out[k] = v
        return out

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        facts: RequestFacts,
        decision: Decision | None,
        response_headers: list[tuple[bytes, bytes]],
        outcome: RequestOutcome,
    ) -> None:
        session = self._session
        if session is None:
            raise RuntimeError("upstream client used before start()")
        # The path exactly as the edge admitted it (edge.py), the query verbatim: ``encoded=True``
        # stops yarl from re-quoting or resolving anything, so the upstream reads what was judged.
        target = self.base + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        url = URL(target, encoded=True)
        flavour = facts.route.api if facts.route is not None else None
        call: CallPlan | None = decision.work.call if decision is not None else None
        headers = self._request_headers(scope, facts.client_ip)
        if call is not None:
            headers["accept-encoding"] = "identity"  # usage is read from the bytes as they pass
            outcome.model = call.model
        state: dict[str, aiohttp.ClientResponse | bool] = {}
        watcher = _DisconnectWatch(receive, state)
        sent_at = time.perf_counter()
        try:
            try:
                resp = await session.request(
                    scope["method"], url, headers=headers,
                    data=call.body if call is not None and call.body is not None else facts.body,
                    allow_redirects=False, skip_auto_headers=_SKIP_AUTO,
                )  # fmt: skip
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                outcome.error = f"upstream: {type(exc).__name__}: {exc}"
                if flavour is not None and not state.get("gone"):
                    timeout = isinstance(exc, TimeoutError)
                    outcome.status = await send_error(
                        send, flavour,
                        "upstream_timeout" if timeout else "upstream_unavailable",
                        "The AI service behind this gateway did not answer in time."
                        if timeout else "The AI service behind this gateway is unavailable.",
                        response_headers,
                    )  # fmt: skip
                return
            state["resp"] = resp
            outcome.upstream_ms = (time.perf_counter() - sent_at) * 1000
            # Streams: the time to their first byte (metrics); measured from here, the
            # gate adds the time before the call.
            first = resp.content_type == "text/event-stream"
            meter = call.meter(resp.status, resp.headers.get("content-type", "")) if call is not None else None
            try:
                outcome.upstream_status = outcome.status = resp.status
                drop = _RESPONSE_DROP_METERED if call is not None and call.inject_usage else _RESPONSE_DROP_BYTES
                start = [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in drop]
                await send({"type": "http.response.start", "status": resp.status, "headers": start + response_headers})
                await _relay(resp, send, meter, outcome, sent_at if first else None)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                outcome.error = (
                    "client disconnected" if state.get("gone")
                    else f"upstream stream broke: {type(exc).__name__}: {exc}"
                )  # fmt: skip
            finally:
                resp.close()
                if meter is not None:
                    outcome.usage = meter.result()
                    if decision is not None and decision.work.conversation is not None:
                        outcome.text = meter.text()
        finally:
            watcher.stop()
            if state.get("gone") and outcome.error is None:
                outcome.error = "client disconnected"


async def _relay(
    resp: aiohttp.ClientResponse, send: Send, meter: UsageMeter | None, outcome: RequestOutcome,
    stream_sent_at: float | None,
) -> None:  # fmt: skip
    """The response body, as it arrives (metered on the way when the call is priced);
    a stream's time to its first byte is noted from ``stream_sent_at``."""
    async for chunk in resp.content.iter_any():
        if meter is not None:
            chunk = meter.feed(chunk)
            if not chunk:
                continue
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if stream_sent_at is not None:
            outcome.first_byte_ms = (time.perf_counter() - stream_sent_at) * 1000
            stream_sent_at = None
    tail = meter.end() if meter is not None else b""
    await send({"type": "http.response.body", "body": tail, "more_body": False})


class _DisconnectWatch:
    """A timer that starts the watcher task if the call is still going at ``WATCH_AFTER``."""

    __slots__ = ("receive", "state", "task", "timer")

    def __init__(self, receive: Receive, state: dict):
        self.receive = receive
        self.state = state
        self.task: asyncio.Future[None] | None = None
        self.timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)

    def _start(self) -> None:
        self.task = asyncio.ensure_future(_watch_disconnect(self.receive, self.state))

    def stop(self) -> None:
        self.timer.cancel()
        if self.task is not None:
            self.task.cancel()


async def _watch_disconnect(receive: Receive, state: dict) -> None:
    """Wait for the client to leave, then close the upstream response (and connection)."""
    with contextlib.suppress(Exception):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                state["gone"] = True
                resp = state.get("resp")
                if resp is not None:
                    resp.close()
                return
