"""Shared pieces of the signed-request tests: keys, request facts, a registry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tokenward.facts import RequestFacts
from tokenward.proof.signature import public_key_b64url
from tokenward.sdk.signing import RequestSigner
from tokenward.trusted_clients import ClientKeySpec, ClientRegistry, ClientSpec, ClientsSettings, KeyRecord

# RFC 9421 Appendix B.1.4, test-key-ed25519.
RFC_PRIVATE_PEM = """-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_PUBLIC_PEM = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""

NOW = 1_700_000_000.0
URL = "http://gateway.test:8080/v1/chat/completions"
BODY = b'{"model": "demo-1", "messages": [{"role": "user", "content": "hi"}]}'
JSON = {"Content-Type": "application/json"}


# RequestFacts carries what the HTTP layer adds for signatures (scheme, raw path, query).
WireFacts = RequestFacts


def facts(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes = b"",
    *,
    host: str | None = None,
    via_proxy: bool = False,
    now: float = NOW,
) -> WireFacts:
    """What the gateway would build from this request arriving on a socket."""
    parts = urlsplit(url)
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    if not any(k.lower() == "host" for k, _ in pairs):
        pairs.insert(0, ("host", host or parts.netloc))
    joined: dict[str, str] = {}
    for k, v in pairs:
        name = k.lower()
        joined[name] = f"{joined[name]}, {v}" if name in joined else v
    from urllib.parse import unquote

    return WireFacts(
        request_id="t",
        received_at=now,
        method=method,
        path=unquote(parts.path),
        client_ip="127.0.0.1",
        headers=joined,
        raw_headers=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs],
        body=body,
        route=None,
        via_proxy=via_proxy,
        scheme=parts.scheme,
        raw_path=parts.path,
        query=parts.query,
    )


class Client:
    """A client key pair and a signer with a fixed clock and counted nonces."""

    def __init__(self, name: str = "backend", keyid: str | None = None, *, now: float = NOW):
        self.name = name
        self.private = Ed25519PrivateKey.generate()
        self.public = public_key_b64url(self.private.public_key())
        self.keyid = keyid or f"{name}.k1"
        self.now = now
        self._n = 0
        self.signer = RequestSigner(self.private, self.keyid, clock=lambda: self.now, nonce=self.nonce)

    def nonce(self) -> str:
        self._n += 1
        return f"nonce-{self.name}-{self._n:012d}"

    def spec(self, routes: tuple[str, ...] = ("*",), **kw: object) -> ClientSpec:
        return ClientSpec(
            name=self.name, routes=routes, keys=(ClientKeySpec(keyid=self.keyid, public_key=self.public),), **kw
        )

    def record(self, routes: tuple[str, ...] = ("*",), **kw: object) -> KeyRecord:
        return KeyRecord(
            keyid=self.keyid, client=self.name, public_key=self.public, created_at=NOW, routes=routes, **kw
        )

    def sign(
        self, method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> list[tuple[str, str]]:
        pairs = list((headers or {}).items())
        host = urlsplit(url).netloc
        return [("host", host), *pairs, *self.signer.headers(method, url, [("host", host), *pairs], body).items()]

    def facts(self, method: str = "POST", url: str = URL, body: bytes = BODY, **kw: object) -> WireFacts:
        return facts(method, url, self.sign(method, url, JSON, body), body, **kw)  # type: ignore[arg-type]


def registry(*specs: ClientSpec, records: Iterable[KeyRecord] = (), **settings: object) -> ClientRegistry:
    return ClientRegistry(ClientsSettings(named=specs, **settings), list(records))  # type: ignore[arg-type]
