"""Adapter resellers: a reseller's backend calling the target with the official
``openai`` / ``anthropic`` SDKs and ``tokenward.sdk.client``'s proof transport, as such
a backend runs them: a fixed wrapper prompt and coding-agent payloads, streaming, no
retries (it rotates instead). :class:`RecordingTransport` records every attempt the SDK
makes.
"""

from __future__ import annotations

import time
from typing import Any

from .actors import (
    Rotation,
    Target,
    header_bytes,
    nonce_of,
    parse_refusal,
)
from .population import (
    AGENT_TOOLS,
    WRAPPER_PROMPT,
    coding_payload,
)
from .records import Attempt, CallRecord, current_call

__all__ = ["AdapterReseller", "RecordingTransport"]


class _CountingStream:
    """Counts the bytes of a streamed answer into the current call."""

    def __init__(self, inner: Any, rec: CallRecord):
        self._inner = inner
        self._rec = rec

    async def __aiter__(self) -> Any:
        async for chunk in self._inner:
            self._rec.bytes_down += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class RecordingTransport:
    """The innermost ``httpx2`` transport under ``AsyncProofTransport``: it sees every
    request the SDK sends (challenges, attempts, retries), adds the call's client address,
    and records each attempt on the protected routes."""

    def __init__(self, inner: Any, routes: frozenset[str]):
        self._inner = inner
        self._routes = routes

    async def handle_async_request(self, request: Any) -> Any:
        rec = current_call.get()
        if rec is not None:
            request.headers["X-Forwarded-For"] = rec.ip
        t0 = time.time()
        response = await self._inner.handle_async_request(request)
        t1 = time.time()
        if rec is None:
            return response
        try:
            body = request.content
        except Exception:  # a streamed body that was never read: not ours
            body = b""
        rec.bytes_up += len(body) + header_bytes(request.headers)
        rec.bytes_down += header_bytes(response.headers)
        if request.url.path not in self._routes:
            raw = await response.aread()
            rec.bytes_down += len(raw)
            return response
        code = None
        if response.status_code >= 400:
            raw = await response.aread()
            rec.bytes_down += len(raw)
            code = parse_refusal(raw)[0]
        else:
            response.stream = _CountingStream(response.stream, rec)
        rec.add(
            Attempt(
                t_send=t0, t_headers=t1, status=response.status_code,
                decision=response.headers.get("tokenward-decision"),
                request_id=response.headers.get("tokenward-request-id"),
                code=code, upstream=response.headers.get("x-demo-upstream") == "1",
                nonce=nonce_of(request.headers.get("tokenward-proof")),
            )
        )  # fmt: skip
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class AdapterReseller:
    """A reseller's backend: an OpenAI- or Anthropic-compatible API for its customers,
    served by calling the target with the official SDK (``sdk``: openai | anthropic)."""

    def __init__(self, sdk: str, target: Target, rotation: Rotation, route: str):
        import httpx2

        from ..sdk.client import AsyncProofTransport

        self.sdk = sdk
        self.target = target
        self.rotation = rotation
        self.route = route
        inner = RecordingTransport(httpx2.AsyncHTTPTransport(retries=0), frozenset({route}))
        self.http = httpx2.AsyncClient(transport=AsyncProofTransport(inner), timeout=120)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, rec: CallRecord) -> None:
        rng = self.rotation.rng
        account = self.rotation.next(rec, time.time()).account
        # The customer's request arrives with the reseller's key; the reseller puts the
        # throwaway account's token where the target expects a credential.
        key = account.token if account is not None else f"sk-reseller-{rng.randrange(16**8):08x}"
        _, messages = coding_payload(rng)
        token = current_call.set(rec)
        rec.t_start = time.time()
        try:
            if self.sdk == "openai":
                await self._openai(key, messages)
            else:
                await self._anthropic(key, messages)
        except Exception as exc:  # the SDK raises for refusals: the transport recorded them
            if not rec.attempts:
                rec.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        finally:
            current_call.reset(token)
            rec.t_end = time.time()

    async def _openai(self, key: str, messages: list[dict[str, Any]]) -> None:
        import openai

        client = openai.AsyncOpenAI(base_url=self.target.base + "/v1", api_key=key, http_client=self.http,
                                    max_retries=0)  # fmt: skip
        tools = [{"type": "function", "function": t} for t in AGENT_TOOLS]
        stream = await client.chat.completions.create(
            model="demo-1",
            messages=[{"role": "system", "content": WRAPPER_PROMPT}, *messages],  # type: ignore[list-item]
            tools=tools,  # type: ignore[arg-type]
            max_tokens=8192,
            stream=True,
        )
        async for _ in stream:  # type: ignore[union-attr]
            pass

    async def _anthropic(self, key: str, messages: list[dict[str, Any]]) -> None:
        import anthropic

        client = anthropic.AsyncAnthropic(
            base_url=self.target.base, auth_token=key, api_key=None, http_client=self.http, max_retries=0
        )
        tools = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                 for t in AGENT_TOOLS]  # fmt: skip
        stream = await client.messages.create(
            model="demo-1",
            system=WRAPPER_PROMPT,
            messages=_alternate(messages),  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            max_tokens=8192,
            stream=True,
        )
        async for _ in stream:  # type: ignore[union-attr]
            pass


def _alternate(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Anthropic wants user/assistant turns to alternate: merge consecutive ones."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append(dict(m))
    return out
