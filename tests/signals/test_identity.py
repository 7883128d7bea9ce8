"""AccountResolver (PyJWT, JWKS, trusted headers) and identity_signals."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import ValidationError

from tokenward.decision import Signal
from tokenward.facts import RequestFacts
from tokenward.signals import identity as identity_mod
from tokenward.signals.identity import (
    IDENTITY_WEIGHTS,
    Account,
    AccountProblem,
    AccountResolver,
    IdentityConfigError,
    IdentitySettings,
    IdentityStats,
    email_is_disposable,
    identity_signals,
    is_new_account,
)

NOW = 1_750_000_000.0
SECRET = "k" * 40
DAY = 86_400


def facts_with(headers: dict[str, str]) -> RequestFacts:
    return RequestFacts(
        request_id="t",
        received_at=NOW,
        method="POST",
        path="/api/chat",
        client_ip="198.51.100.7",
        headers=headers,
        raw_headers=tuple((k.encode(), v.encode()) for k, v in headers.items()),
        body=b"{}",
        route=None,
    )


def bearer(token: str) -> RequestFacts:
    return facts_with({"authorization": f"Bearer {token}"})


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "user-42", "email": "ada@example.com", "exp": int(NOW) + 3600, "iat": int(NOW) - 60, **extra}


def hs_settings(**jwt_extra: Any) -> IdentitySettings:
    return IdentitySettings.model_validate({"jwt": {"algorithms": ["HS256"], "key": SECRET, **jwt_extra}})


def names(signals: list[Signal]) -> set[str]:
    return {s.name for s in signals}


# --------------------------------------------------------------------------------------
# JWT
# --------------------------------------------------------------------------------------
def test_hs256_account_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = AccountResolver(hs_settings(created_at_claim="created_at"))
    token = jwt.encode(claims(created_at="2025-06-14T12:00:00Z"), SECRET, algorithm="HS256")
    calls = 0
    real_decode = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(identity_mod.jwt, "decode", counting)
    account = resolver.resolve(bearer(token), now=NOW)
    assert isinstance(account, Account)
    assert (account.id, account.email, account.source) == ("user-42", "ada@example.com", "jwt")
    assert account.created_at == datetime(2025, 6, 14, 12, tzinfo=UTC).timestamp()
    assert account.claims["sub"] == "user-42"
    assert resolver.resolve(bearer(token), now=NOW) == account
    assert calls == 1  # verified once, then served from the cache
    # ...but validity times are checked on every call against the given clock.
    assert resolver.resolve(bearer(token), now=NOW + 3600 + 31) == AccountProblem("expired", "the token has expired")


def test_validity_times_with_leeway() -> None:
    resolver = AccountResolver(hs_settings(leeway=30))

    def at(now: float, **c: Any) -> Account | AccountProblem | None:
        return resolver.resolve(bearer(jwt.encode(claims(**c), SECRET, algorithm="HS256")), now=now)

    assert isinstance(at(NOW, exp=int(NOW) - 10), Account)  # within leeway
    assert at(NOW, exp=int(NOW) - 31) == AccountProblem("expired", "the token has expired")
    assert isinstance(at(NOW, nbf=int(NOW) + 20), Account)
    assert at(NOW, nbf=int(NOW) + 60) == AccountProblem("not-yet-valid", "the token is not valid yet")
    assert at(NOW, iat=int(NOW) + 600) == AccountProblem("not-yet-valid", "the token is not valid yet")
    assert at(NOW, exp="tomorrow") == AccountProblem("malformed", "exp is not a number")


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (jwt.encode(claims(), "x" * 40, algorithm="HS256"), "bad-signature"),
        (jwt.encode(claims(), None, algorithm="none"), "bad-algorithm"),
        (jwt.encode(claims(), SECRET * 2, algorithm="HS512"), "bad-algorithm"),
        (jwt.encode({"sub": "u"}, SECRET, algorithm="HS256"), "missing-claim"),
        (jwt.encode({"exp": int(NOW) + 60}, SECRET, algorithm="HS256"), "no-subject"),
        ("aaa.bbb.ccc", "malformed"),
    ],
)
def test_tokens_that_cannot_be_believed(token: str, code: str) -> None:
    result = AccountResolver(hs_settings()).resolve(bearer(token), now=NOW)
    assert isinstance(result, AccountProblem) and result.code == code


def test_audience_and_issuer() -> None:
    resolver = AccountResolver(hs_settings(audience=["chat.example.com"], issuer="https://auth.example.com/"))
    good = claims(aud="chat.example.com", iss="https://auth.example.com/")
    assert isinstance(resolver.resolve(bearer(jwt.encode(good, SECRET)), now=NOW), Account)
    wrong_aud = jwt.encode({**good, "aud": "other"}, SECRET)
    assert resolver.resolve(bearer(wrong_aud), now=NOW) == AccountProblem(
        "bad-audience", "the token is for another audience"
    )
    wrong_iss = jwt.encode({**good, "iss": "https://evil.example/"}, SECRET)
    assert isinstance(resolver.resolve(bearer(wrong_iss), now=NOW), AccountProblem)
    # A token with an audience needs one configured (PyJWT refuses it otherwise).
    assert AccountResolver(hs_settings()).resolve(bearer(jwt.encode(good, SECRET)), now=NOW) == AccountProblem(
        "bad-audience", "the token is for another audience"
    )


def test_where_tokens_come_from() -> None:
    token = jwt.encode(claims(), SECRET)
    resolver = AccountResolver(hs_settings(cookie="session"))
    assert resolver.resolve(facts_with({}), now=NOW) is None
    # An opaque API key is not a JWT credential.
    assert resolver.resolve(bearer("sk-proj-abcdef"), now=NOW) is None
    assert isinstance(resolver.resolve(facts_with({"cookie": f"theme=dark; session={token}"}), now=NOW), Account)
    custom = AccountResolver(hs_settings(header="X-Session-Token"))
    assert isinstance(custom.resolve(facts_with({"x-session-token": token}), now=NOW), Account)


def test_rs256_from_a_pem_file(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    cfg = IdentitySettings.model_validate({"jwt": {"algorithms": ["RS256"], "key_file": str(tmp_path / "pub.pem")}})
    resolver = AccountResolver(cfg)
    assert isinstance(resolver.resolve(bearer(jwt.encode(claims(), private, algorithm="RS256")), now=NOW), Account)
    # Key confusion: an HS256 token "signed" with the public key as a secret.
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps(claims()).encode())
    signature = jwt.utils.base64url_encode(hmac.new(pem, header + b"." + payload, hashlib.sha256).digest())
    token = b".".join([header, payload, signature]).decode()
    assert resolver.resolve(bearer(token), now=NOW) == AccountProblem("bad-algorithm", "algorithm not accepted")
    # A public key cannot verify an algorithm of another family.
    with pytest.raises(IdentityConfigError, match="cannot verify ES256"):
        AccountResolver(
            IdentitySettings.model_validate({"jwt": {"algorithms": ["ES256"], "key_file": str(tmp_path / "pub.pem")}})
        )


def test_es256_from_a_local_jwks_file(tmp_path: Path) -> None:
    keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("2025-a", "2025-b")}
    jwks = {"keys": []}
    for kid, key in keys.items():
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        jwks["keys"].append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    cfg = IdentitySettings.model_validate({"jwt": {"algorithms": ["ES256"], "jwks_file": str(path)}})
    resolver = AccountResolver(cfg)
    for kid, key in keys.items():
        token = jwt.encode(claims(sub=kid), key, algorithm="ES256", headers={"kid": kid})
        account = resolver.resolve(bearer(token), now=NOW)
        assert isinstance(account, Account) and account.id == kid
    stray = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "old"})
    assert resolver.resolve(bearer(stray), now=NOW) == AccountProblem("unknown-key", "no key with kid 'old'")
    wrong = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "2025-a"})
    assert resolver.resolve(bearer(wrong), now=NOW) == AccountProblem("bad-signature", "the signature does not verify")
    (tmp_path / "bad.json").write_text('{"keys": "nope"}')
    with pytest.raises(IdentityConfigError, match="JWKS"):
        AccountResolver(
            IdentitySettings.model_validate({"jwt": {"algorithms": ["ES256"], "jwks_file": str(tmp_path / "bad.json")}})
        )


def test_eddsa_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("TW_TEST_JWT_KEY", pem.decode())
    cfg = IdentitySettings.model_validate({"jwt": {"algorithms": ["EdDSA"], "key_env": "TW_TEST_JWT_KEY"}})
    token = jwt.encode(claims(), private, algorithm="EdDSA")
    assert isinstance(AccountResolver(cfg).resolve(bearer(token), now=NOW), Account)
    monkeypatch.delenv("TW_TEST_JWT_KEY")
    with pytest.raises(IdentityConfigError, match="TW_TEST_JWT_KEY is not set"):
        AccountResolver(cfg)


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(IdentityConfigError, match="at least 32 bytes"):
        AccountResolver(IdentitySettings.model_validate({"jwt": {"algorithms": ["HS256"], "key": "short"}}))
    with pytest.raises(ValidationError, match="cannot be mixed"):
        IdentitySettings.model_validate({"jwt": {"algorithms": ["HS256", "RS256"], "key": SECRET}})
    with pytest.raises(ValidationError, match="exactly one"):
        IdentitySettings.model_validate({"jwt": {"algorithms": ["HS256"]}})
    with pytest.raises(ValidationError, match="exactly one"):
        IdentitySettings.model_validate({"jwt": {"algorithms": ["HS256"], "key": SECRET, "key_env": "X"}})
    with pytest.raises(ValidationError, match="unknown algorithm"):
        IdentitySettings.model_validate({"jwt": {"algorithms": ["HS1"], "key": SECRET}})
    with pytest.raises(ValidationError):
        IdentitySettings.model_validate({"jwt": {"algorithms": ["HS256"], "key": SECRET, "verify": False}})
    with pytest.raises(IdentityConfigError, match=r"missing\.pem"):
        AccountResolver(
            IdentitySettings.model_validate(
                {"jwt": {"algorithms": ["RS256"], "key_file": str(tmp_path / "missing.pem")}}
            )
        )
    with pytest.raises(IdentityConfigError, match="not a PEM"):
        AccountResolver(IdentitySettings.model_validate({"jwt": {"algorithms": ["RS256"], "key": "-----BEGIN nope"}}))
    # The secret never shows in a repr.
    assert SECRET not in repr(hs_settings())


# --------------------------------------------------------------------------------------
# Trusted headers
# --------------------------------------------------------------------------------------
def test_trusted_headers() -> None:
    cfg = IdentitySettings.model_validate(
        {"header": {"id": "X-User-Id", "email": "x-user-email", "created_at": "x-user-created"}}
    )
    resolver = AccountResolver(cfg)
    facts = facts_with({"x-user-id": "u-7", "x-user-email": "bob@example.com", "x-user-created": str(int(NOW) - 60)})
    account = resolver.resolve(facts, now=NOW, via_trusted_proxy=True)
    assert account == Account(id="u-7", email="bob@example.com", created_at=NOW - 60, source="header")
    spoofed = resolver.resolve(facts, now=NOW, via_trusted_proxy=False)
    assert isinstance(spoofed, AccountProblem) and spoofed.code == "untrusted-header"
    assert names(identity_signals(spoofed, facts, cfg, now=NOW)) == {"identity/spoofed-header"}
    always = AccountResolver(IdentitySettings.model_validate({"header": {"id": "x-user-id", "trust": "always"}}))
    assert isinstance(always.resolve(facts, now=NOW), Account)
    assert resolver.resolve(facts_with({}), now=NOW, via_trusted_proxy=True) is None


def test_jwt_wins_over_headers() -> None:
    cfg = IdentitySettings.model_validate(
        {"jwt": {"algorithms": ["HS256"], "key": SECRET}, "header": {"id": "x-user-id", "trust": "always"}}
    )
    resolver = AccountResolver(cfg)
    both = facts_with({"authorization": f"Bearer {jwt.encode(claims(), SECRET)}", "x-user-id": "other"})
    account = resolver.resolve(both, now=NOW)
    assert isinstance(account, Account) and account.id == "user-42"
    assert resolver.resolve(facts_with({"x-user-id": "other"}), now=NOW) == Account(id="other", source="header")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NOW, NOW),
        (NOW * 1000, NOW),  # milliseconds
        (str(int(NOW)), NOW),
        ("2025-06-15T15:06:40Z", 1_750_000_000.0),
        ("2025-06-15T17:06:40+02:00", 1_750_000_000.0),
        ("2025-06-15T15:06:40", None),  # no zone: not evidence
        ("yesterday", None),
        (True, None),
    ],
)
def test_created_at_formats(value: Any, expected: float | None) -> None:
    assert identity_mod._created_at(value) == expected


# --------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------
def test_problem_signals() -> None:
    cfg = IdentitySettings()
    facts = facts_with({})
    for code, name in [
        ("expired", "identity/expired-token"),
        ("not-yet-valid", "identity/expired-token"),
        ("bad-signature", "identity/invalid-token"),
        ("malformed", "identity/invalid-token"),
        ("unknown-key", "identity/invalid-token"),
    ]:
        sig = identity_signals(AccountProblem(code), facts, cfg, now=NOW)
        assert [(s.name, s.evidence["reason"]) for s in sig] == [(name, code)]
    assert identity_signals(None, facts, cfg, now=NOW) == []
    assert names(identity_signals(None, facts, IdentitySettings(expect_account=True), now=NOW)) == {
        "identity/no-account"
    }


def test_account_signals() -> None:
    cfg = IdentitySettings(extra_disposable_domains=("burner.example",), allowed_email_domains=("mailinator.com",))
    facts = facts_with({})
    old = Account(id="a", email="ada@example.com", created_at=NOW - 400 * DAY)
    assert identity_signals(old, facts, cfg, now=NOW) == []
    fresh = Account(id="b", email="b@example.com", created_at=NOW - 300)
    sig = identity_signals(fresh, facts, cfg, now=NOW)
    assert [(s.name, s.evidence["age_s"]) for s in sig] == [("identity/new-account", 300)]
    unknown_age = Account(id="c")
    assert identity_signals(unknown_age, facts, cfg, now=NOW) == []
    burner = Account(id="d", email="x@mx.burner.example")
    assert [(s.name, s.evidence["domain"]) for s in identity_signals(burner, facts, cfg, now=NOW)] == [
        ("identity/disposable-email", "burner.example")
    ]


def test_disposable_email_uses_the_maintained_list() -> None:
    cfg = IdentitySettings()
    assert email_is_disposable("someone@mailinator.com", cfg) == "mailinator.com"
    assert email_is_disposable("Someone@10MinuteMail.com", cfg) == "10minutemail.com"
    assert email_is_disposable("someone@gmail.com", cfg) is None
    assert email_is_disposable("someone@example.com", cfg) is None
    assert email_is_disposable("not-an-email", cfg) is None
    allow = IdentitySettings(allowed_email_domains=("mailinator.com",))
    assert email_is_disposable("qa@mailinator.com", allow) is None
    assert identity_signals(Account(id="x", email="a@mailinator.com"), facts_with({}), IdentitySettings(
        disposable_email=False), now=NOW) == []  # fmt: skip


def test_stats_signals() -> None:
    cfg = IdentitySettings(max_accounts_per_device=3, wave_share=0.5, wave_min_requests=50)
    facts = facts_with({})
    new = Account(id="n", created_at=NOW - 60)
    old = Account(id="o", created_at=NOW - 90 * DAY)
    crowded = IdentityStats(accounts_on_device=4)
    assert names(identity_signals(old, facts, cfg, now=NOW, stats=crowded)) == {"identity/many-accounts-per-device"}
    assert identity_signals(old, facts, cfg, now=NOW, stats=IdentityStats(accounts_on_device=3)) == []
    wave = IdentityStats(new_account_share=0.8, recent_requests=400)
    sig = identity_signals(new, facts, cfg, now=NOW, stats=wave)
    assert names(sig) == {"identity/new-account", "identity/new-account-wave"}
    assert next(s for s in sig if s.name == "identity/new-account-wave").evidence == {"share": 0.8, "requests": 400}
    # Old accounts do not pay for a wave; a handful of requests is not one.
    assert identity_signals(old, facts, cfg, now=NOW, stats=wave) == []
    few = IdentityStats(new_account_share=1.0, recent_requests=10)
    assert names(identity_signals(new, facts, cfg, now=NOW, stats=few)) == {"identity/new-account"}


def test_is_new_account() -> None:
    cfg = IdentitySettings(new_account_age=3600)
    assert is_new_account(Account(id="a", created_at=NOW - 60), cfg, NOW)
    assert not is_new_account(Account(id="a", created_at=NOW - 7200), cfg, NOW)
    assert not is_new_account(Account(id="a"), cfg, NOW)
    assert not is_new_account(AccountProblem("expired"), cfg, NOW)
    assert not is_new_account(None, cfg, NOW)


def test_weights_table() -> None:
    assert all(n.startswith("identity/") and w > 0 for n, w in IDENTITY_WEIGHTS.items())
