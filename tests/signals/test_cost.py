"""Micro-benchmark: the four signal families together on real captured requests.

Prints the per-request cost of client + browser (including parsing Tokenward-Signals) +
network (a 100k-entry list) + identity (a cached JWT, stats) + subnet_of, the inputs the
guard will prepare. Target from the issue: <= 150 µs for the full signal set.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import time
from dataclasses import replace

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tokenward.signals.browser import BrowserSettings, browser_signals, parse_env
from tokenward.signals.http_client import ClientSettings, client_signals
from tokenward.signals.identity import AccountResolver, IdentitySettings, IdentityStats, identity_signals
from tokenward.signals.network import CidrLists, NetworkSettings, network_signals, subnet_of

from .conftest import Captured

SECRET = "s" * 48
ROUNDS = 20  # x 2 requests: a block of about 3 ms
SHA_ROUNDS = 1000
BLOCKS = 150
SHA_4K_REFERENCE_US = 2.6  # FACTS.md, this kind of machine when idle


def _lists() -> CidrLists:
    rng = random.Random(3)
    lines = [
        str(ipaddress.ip_network((rng.getrandbits(32), rng.randint(12, 32)), strict=False)) for _ in range(100_000)
    ]
    return CidrLists.from_lines({"datacenter": lines, "tor": ["203.0.113.0/24"], "proxy": ["198.51.100.0/24"]})


def test_signal_families_cost(captured: Captured, browsers: dict) -> None:
    client_cfg = ClientSettings(site_origins=("https://chat.example.com",))
    browser_cfg = BrowserSettings()
    network_cfg = NetworkSettings()
    identity_cfg = IdentitySettings.model_validate(
        {"jwt": {"algorithms": ["HS256"], "key": SECRET, "created_at_claim": "created_at"}}
    )
    lists = _lists()
    resolver = AccountResolver(identity_cfg)
    now0 = time.time()
    token = jwt.encode(
        {"sub": "u1", "email": "u1@mailinator.com", "exp": int(now0) + 3600, "created_at": int(now0) - 100}, SECRET
    )
    stats = IdentityStats(accounts_on_device=2, new_account_share=0.1, recent_requests=500)

    requests = []
    for label in ("headed", "headless"):
        cap = captured.one(label)
        facts = cap.facts(client_ip="203.0.113.50")
        facts = replace(facts, headers={**facts.headers, "authorization": f"Bearer {token}"})
        requests.append((facts, cap))
    total_signals = 0

    def one_request(facts, cap) -> int:  # type: ignore[no-untyped-def]
        now = cap.arrived
        out = client_signals(facts, client_cfg, browser_route=True, via_trusted_proxy=False)
        env = parse_env(facts.headers.get("tokenward-signals"))
        out += browser_signals(env, facts, cap.proof, browser_cfg, now=now, browser_route=True)
        out += network_signals(facts, lists, network_cfg)
        account = resolver.resolve(facts, now=now, via_trusted_proxy=False)
        out += identity_signals(account, facts, identity_cfg, now=now, stats=stats)
        subnet_of(facts.client_ip)
        return len(out)

    for facts, cap in requests:  # warm: first JWT verification, caches, zoneinfo
        total_signals += one_request(facts, cap)
    # The machine may be shared: time short blocks (a few ms, so that some run without
    # being preempted) of signal work and of a fixed reference (SHA-256 of 4 KB, 2.6 µs
    # in FACTS.md) alternately, and keep each one's best block.
    body = bytes(4096)
    signal_blocks, sha_blocks = [], []
    for _ in range(BLOCKS):
        started = time.perf_counter()
        for _ in range(ROUNDS):
            for facts, cap in requests:
                one_request(facts, cap)
        signal_blocks.append((time.perf_counter() - started) / (ROUNDS * len(requests)) * 1e6)
        started = time.perf_counter()
        for _ in range(SHA_ROUNDS):
            hashlib.sha256(body).digest()
        sha_blocks.append((time.perf_counter() - started) / SHA_ROUNDS * 1e6)
    per_request_us, sha_us = min(signal_blocks), min(sha_blocks)

    # Per family, the same way (best of short blocks).
    facts, cap = requests[0]
    header = facts.headers.get("tokenward-signals")
    env0 = parse_env(header)
    parts = {
        "client": lambda: client_signals(facts, client_cfg, browser_route=True),
        "parse_env": lambda: parse_env(header),
        "browser": lambda: browser_signals(env0, facts, cap.proof, browser_cfg, now=cap.arrived, browser_route=True),
        "network": lambda: network_signals(facts, lists, network_cfg),
        "identity": lambda: identity_signals(
            resolver.resolve(facts, now=cap.arrived), facts, identity_cfg, now=cap.arrived, stats=stats
        ),
    }
    breakdown = {}
    for name, fn in parts.items():
        best = float("inf")
        for _ in range(40):
            started = time.perf_counter()
            for _ in range(50):
                fn()
            best = min(best, (time.perf_counter() - started) / 50 * 1e6)
        breakdown[name] = best

    normalized_us = per_request_us * SHA_4K_REFERENCE_US / sha_us

    # One-off costs a cold token adds (then it is cached by its text).
    def verify_us(algorithm: str, private: object, cfg: dict) -> float:
        r = AccountResolver(IdentitySettings.model_validate({"jwt": cfg}))
        tokens = [jwt.encode({"sub": str(i), "exp": int(now0) + 60}, private, algorithm=algorithm) for i in range(200)]
        t = time.perf_counter()
        for tok in tokens:
            r.verify_token(tok, now=now0)
        return (time.perf_counter() - t) / len(tokens) * 1e6

    from cryptography.hazmat.primitives import serialization

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())

    def pem(k) -> str:  # type: ignore[no-untyped-def]
        return (
            k.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    cold = {
        "HS256": verify_us("HS256", SECRET, {"algorithms": ["HS256"], "key": SECRET}),
        "RS256": verify_us("RS256", rsa_key, {"algorithms": ["RS256"], "key": pem(rsa_key)}),
        "ES256": verify_us("ES256", ec_key, {"algorithms": ["ES256"], "key": pem(ec_key)}),
    }
    print(
        f"\nclient+browser+network+identity signals: {per_request_us:.1f} µs per request as measured, "
        f"{normalized_us:.1f} µs scaled to an idle machine (SHA-256 of 4 KB took {sha_us:.2f} µs here, "
        f"{SHA_4K_REFERENCE_US} µs idle); {total_signals} signals on the 2 requests. "
        "First sight of a token (then cached): "
        + ", ".join(f"{k} {v:.0f} µs" for k, v in cold.items())
        + "\nper family (headed Chromium request): "
        + ", ".join(f"{k} {v:.1f} µs" for k, v in breakdown.items())
    )
    assert total_signals > 0
    assert normalized_us < 150
