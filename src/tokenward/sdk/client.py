"""Python client helpers: attach a fresh Tokenward-Proof to every protected request.

The official ``openai`` and ``anthropic`` SDKs take an ``http_client=``; at the time of
writing both build on ``httpx2`` (``httpx`` has the same transport interface). Wrap the
transport and every POST gets its own challenge, solved for its exact body::

    import httpx2, openai
    from tokenward.sdk.client import ProofTransport

    client = openai.OpenAI(
        base_url="http://localhost:8080/v1", api_key="unused",
        http_client=httpx2.Client(transport=ProofTransport()),
    )

``AsyncProofTransport`` does the same for ``AsyncOpenAI`` / ``AsyncAnthropic`` (the
proof is solved in a worker thread so the event loop keeps running). A 401 that carries
a fresh challenge is retried once with it, as the browser SDK does.

This solver is the protocol's reference implementation in Python. It runs at native
hashlib speed, which is far faster than a browser: gateways may treat that as a signal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from .._extras import require
from ..proof.challenge import MAX_DIFFICULTY, solve

__all__ = [
    "AsyncProofTransport",
    "ProofTransport",
    "TokenwardClientError",
    "async_http_client",
    "http_client",
]

CHALLENGE_PATH = "/.tokenward/challenge"


def _httpx2() -> Any:
    """httpx2, or a MissingExtra naming ``pip install 'tokenward[client]'``."""
    return require("httpx2", "client", "tokenward.sdk.client")


class TokenwardClientError(RuntimeError):
    """The gateway's challenge endpoint gave something we cannot solve."""


def _wants_proof(request: Any, paths: frozenset[str] | None) -> bool:
    if request.method != "POST" or request.url.path.startswith("/.tokenward/"):
        return False
    return paths is None or request.url.path in paths


def _challenge_request(request: Any) -> Any:
    body = json.dumps({"route": request.url.path}).encode()
    return type(request)(
        "POST",
        request.url.copy_with(path=CHALLENGE_PATH, query=None),
        headers={"content-type": "application/json", "accept": "application/json"},
        content=body,
    )


def _parse_challenge(data: Any) -> dict[str, Any]:
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("challenge"), str)
        or not isinstance(data.get("difficulty"), int)
    ):
        raise TokenwardClientError(f"not a tokenward challenge: {str(data)[:200]}")
    if not 0 <= data["difficulty"] <= MAX_DIFFICULTY:
        raise TokenwardClientError(f"refusing to solve difficulty {data['difficulty']}")
    return data


def _challenge_in_refusal(raw: bytes) -> dict[str, Any] | None:
    """The fresh challenge a 401 carries, in either API dialect (docs/protocol.md §3)."""
    try:
        data = json.loads(raw)
        challenge = data["error"]["challenge"]
        return _parse_challenge(challenge)
    except (ValueError, KeyError, TypeError, TokenwardClientError):
        return None


def _attach(request: Any, challenge: dict[str, Any], body: bytes) -> None:
    signals = request.headers.get("tokenward-signals")
    nonce = solve(
        challenge["challenge"], body, challenge["difficulty"],
        signals.encode() if signals is not None else None,
    )  # fmt: skip
    request.headers["Tokenward-Proof"] = f"v1.{challenge['challenge']}.{nonce}"


class ProofTransport:
    """A sync transport wrapper (httpx2 / httpx) that proves each protected request."""

    def __init__(self, transport: Any = None, *, paths: Iterable[str] | None = None):
        if transport is None:
            transport = _httpx2().HTTPTransport()
        self._inner = transport
        self._paths = frozenset(paths) if paths is not None else None

    def handle_request(self, request: Any) -> Any:
        if not _wants_proof(request, self._paths):
            return self._inner.handle_request(request)
        body = request.read()
        reply = self._inner.handle_request(_challenge_request(request))
        raw = reply.read()
        reply.close()
        if reply.status_code != 200:
            raise TokenwardClientError(f"challenge endpoint answered {reply.status_code}: {raw[:200]!r}")
        _attach(request, _parse_challenge(json.loads(raw)), body)
        response = self._inner.handle_request(request)
        if response.status_code != 401:
            return response
        raw = response.read()
        retry = _challenge_in_refusal(raw)
        if retry is None:
            return response
        response.close()
        _attach(request, retry, body)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> ProofTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncProofTransport:
    """The async twin of :class:`ProofTransport`; solving runs in a worker thread."""

    def __init__(self, transport: Any = None, *, paths: Iterable[str] | None = None):
        if transport is None:
            transport = _httpx2().AsyncHTTPTransport()
        self._inner = transport
        self._paths = frozenset(paths) if paths is not None else None

    async def handle_async_request(self, request: Any) -> Any:
        if not _wants_proof(request, self._paths):
            return await self._inner.handle_async_request(request)
        body = await request.aread()
        reply = await self._inner.handle_async_request(_challenge_request(request))
        raw = await reply.aread()
        await reply.aclose()
        if reply.status_code != 200:
            raise TokenwardClientError(f"challenge endpoint answered {reply.status_code}: {raw[:200]!r}")
        await asyncio.to_thread(_attach, request, _parse_challenge(json.loads(raw)), body)
        response = await self._inner.handle_async_request(request)
        if response.status_code != 401:
            return response
        raw = await response.aread()
        retry = _challenge_in_refusal(raw)
        if retry is None:
            return response
        await response.aclose()
        await asyncio.to_thread(_attach, request, retry, body)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> AsyncProofTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def http_client(**kwargs: Any) -> Any:
    """An ``httpx2.Client`` that proves every POST: pass it as the SDKs' ``http_client=``."""
    return _httpx2().Client(transport=ProofTransport(kwargs.pop("transport", None)), **kwargs)  # type: ignore[arg-type]


def async_http_client(**kwargs: Any) -> Any:
    """An ``httpx2.AsyncClient`` that proves every POST (for AsyncOpenAI/AsyncAnthropic)."""
    return _httpx2().AsyncClient(transport=AsyncProofTransport(kwargs.pop("transport", None)), **kwargs)  # type: ignore[arg-type]
