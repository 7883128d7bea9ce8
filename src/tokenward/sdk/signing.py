"""Sign every request a Python backend sends through a tokenward gateway (RFC 9421, Ed25519).

Each request gets a ``Content-Digest`` of its exact body and a fresh signature over
``@method``, ``@target-uri``, ``content-digest`` and ``content-type`` (when present), with
``created``, ``expires``, ``keyid`` and a random ``nonce``: nothing a leaked log line holds
can be replayed. The official ``openai`` and ``anthropic`` SDKs take an ``http_client=``;
at the time of writing both build on ``httpx2`` (``httpx`` has the same transport
interface)::

    import httpx2, openai
    from tokenward.sdk.signing import SigningTransport

    client = openai.OpenAI(
        base_url="https://llm.example.com/v1", api_key="unused",
        http_client=httpx2.Client(transport=SigningTransport(os.environ["TOKENWARD_KEY"], "backend.3kq...")),
    )

:class:`AsyncSigningTransport` for ``AsyncOpenAI``/``AsyncAnthropic``; pass
``transport=httpx.HTTPTransport()`` (or the async one) to use them with ``httpx``;
:func:`signing_middleware` for ``aiohttp.ClientSession(middlewares=...)``. Retries made
by the SDKs go through the transport again and are signed afresh.

A gateway on the memory store refuses signed requests for a few seconds after it starts
(``401 signature_expired`` with ``Retry-After``: it cannot tell a new signature from one
it consumed before the restart; docs/signed-requests.md). All three wait that long and
send the request once more, signed afresh.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._extras import require
from ..proof.signature import DEFAULT_COMPONENTS, SignedRequest, content_digest, load_private_key, sign_request

__all__ = [
    "AsyncSigningTransport",
    "RequestSigner",
    "SigningTransport",
    "async_http_client",
    "http_client",
    "signing_middleware",
]

_SIGNATURE_FIELDS = ("signature", "signature-input", "content-digest")


def _httpx2() -> Any:
    """httpx2, or a MissingExtra naming ``pip install 'tokenward[client]'``."""
    return require("httpx2", "client", "tokenward.sdk.signing")


class RequestSigner:
    """Computes the signature headers of one request; holds the private key.

    ``key``: an ``Ed25519PrivateKey``, a PEM ``PRIVATE KEY`` or the base64url seed that
    ``tokenward keys create`` printed. ``expires_in``: seconds the signature is valid
    (the gateway also caps it, 30 s by default). ``clock`` and ``nonce`` are injectable
    for tests."""

    def __init__(
        self,
        key: Ed25519PrivateKey | str | bytes,
        keyid: str,
        *,
        expires_in: float | None = 30.0,
        components: Sequence[str] = DEFAULT_COMPONENTS,
        label: str = "tokenward",
        tag: str | None = None,
        digest: str = "sha-256",
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] | None = None,
    ):
        if not keyid:
            raise ValueError("a keyid is needed (tokenward keys create prints it)")
        self._key = load_private_key(key)
        self.keyid = keyid
        self.expires_in = expires_in
        self.components = tuple(components)
        self.label = label
        self.tag = tag
        self.digest = digest
        content_digest(b"", digest)  # an unknown algorithm fails here, not on the first request
        self._clock = clock
        self._nonce = nonce or (lambda: secrets.token_urlsafe(24))  # 24 random bytes

    def __repr__(self) -> str:  # never print the key
        return f"RequestSigner(keyid={self.keyid!r}, key=***)"

    def headers(self, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes) -> dict[str, str]:
        """The ``Content-Digest``, ``Signature-Input`` and ``Signature`` to set on a request
        for ``url`` (absolute, as sent: scheme, host[:port], raw path and query)."""
        lines = [(k, v) for k, v in headers if k.lower() not in _SIGNATURE_FIELDS]
        digest = content_digest(body, self.digest)
        lines.append(("content-digest", digest))
        request = SignedRequest.from_url(method, url, lines, body)
        created = int(self._clock())
        sig_input, signature = sign_request(
            request,
            self._key,
            keyid=self.keyid,
            created=created,
            expires=created + int(self.expires_in) if self.expires_in is not None else None,
            nonce=self._nonce(),
            components=self.components,
            label=self.label,
            tag=self.tag,
        )
        return {"Content-Digest": digest, "Signature-Input": sig_input, "Signature": signature}


def _signer(key: RequestSigner | Ed25519PrivateKey | str | bytes, keyid: str | None, options: Any) -> RequestSigner:
    if isinstance(key, RequestSigner):
        if keyid is not None or options:
            raise TypeError("pass either a RequestSigner or a key, keyid and options")
        return key
    if keyid is None:
        raise TypeError("a keyid is needed with a key")
    return RequestSigner(key, keyid, **options)


# -- httpx2 / httpx ------------------------------------------------------------------------


def _httpx_url(url: Any) -> str:
    """The target URI as put on the wire: ``raw_path`` is the path and query as sent."""
    target = url.raw_path.decode("ascii")
    if target.endswith("?"):
        target = target[:-1]
    return f"{url.scheme}://{url.netloc.decode('ascii')}{target}"


# The longest wait honoured: a gateway's max_future is at most 60 s (then a second more).
_MAX_RESTART_WAIT = 61


def _restart_wait(status: int, headers: Any, read: Callable[[], bytes] | None = None) -> int | None:
    """Seconds to wait before signing again, when the response is a gateway's refusal of
    a signature made too close to its start; else None. ``read`` gives the body."""
    if status != 401:
        return None
    value = headers.get("retry-after")
    if value is None or not value.isdigit() or not 0 < int(value) <= _MAX_RESTART_WAIT or read is None:
        return None
    try:
        code = json.loads(read())["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return int(value) if code == "signature_expired" else None


def _wants(request: Any, paths: frozenset[str] | None) -> bool:
    return paths is None or request.url.path in paths


def _sign_httpx(signer: RequestSigner, request: Any, body: bytes) -> None:
    for name, value in signer.headers(request.method, _httpx_url(request.url), request.headers.items(), body).items():
        request.headers[name] = value


class SigningTransport:
    """A sync transport wrapper (``httpx2`` by default, or any ``httpx``-style transport
    passed as ``transport=``) that signs each request. ``paths``: sign only these URL
    paths (default: every request)."""

    def __init__(
        self,
        key: RequestSigner | Ed25519PrivateKey | str | bytes,
        keyid: str | None = None,
        *,
        transport: Any = None,
        paths: Iterable[str] | None = None,
        **options: Any,
    ):
        self.signer = _signer(key, keyid, options)
        if transport is None:
            transport = _httpx2().HTTPTransport()
        self._inner = transport
        self._paths = frozenset(paths) if paths is not None else None

    def handle_request(self, request: Any) -> Any:
        if not _wants(request, self._paths):
            return self._inner.handle_request(request)
        body = request.read()
        _sign_httpx(self.signer, request, body)
        response = self._inner.handle_request(request)
        wait = _restart_wait(response.status_code, response.headers, response.read)
        if wait is None:
            return response
        response.close()
        time.sleep(wait)
        _sign_httpx(self.signer, request, body)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> SigningTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSigningTransport:
    """The async twin of :class:`SigningTransport` (signing is microseconds: no thread)."""

    def __init__(
        self,
        key: RequestSigner | Ed25519PrivateKey | str | bytes,
        keyid: str | None = None,
        *,
        transport: Any = None,
        paths: Iterable[str] | None = None,
        **options: Any,
    ):
        self.signer = _signer(key, keyid, options)
        if transport is None:
            transport = _httpx2().AsyncHTTPTransport()
        self._inner = transport
        self._paths = frozenset(paths) if paths is not None else None

    async def handle_async_request(self, request: Any) -> Any:
        if not _wants(request, self._paths):
            return await self._inner.handle_async_request(request)
        body = await request.aread()
        _sign_httpx(self.signer, request, body)
        response = await self._inner.handle_async_request(request)
        content = await response.aread() if response.status_code == 401 else b""
        wait = _restart_wait(response.status_code, response.headers, lambda: content)
        if wait is None:
            return response
        await response.aclose()
        await asyncio.sleep(wait)
        _sign_httpx(self.signer, request, body)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> AsyncSigningTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def http_client(key: RequestSigner | Ed25519PrivateKey | str | bytes, keyid: str | None = None, **kwargs: Any) -> Any:
    """An ``httpx2.Client`` that signs every request: pass it as the SDKs' ``http_client=``.
    ``kwargs`` go to the client (``transport=`` is wrapped)."""
    return _httpx2().Client(transport=SigningTransport(key, keyid, transport=kwargs.pop("transport", None)), **kwargs)  # type: ignore[arg-type]


def async_http_client(
    key: RequestSigner | Ed25519PrivateKey | str | bytes, keyid: str | None = None, **kwargs: Any
) -> Any:
    """An ``httpx2.AsyncClient`` that signs every request (``AsyncOpenAI``/``AsyncAnthropic``)."""
    return _httpx2().AsyncClient(
        transport=AsyncSigningTransport(key, keyid, transport=kwargs.pop("transport", None)),  # type: ignore[arg-type]
        **kwargs,
    )


# -- aiohttp ------------------------------------------------------------------------------


def _yarl_url(url: Any) -> str:
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    port = url.explicit_port
    authority = f"{host}:{port}" if port is not None else host
    return f"{url.scheme}://{authority}{url.raw_path_qs}"


async def _aiohttp_body(request: Any) -> bytes:
    from aiohttp.payload import BytesPayload

    body = request.body
    if not body:
        return b""
    if isinstance(body, BytesPayload):
        data: bytes = await body.as_bytes()
        return data
    # Streams and files: read them once and send exactly the bytes that were signed.
    data = await body.as_bytes()
    await request.update_body(data)
    return data


def signing_middleware(
    key: RequestSigner | Ed25519PrivateKey | str | bytes,
    keyid: str | None = None,
    *,
    paths: Iterable[str] | None = None,
    **options: Any,
) -> Callable[[Any, Any], Any]:
    """An ``aiohttp`` client middleware (aiohttp >= 3.12) that signs each request::

    aiohttp.ClientSession(middlewares=(signing_middleware(key, keyid),))
    """
    signer = _signer(key, keyid, options)
    only = frozenset(paths) if paths is not None else None

    def sign(request: Any, body: bytes) -> None:
        fields: Mapping[str, str] = request.headers
        for name, value in signer.headers(request.method, _yarl_url(request.url), fields.items(), body).items():
            request.headers[name] = value

    async def middleware(request: Any, handler: Any) -> Any:
        if only is not None and request.url.path not in only:
            return await handler(request)
        body = await _aiohttp_body(request)
        sign(request, body)
        response = await handler(request)
        content = await response.read() if response.status == 401 else b""
        wait = _restart_wait(response.status, response.headers, lambda: content)
        if wait is None:
            return response
        response.release()
        await asyncio.sleep(wait)
        sign(request, body)
        return await handler(request)

    return middleware
