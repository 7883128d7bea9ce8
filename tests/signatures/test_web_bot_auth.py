"""The Web Bot Auth profile: agents recognised by a local key directory (JWKS), their
signatures checked under the profile's rules. Published third-party signatures made
with the RFC 9421 test key verify byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tokenward.proof.signature import (
    SignatureClaims,
    SignatureFailure,
    SignedRequest,
    public_key_b64url,
    sign_request,
)
from tokenward.trusted_clients import AgentSpec, ClientRegistry, ClientsSettings, load_jwks

from .helpers import Client, facts, registry

RFC_X = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"  # RFC 9421 B.1.4, test-key-ed25519
RFC_KEYID = "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"  # its RFC 7638 thumbprint

# The web-bot-auth architecture draft's example (tag, nonce, far expiry; covers @authority).
DRAFT = {
    "Signature-Input": 'sig1=("@authority");created=1735689600;keyid="poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"'
    ';alg="ed25519";expires=4889289600'
    ';nonce="zIW8+cdmA3vdYagbxojpONwa/l0EKJ/O3/wD486VvsQjO/RxPaSt6ZxvQaMcQzNnqKN/mQ6hpGiFro2L2qkz5A=="'
    ';tag="web-bot-auth"',
    "Signature": "sig1=:QKN4fTdIYfh82fvoZCQiQA1weuozfCS/Led2zTMbewMMqH8PI2Wsy/5c4ao6B6D09nraNQdBNOADg8aM1MqfCg==:",
}
# An example from a published Web Bot Auth implementation (covers signature-agent too).
WITH_AGENT = {
    "Signature-Agent": '"https://myexample.com"',
    "Signature-Input": 'sig1=("@authority" "signature-agent");alg="ed25519"'
    ';keyid="poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"'
    ';nonce="ZO3/XMEZjrvSnLtAP9M7jK0WGQf3J+pbmQRUpKDhF9/jsNCWqUh2sq+TH4WTX3/GpNoSZUa8eNWMKqxWp2/c2g=="'
    ';tag="web-bot-auth";created=1749332605;expires=1749332615',
    "Signature": "sig1=:GXzHSRZ9Sf6WwLOZjxAhfE6WEUPfDMrVBJITsL2sbG8gtcZgqKe2Yn7uavk0iNQrfcPzgGq8h8Pk5osNGqdtCw==:",
}


def _directory(tmp_path: Path, *xs: str, name: str = "agent.json") -> Path:
    path = tmp_path / name
    keys = [{"kty": "OKP", "crv": "Ed25519", "x": x} for x in xs]
    keys.append({"kty": "EC", "crv": "P-256", "x": "ignored", "y": "ignored"})  # other key types are skipped
    path.write_text(json.dumps({"keys": keys}))
    return path


def _agents(tmp_path: Path, announced: str | None = None) -> ClientRegistry:
    spec = AgentSpec(name="examplebot", directory=_directory(tmp_path, RFC_X), signature_agent=announced)
    return ClientRegistry(ClientsSettings(agents=(spec,), agent_max_age=3600))


def test_thumbprints_are_keyids(tmp_path: Path) -> None:
    assert list(load_jwks(_directory(tmp_path, RFC_X))) == [RFC_KEYID]


def test_published_signatures_verify(tmp_path: Path) -> None:
    reg = _agents(tmp_path)
    draft = reg.verify(facts("GET", "https://example.com/", DRAFT, now=1735689601), now=1735689601)
    assert isinstance(draft, SignatureClaims), draft
    assert (draft.key.kind, draft.client, draft.account) == ("agent", "examplebot", "agent:examplebot")
    assert draft.consume_ttl == pytest.approx(3600 - 1 + 5)  # the agent window, not `expires` 2124
    other = reg.verify(facts("GET", "https://example.com/", WITH_AGENT, now=1749332606), now=1749332606)
    assert isinstance(other, SignatureClaims), other
    assert other.evidence()["agent"] == "examplebot" and other.tag == "web-bot-auth"


def test_signature_agent_must_be_the_announced_one(tmp_path: Path) -> None:
    f = facts("GET", "https://example.com/", WITH_AGENT, now=1749332606)
    assert isinstance(_agents(tmp_path, "https://myexample.com").verify(f, now=1749332606), SignatureClaims)
    wrong = _agents(tmp_path, "https://someone-else.example").verify(f, now=1749332606)
    assert isinstance(wrong, SignatureFailure) and wrong.code == "signature_invalid"
    # Announced but not sent (the draft example has no Signature-Agent): refused.
    missing = _agents(tmp_path, "https://myexample.com").verify(
        facts("GET", "https://example.com/", DRAFT, now=1735689601), now=1735689601
    )
    assert isinstance(missing, SignatureFailure) and missing.code == "signature_invalid"


def test_unknown_agents_and_no_agents_are_not_verified_here(tmp_path: Path) -> None:
    f = facts("GET", "https://example.com/", DRAFT, now=1735689601)
    other = AgentSpec(
        name="otherbot", directory=_directory(tmp_path, public_key_b64url(Ed25519PrivateKey.generate().public_key()))
    )
    assert ClientRegistry(ClientsSettings(agents=(other,))).verify(f, now=1735689601) is None
    assert registry(Client().spec()).verify(f, now=1735689601) is None


def test_profile_rules(tmp_path: Path) -> None:
    reg = _agents(tmp_path)
    late = reg.verify(facts("GET", "https://example.com/", WITH_AGENT, now=1749332615), now=1749332615)
    assert isinstance(late, SignatureFailure) and late.code == "signature_expired"  # its expires
    moved = reg.verify(facts("GET", "https://example.org/", DRAFT, now=1735689601), now=1735689601)
    assert isinstance(moved, SignatureFailure) and moved.code == "signature_invalid"  # another @authority
    # A Signature-Agent that is sent must be covered.
    sneaky = {**DRAFT, "Signature-Agent": '"https://evil.example"'}
    f = facts("GET", "https://example.com/", sneaky, now=1735689601)
    result = reg.verify(f, now=1735689601)
    assert isinstance(result, SignatureFailure) and "signature-agent" in result.message


def _our_agent_request(key: Ed25519PrivateKey, *, nonce: str | None, expires: int | None, now: int) -> dict[str, str]:
    headers = {"host": "example.com", "Signature-Agent": 'sig1="https://bot.example"'}
    request = SignedRequest.from_url("GET", "https://example.com/page", headers, b"")
    sig_input, sig = sign_request(
        request, key, keyid=RFC_KEYID, created=now, expires=expires, nonce=nonce, label="sig1",
        tag="web-bot-auth", components=("@authority", "signature-agent"),
    )  # fmt: skip
    return {**headers, "Signature-Input": sig_input, "Signature": sig}


def test_signing_an_agent_request_and_single_use_without_nonce(tmp_path: Path) -> None:
    from tokenward.proof.signature import load_private_key

    key = load_private_key("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU")
    reg = _agents(tmp_path, "https://bot.example")  # the dictionary form of Signature-Agent
    now = 1_800_000_000
    headers = _our_agent_request(key, nonce=None, expires=now + 60, now=now)
    first = reg.verify(facts("GET", "https://example.com/page", headers, now=now), now=now)
    again = reg.verify(facts("GET", "https://example.com/page", headers, now=now), now=now + 1)
    assert isinstance(first, SignatureClaims) and isinstance(again, SignatureClaims)
    assert first.nonce == "" and first.consume_key == again.consume_key  # the signature itself is single-use
    assert first.consume_key.startswith(f"sig:{RFC_KEYID}:#")
    no_expiry = _our_agent_request(key, nonce="n" * 20, expires=None, now=now)
    result = reg.verify(facts("GET", "https://example.com/page", no_expiry, now=now), now=now)
    assert isinstance(result, SignatureFailure) and result.code == "signature_invalid"
    assert reg.revocation_op(first) is None  # agents are revoked by editing their directory


def test_bad_directories_are_configuration_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": []}')
    with pytest.raises(ValueError, match="no Ed25519 key"):
        ClientRegistry(ClientsSettings(agents=(AgentSpec(name="a", directory=empty),)))
    with pytest.raises(ValueError, match="cannot read"):
        ClientRegistry(ClientsSettings(agents=(AgentSpec(name="a", directory=tmp_path / "missing.json"),)))
