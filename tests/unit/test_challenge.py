"""Signed challenges and body-bound proof-of-work (DESIGN.md §3.1, §3.2)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from tokenward.proof import (
    Challenge,
    Key,
    KeyRing,
    KeyRingError,
    ProofClaims,
    ProofFailure,
    issue_challenge,
    solve,
    verify_proof,
)
from tokenward.proof.challenge import MAX_DIFFICULTY, leading_zero_bits, proof_hash

NOW = 1_700_000_000.0
ROUTE = "/v1/chat/completions"
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
SIGNALS = b"eyJ3ZWJkcml2ZXIiOmZhbHNlfQ"
B64URL_NO_PAD = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture(scope="module")
def keys() -> KeyRing:
    return KeyRing.generate()


def independent_hash(challenge: str, body: bytes, signals: bytes | None, nonce: int) -> bytes:
    """DESIGN.md §3.2 written out with hashlib only, without any tokenward helper."""
    body_sha = hashlib.sha256(body).digest()
    signals_sha = hashlib.sha256(signals if signals is not None else b"").digest()
    return hashlib.sha256(
        challenge.encode("utf-8") + b"\x00" + body_sha + signals_sha + nonce.to_bytes(8, "big")
    ).digest()


def zero_bits(digest: bytes) -> int:
    bits = "".join(f"{byte:08b}" for byte in digest)
    return len(bits) - len(bits.lstrip("0"))


def header(challenge: Challenge | str, nonce: int) -> str:
    token = challenge.token if isinstance(challenge, Challenge) else challenge
    return f"v1.{token}.{nonce}"


def verify(keys: KeyRing, proof: str, **overrides: object) -> ProofClaims | ProofFailure:
    args: dict[str, object] = {
        "route": ROUTE,
        "body": BODY,
        "signals_header": None,
        "now": NOW + 1,
    }
    args.update(overrides)
    return verify_proof(keys, proof, **args)  # type: ignore[arg-type]


def failure_code(result: ProofClaims | ProofFailure) -> str:
    assert isinstance(result, ProofFailure), f"expected a failure, got {result}"
    assert result.message
    return result.code


def solved_where(
    keys: KeyRing,
    difficulty: int,
    *,
    body: bytes = BODY,
    signals: bytes | None = None,
    fails_for: tuple[bytes, bytes | None] | None = None,
) -> tuple[Challenge, int]:
    """A solved challenge whose nonce does *not* also happen to satisfy ``fails_for``
    (body, signals): with a random challenge that has probability 2^-difficulty, and
    the test must not depend on luck."""
    while True:
        c = issue_challenge(keys, ROUTE, difficulty, ttl=120, now=NOW)
        nonce = solve(c.token, body, difficulty, signals)
        if fails_for is None:
            return c, nonce
        other_body, other_signals = fails_for
        if zero_bits(independent_hash(c.token, other_body, other_signals, nonce)) < difficulty:
            return c, nonce


# -- round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", range(13))
def test_round_trip_is_allowed(keys: KeyRing, difficulty: int) -> None:
    c = issue_challenge(keys, ROUTE, difficulty, ttl=120, now=NOW)
    nonce = solve(c.token, BODY, difficulty)
    result = verify(keys, header(c, nonce))
    assert isinstance(result, ProofClaims), result
    assert result.challenge_id == c.challenge_id
    assert result.difficulty == difficulty
    assert result.nonce == nonce
    assert result.kid == keys.signing.kid
    assert result.issued_at == c.issued_at == NOW
    assert result.expires_at == c.expires_at == NOW + 120


def test_round_trip_with_signals_header(keys: KeyRing) -> None:
    c = issue_challenge(keys, ROUTE, 8, ttl=120, now=NOW)
    nonce = solve(c.token, BODY, 8, SIGNALS)
    assert isinstance(verify(keys, header(c, nonce), signals_header=SIGNALS), ProofClaims)


def test_round_trip_with_empty_body(keys: KeyRing) -> None:
    c = issue_challenge(keys, ROUTE, 8, ttl=120, now=NOW)
    nonce = solve(c.token, b"", 8)
    assert isinstance(verify(keys, header(c, nonce), body=b""), ProofClaims)


def test_each_challenge_is_different(keys: KeyRing) -> None:
    a = issue_challenge(keys, ROUTE, 8, ttl=120, now=NOW)
    b = issue_challenge(keys, ROUTE, 8, ttl=120, now=NOW)
    assert a.token != b.token
    assert a.challenge_id != b.challenge_id


@pytest.mark.parametrize("difficulty", [-1, MAX_DIFFICULTY + 1, 99])
def test_issue_refuses_out_of_range_difficulty(keys: KeyRing, difficulty: int) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        issue_challenge(keys, ROUTE, difficulty, ttl=120, now=NOW)


# -- wire shape ---------------------------------------------------------------------------


def test_token_is_b64url_without_dots_or_padding(keys: KeyRing) -> None:
    for _ in range(20):
        token = issue_challenge(keys, ROUTE, 16, ttl=120, now=NOW).token
        assert B64URL_NO_PAD.match(token), token
        assert "." not in token and "=" not in token


def test_to_wire_has_exactly_the_pinned_keys(keys: KeyRing) -> None:
    c = issue_challenge(keys, ROUTE, 12, ttl=90, now=NOW + 0.7)
    wire = c.to_wire()
    assert set(wire) == {"v", "challenge", "difficulty", "expires_at"}
    assert wire["v"] == 1
    assert wire["challenge"] == c.token
    assert wire["difficulty"] == 12
    assert isinstance(wire["expires_at"], int)
    assert wire["expires_at"] == int(NOW + 90.7)


# -- the proof hash matches an independent implementation of §3.2 -------------------------


@pytest.mark.parametrize("signals", [None, SIGNALS])
def test_proof_hash_matches_the_spec(keys: KeyRing, signals: bytes | None) -> None:
    c = issue_challenge(keys, ROUTE, 10, ttl=120, now=NOW)
    nonce = solve(c.token, BODY, 10, signals)
    digest = independent_hash(c.token, BODY, signals, nonce)
    assert zero_bits(digest) >= 10
    signals_sha = hashlib.sha256(signals or b"").digest()
    assert proof_hash(c.token, hashlib.sha256(BODY).digest(), signals_sha, nonce) == digest


def test_server_accepts_a_nonce_found_by_an_independent_solver(keys: KeyRing) -> None:
    c = issue_challenge(keys, ROUTE, 10, ttl=120, now=NOW)
    nonce = next(n for n in range(1 << 24) if zero_bits(independent_hash(c.token, BODY, None, n)) >= 10)
    assert isinstance(verify(keys, header(c, nonce)), ProofClaims)


def test_nonce_is_big_endian_across_all_eight_bytes(keys: KeyRing) -> None:
    # A large nonce exercises the high bytes; difficulty 0 accepts any nonce, so the
    # header itself proves the parser reads the full 64-bit range.
    c = issue_challenge(keys, ROUTE, 0, ttl=120, now=NOW)
    result = verify(keys, header(c, 2**64 - 1))
    assert isinstance(result, ProofClaims)
    assert result.nonce == 2**64 - 1


@pytest.mark.parametrize(
    ("digest", "bits"),
    [
        (b"\xff" + b"\x00" * 31, 0),
        (b"\x00\x80" + b"\x00" * 30, 8),
        (b"\x00\x01" + b"\x00" * 30, 15),
    ],
)
def test_leading_zero_bits(digest: bytes, bits: int) -> None:
    assert leading_zero_bits(digest) == bits == zero_bits(digest)


def test_leading_zero_bits_of_all_zeros() -> None:
    assert leading_zero_bits(b"\x00" * 32) == 256


# -- failures, cheapest check first -----------------------------------------------------


def malformed_headers(token: str) -> list[str]:
    return [
        "",
        "garbage",
        f"v2.{token}.1",
        f"V1.{token}.1",
        f"{token}.1",
        f"v1.{token}",
        f"v1.{token}.1.2",
        f"v1..{token}.1",
        f"v1.{token}.",
        f"v1.{token}.-1",
        f"v1.{token}.+1",
        f"v1.{token}.1e3",
        f"v1.{token}.0x10",
        f"v1.{token}.١٢",  # non-ASCII digits
        f"v1.{token}.{2**64}",
        f"v1.{token}.{'9' * 40}",
        f"v1.{token[:-1]}.1",
        f"v1.{token}A.1",
        f"v1.{'!' * len(token)}.1",
        f"v1.{token[:-4]}@@@@.1",
        f"v1.{'A' * len(token)}.1",
    ]


def test_malformed_headers_are_proof_invalid(keys: KeyRing) -> None:
    c = issue_challenge(keys, ROUTE, 0, ttl=120, now=NOW)
    for bad in malformed_headers(c.token):
        assert failure_code(verify(keys, bad)) == "proof_invalid", bad


def flip_bit(token: str, bit: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[bit // 8] ^= 1 << (bit % 8)
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_a_flipped_bit_anywhere_in_the_token_is_proof_invalid(keys: KeyRing) -> None:
    # Difficulty 0 makes every nonce a valid proof of work, so only the MAC can refuse.
    c = issue_challenge(keys, ROUTE, 0, ttl=120, now=NOW)
    raw_bits = len(base64.urlsafe_b64decode(c.token + "==")) * 8
    assert raw_bits == 82 * 8
    for bit in range(raw_bits):
        assert failure_code(verify(keys, header(flip_bit(c.token, bit), 0))) == "proof_invalid"


def test_a_scoped_token_verifies_only_under_its_epoch(keys: KeyRing) -> None:
    """A ring scoped to an epoch (the memory store's lifetime) signs two tags: the key's
    own, then the epoch's. A bit flipped in the claims or the key's tag: not ours. In the
    epoch's tag, or verified under another epoch or none: ours, but from another run."""
    ring = keys.scoped(b"epoch-one")
    c = issue_challenge(ring, ROUTE, 0, ttl=120, now=NOW)
    assert isinstance(verify(ring, header(c, 0)), ProofClaims)
    assert failure_code(verify(keys.scoped(b"epoch-two"), header(c, 0))) == "proof_expired"
    assert failure_code(verify(keys, header(c, 0))) == "proof_expired"
    raw_bits = len(base64.urlsafe_b64decode(c.token + "==")) * 8
    epoch_tag_from = raw_bits - 8 * 16  # the last 16 bytes
    for bit in range(raw_bits):
        want = "proof_expired" if bit >= epoch_tag_from else "proof_invalid"
        assert failure_code(verify(ring, header(flip_bit(c.token, bit), 0))) == want, bit


def test_mac_is_checked_before_expiry_route_and_work(keys: KeyRing) -> None:
    c = issue_challenge(keys, ROUTE, 20, ttl=120, now=NOW)
    forged = flip_bit(c.token, 8 * 30)  # inside the claims
    result = verify(keys, header(forged, 0), now=NOW + 10_000, route="/elsewhere", body=b"x")
    assert failure_code(result) == "proof_invalid"


def test_expired_proof_is_refused(keys: KeyRing) -> None:
    c, nonce = solved_where(keys, 8)
    assert isinstance(verify(keys, header(c, nonce), now=c.expires_at - 0.001), ProofClaims)
    assert failure_code(verify(keys, header(c, nonce), now=c.expires_at)) == "proof_expired"
    assert failure_code(verify(keys, header(c, nonce), now=c.expires_at + 3600)) == "proof_expired"


def test_proof_for_another_route_is_route_mismatch(keys: KeyRing) -> None:
    c, nonce = solved_where(keys, 8)
    result = verify(keys, header(c, nonce), route="/v1/messages")
    assert failure_code(result) == "route_mismatch"


def test_other_body_is_body_mismatch(keys: KeyRing) -> None:
    other = BODY.replace(b"hi", b"ho")
    c, nonce = solved_where(keys, 16, fails_for=(other, None))
    assert failure_code(verify(keys, header(c, nonce), body=other)) == "body_mismatch"


def test_other_signals_header_is_body_mismatch(keys: KeyRing) -> None:
    c, nonce = solved_where(keys, 16, signals=SIGNALS, fails_for=(BODY, b"eyJ9"))
    assert failure_code(verify(keys, header(c, nonce), signals_header=b"eyJ9")) == "body_mismatch"


def test_dropped_signals_header_is_body_mismatch(keys: KeyRing) -> None:
    c, nonce = solved_where(keys, 16, signals=SIGNALS, fails_for=(BODY, None))
    assert failure_code(verify(keys, header(c, nonce), signals_header=None)) == "body_mismatch"


def test_wrong_nonce_is_body_mismatch(keys: KeyRing) -> None:
    while True:
        c, nonce = solved_where(keys, 16)
        wrong = nonce + 1
        if zero_bits(independent_hash(c.token, BODY, None, wrong)) < 16:
            break
    assert failure_code(verify(keys, header(c, wrong))) == "body_mismatch"


def test_min_difficulty_above_the_tokens_is_challenge(keys: KeyRing) -> None:
    c, nonce = solved_where(keys, 4)
    assert isinstance(verify(keys, header(c, nonce), min_difficulty=4), ProofClaims)
    assert failure_code(verify(keys, header(c, nonce), min_difficulty=5)) == "challenge"


def test_header_whitespace_around_the_value_is_tolerated(keys: KeyRing) -> None:
    c, nonce = solved_where(keys, 4)
    assert isinstance(verify(keys, f"  {header(c, nonce)} "), ProofClaims)


# -- key rotation ---------------------------------------------------------------------------


def test_token_from_an_old_key_verifies_while_the_old_key_is_kept() -> None:
    old = KeyRing.generate()
    new = KeyRing.generate()
    c = issue_challenge(old, ROUTE, 4, ttl=120, now=NOW)
    proof = header(c, solve(c.token, BODY, 4))
    rotated = KeyRing([new.signing, old.signing])
    result = verify(rotated, proof)
    assert isinstance(result, ProofClaims)
    assert result.kid == old.signing.kid
    assert failure_code(verify(new, proof)) == "proof_invalid"


def test_rotated_ring_signs_with_the_first_key() -> None:
    old, new = KeyRing.generate(), KeyRing.generate()
    rotated = KeyRing([new.signing, old.signing])
    c = issue_challenge(rotated, ROUTE, 0, ttl=120, now=NOW)
    assert isinstance(verify(new, header(c, 0)), ProofClaims)
    assert failure_code(verify(old, header(c, 0))) == "proof_invalid"


def test_same_key_id_with_another_secret_is_proof_invalid() -> None:
    real = KeyRing.generate()
    c = issue_challenge(real, ROUTE, 0, ttl=120, now=NOW)
    impostor = KeyRing([Key(secret=b"\x01" * 32, kid=real.signing.kid)])
    assert failure_code(verify(impostor, header(c, 0))) == "proof_invalid"


# -- keys --------------------------------------------------------------------------------------


def encode(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).rstrip(b"=").decode()


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_from_secret_refuses_wrong_sizes(size: int) -> None:
    with pytest.raises(KeyRingError, match="32 bytes"):
        Key.from_secret(b"k" * size)


@pytest.mark.parametrize(
    "text",
    [encode(b"k" * 31), encode(b"k" * 33), encode(b"k" * 16), "a", "abcde", "%%%%"],
)
def test_key_strings_of_the_wrong_size_or_alphabet_are_refused(text: str) -> None:
    with pytest.raises(KeyRingError):
        KeyRing.from_strings([text])


def test_key_error_names_where_the_key_came_from() -> None:
    with pytest.raises(KeyRingError, match=r"TOKENWARD_KEYS\[1\]"):
        KeyRing.from_strings([encode(b"a" * 32), "short"], where="TOKENWARD_KEYS")


def test_key_ring_needs_a_key() -> None:
    with pytest.raises(KeyRingError):
        KeyRing([])
    with pytest.raises(KeyRingError):
        KeyRing.from_strings(["", "# only a comment"])


def test_key_ring_refuses_the_same_key_twice() -> None:
    text = encode(b"s" * 32)
    with pytest.raises(KeyRingError, match="twice"):
        KeyRing.from_strings([text, text])


def test_key_ids_are_derived_from_the_secret() -> None:
    a = KeyRing.from_strings([encode(b"a" * 32)])
    b = KeyRing.from_strings([encode(b"a" * 32)])
    c = KeyRing.from_strings([encode(b"c" * 32)])
    assert a.signing.kid == b.signing.kid != c.signing.kid
    assert len(a.signing.kid) == 4


def test_padded_and_unpadded_keys_decode_alike() -> None:
    secret = b"p" * 32
    padded = base64.urlsafe_b64encode(secret).decode()
    assert padded.endswith("=")
    assert KeyRing.from_strings([padded]).signing.secret == secret
    assert KeyRing.from_strings([encode(secret)]).signing.secret == secret


def test_reprs_never_show_the_secret() -> None:
    secret = b"\x07" * 32
    ring = KeyRing.from_strings([encode(secret)])
    for text in (repr(ring), repr(ring.signing), str(ring.signing), str(ring)):
        assert encode(secret) not in text
        assert secret.hex() not in text
        assert repr(secret) not in text
        assert ring.signing.kid.hex() in text


def test_key_ring_from_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    new, old = b"n" * 32, b"o" * 32
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2025-01-01\n\n{encode(new)}\n  # the old key, drop later\n{encode(old)}\n")
    path.chmod(0o600)  # key files readable by others are refused
    ring = KeyRing.from_file(path)
    assert ring.signing.secret == new
    assert ring.get(Key.from_secret(old).kid) is not None


def test_key_ring_from_missing_file_is_a_key_ring_error(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError, match="cannot read"):
        KeyRing.from_file(tmp_path / "absent")


def test_key_ring_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENWARD_TEST_KEYS", raising=False)
    assert KeyRing.from_env("TOKENWARD_TEST_KEYS") is None
    monkeypatch.setenv("TOKENWARD_TEST_KEYS", f"{encode(b'1' * 32)}, {encode(b'2' * 32)}")
    ring = KeyRing.from_env("TOKENWARD_TEST_KEYS")
    assert ring is not None
    assert ring.signing.secret == b"1" * 32
