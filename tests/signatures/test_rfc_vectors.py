"""The RFCs' own test vectors: RFC 9421 B.2.6 (Ed25519) and RFC 9530 (Content-Digest)."""

from __future__ import annotations

import base64

from tokenward.proof.signature import (
    ResolvedKey,
    SignatureClaims,
    SignatureFailure,
    SignatureRules,
    SignedRequest,
    content_digest,
    load_private_key,
    load_public_key,
    signature_base,
    verify_signature,
)

from .helpers import RFC_PRIVATE_PEM, RFC_PUBLIC_PEM

# RFC 9421 Appendix B.2: the test request.
BODY = b'{"hello": "world"}'
HEADERS = [
    ("Host", "example.com"),
    ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
    ("Content-Type", "application/json"),
    (
        "Content-Digest",
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    ),
    ("Content-Length", "18"),
]
# Appendix B.2.6.
SIG_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
SIGNATURE = "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
COMPONENTS = [(n, {}) for n in ("date", "@method", "@path", "@authority", "content-type", "content-length")]
PARAMS = {"created": 1618884473, "keyid": "test-key-ed25519"}
# The vector covers neither the query nor a nonce: check it under the RFC's rules, not ours.
RFC_RULES = SignatureRules(require_target=False, require_digest=False, require_nonce=False, max_age=60)


class RfcKey:
    def resolve_key(self, keyid: str, now: float) -> ResolvedKey:
        assert keyid == "test-key-ed25519"
        return ResolvedKey(keyid, "rfc", load_public_key(RFC_PUBLIC_PEM), ("*",))


def _request(extra: list[tuple[str, str]], method: str = "POST", body: bytes = BODY) -> SignedRequest:
    return SignedRequest.from_url(method, "https://example.com/foo?param=Value&Pet=dog", HEADERS + extra, body)


def test_signature_base_is_byte_exact() -> None:
    assert signature_base(_request([]), COMPONENTS, PARAMS) == BASE.encode()


def test_signing_reproduces_the_rfc_signature() -> None:
    # Ed25519 is deterministic: the same key over the same base gives the RFC's bytes.
    key = load_private_key(RFC_PRIVATE_PEM)
    expected = SIGNATURE.split("=", 1)[1].strip(":")
    assert base64.b64encode(key.sign(BASE.encode())).decode() == expected


def test_rfc_signature_verifies() -> None:
    request = _request([("Signature-Input", SIG_INPUT), ("Signature", SIGNATURE)])
    result = verify_signature(request, RfcKey(), RFC_RULES, now=1618884473 + 30)
    assert isinstance(result, SignatureClaims), result
    assert result.keyid == "test-key-ed25519" and result.label == "sig-b26" and result.created == 1618884473
    assert result.covered == ('"date"', '"@method"', '"@path"', '"@authority"', '"content-type"', '"content-length"')


def test_rfc_signature_over_changed_request_fails() -> None:
    for request in (
        _request([("Signature-Input", SIG_INPUT), ("Signature", SIGNATURE)], method="PUT"),
        SignedRequest.from_url(
            "POST",
            "https://example.com/bar",
            [*HEADERS, ("Signature-Input", SIG_INPUT), ("Signature", SIGNATURE)],
            BODY,
        ),
    ):
        result = verify_signature(request, RfcKey(), RFC_RULES, now=1618884473)
        assert isinstance(result, SignatureFailure) and result.code == "signature_invalid"


def test_rfc_vector_is_refused_under_the_gateway_rules() -> None:
    # Without @target-uri (the query goes unsigned), content-digest and a nonce it is not
    # enough for a gateway.
    request = _request([("Signature-Input", SIG_INPUT), ("Signature", SIGNATURE)])
    result = verify_signature(request, RfcKey(), SignatureRules(), now=1618884473)
    assert isinstance(result, SignatureFailure) and result.code == "signature_invalid"


def test_rfc9530_digests() -> None:
    # RFC 9530 Appendix B.1 / B.2 examples (the body without a trailing newline).
    assert content_digest(BODY) == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    assert content_digest(BODY, "sha-512") == dict(HEADERS)["Content-Digest"]


def test_rfc_keys_load_in_every_form() -> None:
    pub = load_public_key(RFC_PUBLIC_PEM)
    assert load_public_key("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs").public_bytes_raw() == pub.public_bytes_raw()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}
    assert load_public_key(jwk).public_bytes_raw() == pub.public_bytes_raw()
    seed = load_private_key("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU")
    assert seed.public_key().public_bytes_raw() == pub.public_bytes_raw()
