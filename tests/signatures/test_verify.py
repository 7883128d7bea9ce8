"""Verification outcomes: one wire code per failure, none of them an exception."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import pytest

from tokenward.proof.signature import (
    SIGNATURE_CODES,
    SignatureClaims,
    SignatureFailure,
    SignedRequest,
    ser_innerlist,
    signature_base,
    verify_signature,
)
from tokenward.store import Consume, Get, MemoryStore
from tokenward.trusted_clients import ClientRegistry, ClientsSettings, Revocation, StoreKeys, route_allowed

from .helpers import BODY, JSON, NOW, URL, Client, facts, registry


def code(result: SignatureClaims | SignatureFailure | None) -> str:
    if result is None:
        return "unsigned"  # nothing for this gateway to verify: the guard's normal path
    return "ok" if isinstance(result, SignatureClaims) else result.code


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
def reg(client: Client) -> ClientRegistry:
    return registry(client.spec())


def test_a_signed_request_verifies(client: Client, reg: ClientRegistry) -> None:
    result = reg.verify(client.facts(), now=NOW + 1)
    assert isinstance(result, SignatureClaims), result
    assert (result.client, result.keyid, result.created, result.expires) == (
        "backend",
        "backend.k1",
        int(NOW),
        int(NOW) + 30,
    )
    assert result.nonce == "nonce-backend-000000000001"
    assert result.consume_key == f"sig:backend.k1:{result.nonce}"
    assert result.account == "client:backend"
    assert result.covered == ('"@method"', '"@target-uri"', '"content-digest"', '"content-type"')
    # Remembered for the rest of its acceptance window plus a grace: here 29 s + 5 s.
    assert result.consume_ttl == pytest.approx(34.0)
    assert result.evidence()["client"] == "backend"


def test_consume_ttl_is_bounded_by_the_window(client: Client, reg: ClientRegistry) -> None:
    client.now = NOW + 5  # created 5 s ahead of the gateway: the longest window
    claims = reg.verify(client.facts(), now=NOW)
    assert isinstance(claims, SignatureClaims)
    assert claims.consume_ttl == pytest.approx(30 + 5 + 5)  # max_age + max_future + grace


async def test_a_replay_has_the_same_consume_key_and_is_refused_after_the_batch(
    client: Client, reg: ClientRegistry
) -> None:
    request = client.facts()
    first, again = reg.verify(request, now=NOW), reg.verify(request, now=NOW + 2)
    assert isinstance(first, SignatureClaims) and isinstance(again, SignatureClaims)
    assert first.consume_key == again.consume_key
    store = MemoryStore(clock=lambda: NOW)
    (used1,) = await store.execute([Consume(first.consume_key, first.consume_ttl)])
    (used2,) = await store.execute([Consume(again.consume_key, again.consume_ttl)])
    assert code(reg.confirm(first, first_use=used1, revocation=None, now=NOW)) == "ok"
    assert code(reg.confirm(again, first_use=used2, revocation=None, now=NOW + 2)) == "signature_replayed"
    # A fresh signature of the same request is a different nonce.
    other = reg.verify(client.facts(), now=NOW)
    assert isinstance(other, SignatureClaims) and other.consume_key != first.consume_key


@pytest.mark.parametrize(
    ("signed_at", "checked_at"),
    [
        (NOW, NOW + 30),  # max_age (and expires) reached
        (NOW, NOW + 3600),
        (NOW + 6, NOW),  # created more than max_future ahead
    ],
)
def test_old_or_future_signatures_expire(
    client: Client, reg: ClientRegistry, signed_at: float, checked_at: float
) -> None:
    client.now = signed_at
    assert code(reg.verify(client.facts(), now=checked_at)) == "signature_expired"


def test_expires_is_honoured(client: Client, reg: ClientRegistry) -> None:
    client.signer.expires_in = 3
    assert code(reg.verify(client.facts(), now=NOW + 2)) == "ok"
    assert code(reg.verify(client.facts(), now=NOW + 3)) == "signature_expired"


def test_a_different_body_is_a_digest_mismatch(client: Client, reg: ClientRegistry) -> None:
    f = client.facts()
    tampered = replace(f, body=BODY.replace(b"hi", b"ho"))
    assert code(reg.verify(tampered, now=NOW)) == "digest_mismatch"


def test_a_replaced_digest_header_breaks_the_signature(client: Client, reg: ClientRegistry) -> None:
    body = b'{"other": 1}'
    headers = [(k, v) for k, v in client.sign("POST", URL, JSON, BODY) if k != "Content-Digest"]
    headers.append(("Content-Digest", "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"))
    assert code(reg.verify(facts("POST", URL, headers, body), now=NOW)) == "signature_invalid"


def test_unknown_and_revoked_keys(client: Client) -> None:
    stranger = Client("stranger")
    reg = registry(client.spec(revoked=(client.keyid,)), stranger.spec())
    assert code(reg.verify(client.facts(), now=NOW)) == "key_revoked"
    assert code(registry(client.spec()).verify(stranger.facts(), now=NOW)) == "unknown_key"
    # Retired at the end of a rotation overlap.
    retired = registry(records=[client.record(not_after=NOW + 10)])
    assert code(retired.verify(client.facts(), now=NOW + 9)) == "ok"
    client.now = NOW + 10
    assert code(retired.verify(client.facts(), now=NOW + 10)) == "key_revoked"
    # Revoked in the key file.
    assert (
        code(registry(records=[client.record(revoked_at=NOW - 1)]).verify(client.facts(), now=NOW + 10))
        == "key_revoked"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"url": "http://gateway.test:8080/v1/messages"},  # another path
        {"url": "http://gateway.test:8080/v1/chat/completions?x=1"},  # a query added
        {"method": "PUT"},
        {"host": "other.test:8080"},
    ],
)
def test_a_signature_over_another_request_is_invalid(
    client: Client, reg: ClientRegistry, change: dict[str, str]
) -> None:
    headers = [(k, v) for k, v in client.sign("POST", URL, JSON, BODY) if k != "host"]
    f = facts(change.get("method", "POST"), change.get("url", URL), headers, BODY, host=change.get("host"))
    assert code(reg.verify(f, now=NOW)) == "signature_invalid"


def test_missing_or_malformed_signatures(client: Client, reg: ClientRegistry) -> None:
    signed = dict(client.sign("POST", URL, JSON, BODY))
    sig_input, sig = signed["Signature-Input"], signed["Signature"]

    def check(**headers: str) -> str:
        base = {
            "host": "gateway.test:8080",
            "Content-Type": "application/json",
            "Content-Digest": signed["Content-Digest"],
        }
        return code(reg.verify(facts("POST", URL, {**base, **headers}, BODY), now=NOW))

    assert check() == "unsigned"
    assert code(verify_signature(SignedRequest.from_url("POST", URL, {}, BODY), reg, reg.rules, now=NOW)) == (
        "signature_required"
    )
    assert check(**{"Signature-Input": sig_input}) == "signature_invalid"
    assert check(Signature=sig) == "signature_invalid"
    assert check(**{"Signature-Input": "tokenward=(", "Signature": sig}) == "signature_invalid"
    assert check(**{"Signature-Input": sig_input, "Signature": "tokenward=:AAAA:"}) == "signature_invalid"
    assert check(**{"Signature-Input": sig_input, "Signature": "other=" + sig.split("=", 1)[1]}) == "signature_invalid"
    assert check(**{"Signature-Input": sig_input, "Signature": "tokenward=1"}) == "signature_invalid"
    assert check(**{"Signature-Input": "\x00\xff" * 10, "Signature": "\u00e9"}) == "signature_invalid"


@pytest.mark.parametrize(
    ("components", "params", "why"),
    [
        (("@target-uri", "content-digest"), {}, "@method"),
        (("@method", "@path", "content-digest"), {}, "@target-uri"),
        (("@method", "@target-uri"), {}, "content-digest"),
        (DEFAULT := ("@method", "@target-uri", "content-digest"), {"nonce": None}, "nonce"),
        (DEFAULT, {"nonce": "short"}, "nonce"),
        (DEFAULT, {"alg": "rsa-pss-sha512"}, "alg"),
        (DEFAULT, {"keyid": None}, "keyid"),
        (DEFAULT, {"created": None}, "created"),
        (DEFAULT, {"expires": int(NOW) - 10}, "expires"),
        (DEFAULT, {"extra": "x"}, "unknown signature parameter"),
        (("@method", "@target-uri", "content-digest", "@method"), {}, "twice"),
        (("@method", "@target-uri", "content-digest", "x-missing"), {}, "x-missing"),
        (("@method", "@target-uri", "content-digest", "@status"), {}, "@status"),
    ],
)
def test_signatures_lacking_what_the_gateway_requires(
    client: Client, reg: ClientRegistry, components: tuple[str, ...], params: dict[str, object], why: str
) -> None:
    headers = [("host", "gateway.test:8080"), ("content-type", "application/json")]
    headers += [("content-digest", client.signer.headers("POST", URL, headers, BODY)["Content-Digest"])]
    request = SignedRequest.from_url("POST", URL, headers, BODY)
    p: dict[str, object] = {"created": int(NOW), "keyid": client.keyid, "nonce": "n" * 20, **params}
    p = {k: v for k, v in p.items() if v is not None}
    covered = [(c, {}) for c in components]
    try:  # signed correctly, so only the requirement can fail
        signature = client.private.sign(signature_base(request, covered, p))
    except ValueError:  # no base (a covered component the request lacks)
        signature = bytes(64)
    sig_input = "tokenward=" + ser_innerlist((covered, p))
    sig = "tokenward=:" + base64.b64encode(signature).decode() + ":"
    result = reg.verify(
        facts("POST", URL, [*headers, ("Signature-Input", sig_input), ("Signature", sig)], BODY), now=NOW
    )
    assert isinstance(result, SignatureFailure) and result.code == "signature_invalid"
    assert why in result.message


def test_route_forbidden(client: Client) -> None:
    reg = registry(client.spec(routes=("/v1/messages", "/api/*")))
    assert code(reg.verify(client.facts(), now=NOW)) == "route_forbidden"
    assert code(reg.verify(client.facts(url="http://gateway.test:8080/api/chat"), now=NOW)) == "ok"
    assert SIGNATURE_CODES["route_forbidden"] == 403
    assert route_allowed(["*"], "/x") and route_allowed(["/v1/*"], "/v1") and not route_allowed(["/v1/*"], "/v2/x")


def test_every_code_has_a_status() -> None:
    assert set(SIGNATURE_CODES) == {
        "signature_required", "signature_invalid", "signature_expired", "signature_replayed",
        "digest_mismatch", "unknown_key", "key_revoked", "route_forbidden",
    }  # fmt: skip
    assert all(s == 401 for c, s in SIGNATURE_CODES.items() if c != "route_forbidden")


# -- @target-uri as the gateway reconstructs it -----------------------------------------


def test_public_origin_behind_a_proxy(client: Client) -> None:
    public = "https://api.example.com/v1/chat/completions"
    headers = [(k, v) for k, v in client.sign("POST", public, JSON, BODY) if k != "host"]
    # The gateway listens on 127.0.0.1:8080 behind a TLS-terminating proxy that keeps Host.
    seen = facts("POST", "http://127.0.0.1:8080/v1/chat/completions", headers, BODY, host="127.0.0.1:8080")
    assert code(registry(client.spec()).verify(seen, now=NOW)) == "signature_invalid"
    pinned = registry(client.spec(), public_origin="https://api.example.com")
    assert code(pinned.verify(seen, now=NOW)) == "ok"
    # Several public names: the one matching Host is used.
    two = registry(client.spec(), public_origin=["https://other.example.com", "https://api.example.com"])
    seen_with_host = facts("POST", "http://127.0.0.1:8080/v1/chat/completions", headers, BODY, host="api.example.com")
    assert code(two.verify(seen_with_host, now=NOW)) == "ok"
    # Forwarded headers count only from trusted proxies, and only when asked to.
    fwd = [*headers, ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "api.example.com")]
    behind = facts(
        "POST", "http://127.0.0.1:8080/v1/chat/completions", fwd, BODY, host="127.0.0.1:8080", via_proxy=True
    )
    assert code(registry(client.spec(), trust_forwarded=True).verify(behind, now=NOW)) == "ok"
    assert code(registry(client.spec()).verify(behind, now=NOW)) == "signature_invalid"
    spoofed = replace(behind, via_proxy=False)
    assert code(registry(client.spec(), trust_forwarded=True).verify(spoofed, now=NOW)) == "signature_invalid"


def test_public_origin_with_a_path_prefix(client: Client) -> None:
    public = "https://example.com/llm/v1/chat/completions"
    headers = [(k, v) for k, v in client.sign("POST", public, JSON, BODY) if k != "host"]
    seen = facts("POST", "http://10.0.0.5:8080/v1/chat/completions", headers, BODY, host="10.0.0.5:8080")
    assert code(registry(client.spec(), public_origin="https://example.com/llm").verify(seen, now=NOW)) == "ok"


def test_default_ports_and_case_are_normalized(client: Client, reg: ClientRegistry) -> None:
    headers = [
        (k, v) for k, v in client.sign("POST", "https://gateway.test/v1/chat/completions", JSON, BODY) if k != "host"
    ]
    seen = facts("POST", "https://gateway.test/v1/chat/completions", headers, BODY, host="Gateway.TEST:443")
    assert code(reg.verify(seen, now=NOW)) == "ok"


def test_query_and_encoded_paths(client: Client, reg: ClientRegistry) -> None:
    url = "http://gateway.test:8080/v1/chat%20x/completions?api-version=2024-01&b=%41"
    assert code(reg.verify(client.facts(url=url), now=NOW)) == "ok"


def test_without_a_raw_path_the_decoded_path_is_re_encoded(client: Client, reg: ClientRegistry) -> None:
    from tokenward.facts import RequestFacts

    f = client.facts(url="http://gateway.test:8080/v1/chat%20x")
    plain = RequestFacts(**{k: getattr(f, k) for k in RequestFacts.__dataclass_fields__})
    assert code(reg.verify(plain, now=NOW)) == "ok"


# -- keys from several places ------------------------------------------------------------


def test_policy_and_key_file_keys_merge(client: Client) -> None:
    other = Client("partner", "partner.k1")
    reg = registry(
        client.spec(routes=("/v1/*",)), records=[client.record(routes=("*",)), other.record(routes=("/v1/messages",))]
    )
    assert code(reg.verify(client.facts(), now=NOW)) == "ok"
    assert code(reg.verify(other.facts(), now=NOW)) == "route_forbidden"
    clash = replace(other.record(), keyid=client.keyid)
    with pytest.raises(ValueError, match="defined twice"):
        registry(client.spec(), records=[clash])


def test_client_limits_and_budgets() -> None:
    from tokenward.limits import LimitSpec
    from tokenward.money.budgets import BudgetSpec

    settings = ClientsSettings.model_validate(
        {
            "named": [
                {"name": "a", "routes": ["*"], "limits": ["per-account", {"name": "burst", "limit": 10, "window": 1}],
                 "budgets": [{"name": "daily", "usd": 5, "window": 86400}]},
                {"name": "b", "routes": ["*"], "limits": ["nope"], "budgets": ["nope"]},
            ]
        }
    )  # fmt: skip
    assert settings.problems(["per-account"], []) == [
        ("clients.named[1].limits[0]", "no limit named 'nope' in limits"),
        ("clients.named[1].budgets[0]", "no budget named 'nope' in budgets"),
    ]
    policy_limits = (LimitSpec(name="per-account", key="account", limit=100, window=60),)
    policy_budgets = (BudgetSpec(name="all", key="global", usd=100, window=3600),)
    ok = ClientsSettings(named=settings.named[:1])
    reg = ClientRegistry(ok, limits=policy_limits, budgets=policy_budgets)
    limits = reg.limits_for("a", policy_limits)
    assert [(s.name, s.key, s.limit) for s in limits] == [("per-account", "account", 100), ("a.burst", "account", 10)]
    assert [b.name for b in reg.budgets_for("a", policy_budgets)] == ["a.daily"]
    assert reg.limits_for("unlisted", policy_limits) == policy_limits
    with pytest.raises(ValueError, match="no limit named"):
        ClientRegistry(settings, limits=policy_limits)


def test_settings_validation() -> None:
    with pytest.raises(ValueError):
        ClientsSettings.model_validate({"named": [{"name": "a", "keys": [{"keyid": "k", "public_key": "nope"}]}]})
    with pytest.raises(ValueError):
        ClientsSettings.model_validate({"public_origin": "ftp://x"})
    with pytest.raises(ValueError):
        ClientsSettings.model_validate({"named": [{"name": "a", "routes": ["v1/*"]}]})
    with pytest.raises(ValueError, match="unique"):
        ClientsSettings.model_validate({"named": [{"name": "a"}, {"name": "a"}]})


# -- keys in the Store ---------------------------------------------------------------------


async def test_store_keys_prefetch_revocation_in_the_batch(client: Client) -> None:
    store = MemoryStore(clock=lambda: NOW)
    await StoreKeys(store).put(client.record())
    reg = ClientRegistry(ClientsSettings(keys_in_store=True))
    f = client.facts()
    assert code(reg.verify(f, now=NOW)) == "unknown_key"  # not fetched yet
    fetch = reg.prefetch(f.headers)
    assert fetch == [Get(f"sigkey:{client.keyid}")]
    reg.learn(fetch, await store.execute(fetch))
    assert reg.prefetch(f.headers) == []  # cached: a keyid's key never changes
    claims = reg.verify(f, now=NOW)
    assert isinstance(claims, SignatureClaims)
    revocation = reg.revocation_op(claims)
    assert revocation == Get(f"sigrevoked:{client.keyid}")
    used, revoked = await store.execute([Consume(claims.consume_key, claims.consume_ttl), revocation])
    assert code(reg.confirm(claims, first_use=used, revocation=revoked, now=NOW)) == "ok"
    # Revoked elsewhere (another instance, the CLI): the next request's batch sees it.
    await StoreKeys(store).revoke(client.keyid, NOW)
    claims = reg.verify(client.facts(), now=NOW + 1)
    assert isinstance(claims, SignatureClaims)  # the cached key still verifies ...
    used, revoked = await store.execute(
        [Consume(claims.consume_key, claims.consume_ttl), Get(f"sigrevoked:{client.keyid}")]
    )
    assert (
        code(reg.confirm(claims, first_use=used, revocation=revoked, now=NOW + 1)) == "key_revoked"
    )  # ... but is refused
    # A rotation overlap ends in the future, then refuses.
    r = Revocation(NOW + 10, "rotated").encode()
    assert code(reg.confirm(claims, first_use=True, revocation=r, now=NOW + 9)) == "ok"
    assert "rotation" in reg.confirm(claims, first_use=True, revocation=r, now=NOW + 10).message  # type: ignore[union-attr]
    assert code(reg.confirm(claims, first_use=True, revocation=b"garbage", now=NOW)) == "key_revoked"  # fail closed


async def test_unknown_store_keys_are_not_cached() -> None:
    stranger = Client("stranger")
    reg = ClientRegistry(ClientsSettings(keys_in_store=True))
    f = stranger.facts()
    ops = reg.prefetch(f.headers)
    reg.learn(ops, [None])
    assert reg.prefetch(f.headers) == ops
    reg.learn(ops, [b"{not json"])  # a broken entry is ignored, not fatal
    assert code(reg.verify(f, now=NOW)) == "unknown_key"


def test_store_records_must_match_their_entry() -> None:
    victim, attacker = Client("victim"), Client("attacker")
    reg = ClientRegistry(ClientsSettings(keys_in_store=True))
    # An entry under victim's keyid whose record names another keyid is not learned.
    import json

    reg.learn([Get(f"sigkey:{victim.keyid}")], [json.dumps(attacker.record().to_dict()).encode()])
    assert code(reg.verify(victim.facts(), now=NOW)) == "unknown_key"


def test_verify_signature_never_raises_on_garbage() -> None:
    import random

    rng = random.Random(7)
    reg = registry(Client().spec())
    alphabet = 'abc=();:"*, -_\\\x7f0123456789sig'
    for _ in range(500):
        headers = {
            "Signature-Input": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))),
            "Signature": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))),
            "Content-Digest": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))),
        }
        result = reg.verify(facts("POST", URL, headers, BODY), now=NOW)
        assert isinstance(result, SignatureFailure)
    assert verify_signature
