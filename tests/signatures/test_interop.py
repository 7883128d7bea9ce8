"""Interop with an independent RFC 9421 implementation (the `http-message-signatures`
package): its signatures verify here and ours verify there, in process and on the wire."""

from __future__ import annotations

import datetime
import time

import httpx2
import pytest
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, InvalidSignature, algorithms
from http_message_signatures.httpx2 import adapt_message
from http_message_signatures.resolvers import MappingKeyResolver

from tokenward.proof.signature import SignatureClaims, SignatureFailure

from .helpers import BODY, Client, facts, registry

URL = "http://gateway.test:8080/v1/chat/completions?api-version=2"


def _theirs(client: Client) -> tuple[HTTPMessageSigner, HTTPMessageVerifier]:
    resolver = MappingKeyResolver(
        public_keys={client.keyid: client.private.public_key()}, private_keys={client.keyid: client.private}
    )
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    return signer, verifier


def _their_request(client: Client, covered: tuple[str, ...], nonce: str = "their-nonce-0123456789") -> httpx2.Request:
    signer, _ = _theirs(client)
    request = httpx2.Request("POST", URL, content=BODY, headers={"content-type": "application/json"})
    signer.sign(
        adapt_message(request),
        key_id=client.keyid,
        created=datetime.datetime.now(datetime.UTC),
        nonce=nonce,
        label="sig1",
        covered_component_ids=covered,
        body=BODY,  # makes it add and cover Content-Digest
    )
    return request


def _as_facts(request: httpx2.Request) -> object:
    return facts(
        request.method, str(request.url), list(request.headers.multi_items()), request.content, now=time.time()
    )


@pytest.mark.parametrize(
    "covered",
    [
        ("@method", "@target-uri"),
        ("@method", "@authority", "@path", "@query", "content-type"),
        ("@method", "@target-uri", "@scheme", "@request-target", "content-type", "content-length"),
    ],
)
def test_their_signatures_verify_here(covered: tuple[str, ...]) -> None:
    client = Client(now=time.time())
    request = _their_request(client, covered)
    assert "sha-256" in request.headers["content-digest"] or "sha-512" in request.headers["content-digest"]
    result = registry(client.spec()).verify(_as_facts(request), now=time.time())
    assert isinstance(result, SignatureClaims), result
    assert result.label == "sig1" and result.nonce == "their-nonce-0123456789"


def test_their_signature_over_another_body_is_refused_here() -> None:
    client = Client(now=time.time())
    request = _their_request(client, ("@method", "@target-uri"))
    f = facts("POST", URL, list(request.headers.multi_items()), b'{"changed": true}', now=time.time())
    result = registry(client.spec()).verify(f, now=time.time())
    assert isinstance(result, SignatureFailure) and result.code == "digest_mismatch"


def test_our_signatures_verify_there() -> None:
    client = Client(now=time.time())
    client.signer._clock = time.time  # their verifier reads the wall clock
    request = httpx2.Request("POST", URL, content=BODY, headers={"content-type": "application/json"})
    for name, value in client.signer.headers("POST", URL, request.headers.items(), BODY).items():
        request.headers[name] = value
    _, verifier = _theirs(client)
    results = verifier.verify(
        adapt_message(request),
        require_components=("@method", "@target-uri", "content-digest", "content-type"),
        body=BODY,
    )
    assert len(results) == 1
    assert results[0].parameters["keyid"] == client.keyid and results[0].parameters["alg"] == "ed25519"
    assert results[0].body == BODY  # their digest check passed too
    # And they refuse it once tampered with, as we do.
    request.headers["content-type"] = "text/plain"
    with pytest.raises(InvalidSignature):
        verifier.verify(adapt_message(request), body=BODY)
