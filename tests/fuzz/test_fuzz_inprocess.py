"""Issue 12, finding 5 (in-process, for breadth): every header a client controls, and
every policy document, through the functions that parse and verify them and through
``Guard.check``. Whatever comes in, the answer is one of the documented results, never
an exception: proofs are ProofClaims or a ProofFailure with a wire code, signals and
device headers a report or a problem sentence, signatures SignatureClaims or a
SignatureFailure with a wire code, policies a Policy or a PolicyError. The guard's
decisions are checked with the helpers of tests/robustness/test_fuzz_bodies.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.fuzz.strategies import (
    any_text,
    device_headers,
    digests,
    mutate,
    proof_headers,
    signals_headers,
    signature_inputs,
    signatures,
)
from tests.robustness.test_fuzz_bodies import ListLog, check_decision, check_record
from tests.robustness.test_fuzz_bodies import json as any_json

from tokenward.evidence import prepare_evidence
from tokenward.facts import RequestFacts, parse_call
from tokenward.guard import Guard, RequestOutcome
from tokenward.policy import Policy, PolicyError, load_policy, parse_policy
from tokenward.proof import KeyRing, ProofClaims, ProofFailure, issue_challenge, solve, verify_proof
from tokenward.proof.device import DeviceClaim, load_public_key, parse_device_header_unverified
from tokenward.proof.signature import (
    SIGNATURE_CODES,
    SignatureClaims,
    SignatureFailure,
    SignedRequest,
    public_key_b64url,
    signature_tags_unverified,
    signed_keyids_unverified,
    verify_signature,
)
from tokenward.sdk.signing import RequestSigner
from tokenward.signals.browser import BrowserEnv, parse_env
from tokenward.store import MemoryStore

NOW = 1_700_000_000.0
CHAT = "/v1/chat/completions"
ORIGIN = "http://gw.test"
BODY = orjson.dumps({"model": "demo-1", "messages": [{"role": "user", "content": "hello"}]})
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYID = "backend.k1"
POLICY = {
    "proof": {"difficulty": 0},
    "routes": [{"path": CHAT, "api": "openai"}, {"path": "/v1/messages", "api": "anthropic"},
               {"path": "/api/chat", "api": "custom", "signed": "require"}],
    "clients": {"named": [{"name": "backend", "routes": ["*"],
                           "keys": [{"keyid": KEYID, "public_key": public_key_b64url(PRIVATE.public_key())}]}]},
    "limits": [],
}  # fmt: skip
PROOF_CODES = {"proof_invalid", "proof_expired", "route_mismatch", "body_mismatch", "challenge"}
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
KEYS = KeyRing.generate()
REAL = issue_challenge(KEYS, CHAT, 0, 60, NOW)
REAL_PROOF = f"v1.{REAL.token}.{solve(REAL.token, BODY, 0)}"
SCOPED = KEYS.scoped(b"e" * 16)
REAL_SCOPED = f"v1.{issue_challenge(SCOPED, CHAT, 0, 60, NOW).token}.0"


def signer(delta: float = 0.0, nonce: str | None = None) -> RequestSigner:
    return RequestSigner(PRIVATE, KEYID, clock=lambda: NOW + delta, nonce=(lambda: nonce) if nonce else None)


def signed_headers(body: bytes = BODY, delta: float = 0.0, nonce: str | None = None) -> dict[str, str]:
    base = {"content-type": "application/json", "host": "gw.test"}
    return {
        **base,
        **{k.lower(): v for k, v in signer(delta, nonce).headers("POST", ORIGIN + CHAT, base.items(), body).items()},
    }


REAL_SIGNED = signed_headers()
SPKI = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)


def flipped(raw: bytes) -> st.SearchStrategy[bytes]:
    """``raw`` with one byte changed, or cut short."""
    i = st.integers(0, len(raw) - 1)
    return st.one_of(
        st.tuples(i, st.integers(0, 255)).map(lambda t: raw[: t[0]] + bytes([t[1]]) + raw[t[0] + 1 :]),
        i.map(lambda n: raw[:n]),
    )


# -- the parsers and verifiers alone ---------------------------------------------------------


@FUZZ
@given(header=st.one_of(proof_headers(REAL_PROOF), proof_headers(REAL_SCOPED), any_text),
       ring=st.sampled_from([KEYS, SCOPED, KeyRing.generate()]), body=st.sampled_from([BODY, b"", b"{}"]),
       signals=st.one_of(st.none(), st.binary(max_size=50)), now=st.floats(NOW - 1e6, NOW + 1e6))  # fmt: skip
@example(header=REAL_PROOF, ring=KEYS, body=BODY, signals=None, now=NOW)
def test_proof_headers_verify_or_fail_with_a_wire_code(
    header: str, ring: KeyRing, body: bytes, signals: bytes | None, now: float
) -> None:
    result = verify_proof(ring, header, route=CHAT, body=body, signals_header=signals, now=now)
    if isinstance(result, ProofFailure):
        assert result.code in PROOF_CODES and result.message
    else:
        assert isinstance(result, ProofClaims) and len(result.challenge_id) == 16


@FUZZ
@given(value=st.one_of(signals_headers, any_text))
def test_signals_headers_parse_to_a_report_or_a_problem(value: str) -> None:
    env = parse_env(value)
    assert isinstance(env, BrowserEnv | str)


@FUZZ
@given(value=st.one_of(device_headers, any_text), spki=st.one_of(st.binary(max_size=250), flipped(SPKI)))
def test_device_headers_and_keys_parse_to_a_claim_or_a_problem(value: str, spki: bytes) -> None:
    claim = parse_device_header_unverified(value)
    assert isinstance(claim, DeviceClaim | str)
    if isinstance(claim, DeviceClaim):
        assert len(claim.signature) == 64
    key = load_public_key(spki)
    assert isinstance(key, str) or key.curve.name == "secp256r1"


def _verify(headers: dict[str, str], body: bytes = BODY) -> SignatureClaims | SignatureFailure:
    registry = prepare_evidence(POLICY_OBJ).clients
    request = SignedRequest.from_url("POST", ORIGIN + CHAT, headers, body)
    return verify_signature(request, registry, registry.rules, now=NOW)


POLICY_OBJ = parse_policy(POLICY)
signature_sets = st.fixed_dictionaries(
    {},
    optional={"signature-input": st.one_of(signature_inputs, mutate(REAL_SIGNED["signature-input"])),
              "signature": st.one_of(signatures, mutate(REAL_SIGNED["signature"])),
              "content-digest": st.one_of(digests, mutate(REAL_SIGNED["content-digest"]))},
)  # fmt: skip


@FUZZ
@given(fields=signature_sets, keep=st.sets(st.sampled_from(["signature-input", "signature", "content-digest"])))
@example(fields={}, keep={"signature-input", "signature", "content-digest"})
def test_signature_headers_verify_or_fail_with_a_wire_code(fields: dict[str, str], keep: set[str]) -> None:
    headers = {**{k: v for k, v in REAL_SIGNED.items() if k in keep}, **fields}
    result = _verify(headers)
    if isinstance(result, SignatureFailure):
        assert result.code in SIGNATURE_CODES and result.message
    else:
        assert isinstance(result, SignatureClaims) and result.keyid == KEYID
    assert isinstance(signature_tags_unverified(headers), list)
    assert all(isinstance(k, str) for k in signed_keyids_unverified(headers))


@FUZZ
@given(delta=st.floats(-100, 100), nonce=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
       exclude_characters='"\\'), min_size=1, max_size=200), body=st.binary(max_size=64))  # fmt: skip
def test_real_signatures_at_any_time_with_any_nonce(delta: float, nonce: str, body: bytes) -> None:
    """Past the signature check: the validity window, nonce rules and the digest."""
    result = _verify(signed_headers(body, delta, nonce), body)
    assert isinstance(result, SignatureClaims | SignatureFailure)
    if isinstance(result, SignatureFailure):
        assert result.code in {"signature_expired", "signature_invalid"}, result


# -- policy documents ------------------------------------------------------------------------

TOP = sorted(Policy.model_fields)
GOOD = yaml.safe_load((Path(__file__).resolve().parent.parent / "policies" / "good" / "full.yaml").read_text())


def _replace(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node found by following ``path`` (indices into keys/items) replaced."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    if isinstance(doc, dict):
        key = sorted(doc, key=str)[path[0] % len(doc)]
        return {**doc, key: _replace(doc[key], path[1:], value)}
    i = path[0] % len(doc)
    return [*doc[:i], _replace(doc[i], path[1:], value), *doc[i + 1 :]]


documents = st.one_of(
    any_json,
    st.dictionaries(st.sampled_from(TOP), any_json, max_size=6),
    st.builds(_replace, st.just(GOOD), st.lists(st.integers(0, 50), min_size=1, max_size=5), any_json),
)


@FUZZ
@given(doc=documents)
@example(doc={"routes": [{"path": "/a"}, {"path": "/a"}]})
@example(doc={"proof": {"keys_file": 1}})
def test_any_policy_document_is_a_policy_or_a_policy_error(doc: Any, monkeypatch_env: None) -> None:
    try:
        assert isinstance(parse_policy(doc), Policy)
    except PolicyError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)


@FUZZ
@given(text=st.one_of(any_text, documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                      documents.map(lambda d: orjson.dumps(d).decode())))  # fmt: skip
@example(text="routes: [*a]")
@example(text="!!python/object:os.system {}")
@example(text="a: &x [*x]")
def test_any_policy_file_loads_or_is_a_policy_error(text: str, tmp_path: Path, monkeypatch_env: None) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, errors="surrogatepass")
    try:
        assert isinstance(load_policy(path), Policy)
    except PolicyError as exc:
        assert exc.problems


@pytest.fixture(scope="module")
def monkeypatch_env() -> Iterator[None]:
    """full.yaml reads an upstream key from the environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENWARD_TEST_UPSTREAM_KEY", "sk-test")
        yield


# -- all of them through Guard.check ----------------------------------------------------------


class Rig:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.log = ListLog()
        self.clock = NOW
        self.guard = Guard(POLICY_OBJ, store=MemoryStore(clock=lambda: self.clock), keys=KEYS, log=self.log,
                           clock=lambda: self.clock)  # fmt: skip
        self.sequence = 0

    def judge(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.loop.run_until_complete(self._judge(path, headers, body))

    async def _judge(self, path: str, headers: dict[str, str], body: bytes) -> None:
        guard = self.guard
        self.sequence += 1
        self.clock += 0.37
        route = guard.policy.route_for(path)
        assert route is not None
        headers = {"content-type": "application/json", "host": "gw.test", **headers}
        parsed = parse_call(route.api, body)
        facts = RequestFacts(
            request_id=f"r{self.sequence}", received_at=self.clock, method="POST", path=path,
            client_ip=f"203.0.113.{self.sequence % 200}", headers=headers,
            raw_headers=[(k.encode(), v.encode("utf-8", "surrogatepass")) for k, v in headers.items()], body=body,
            route=route, call=None if isinstance(parsed, str) else parsed,
            problem=parsed if isinstance(parsed, str) else None,
        )  # fmt: skip
        decision = await guard.check(facts)
        outcome = RequestOutcome()
        outcome.status = decision.status
        if decision.forwards:
            outcome.upstream_status = 200
        await guard.finish(facts, decision, outcome, decision_ms=0.5, total_ms=1.0)
        await guard.settled()
        check_decision(decision, route.api)
        check_record(self.log.records[-1], facts.request_id)

    def fresh_proof(self, path: str, body: bytes) -> str:
        c = self.guard.challenge_for(self.guard.policy.route_for(path))  # type: ignore[arg-type]
        return f"v1.{c.token}.{solve(c.token, body, 0)}"


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.loop.run_until_complete(r.guard.close())
    r.loop.close()


request_headers = st.fixed_dictionaries(
    {},
    optional={"tokenward-proof": proof_headers(), "tokenward-signals": signals_headers,
              "tokenward-device": device_headers, "signature-input": signature_inputs, "signature": signatures,
              "content-digest": digests},
)  # fmt: skip


@FUZZ
@given(headers=request_headers, path=st.sampled_from([CHAT, "/v1/messages", "/api/chat"]),
       proved=st.booleans(), signed=st.booleans())  # fmt: skip
def test_any_headers_through_the_guard(
    rig: Rig, headers: dict[str, str], path: str, proved: bool, signed: bool
) -> None:
    base: dict[str, str] = {}
    if signed:
        url = ORIGIN + path
        plain = {"content-type": "application/json", "host": "gw.test"}
        base.update(
            {k.lower(): v for k, v in signer(rig.clock - NOW + 0.37).headers("POST", url, plain.items(), BODY).items()}
        )
    if proved:
        base["tokenward-proof"] = rig.fresh_proof(path, BODY)
    rig.judge(path, {**base, **headers}, BODY)
