"""Prometheus metrics (docs/observability.md): exact counts after a known mix of requests,
scraped from the admin listener and from /.tokenward/metrics, with one and two workers."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import GatewayProc, Upstream, free_port, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header
from tests.services import RedisServer, need_redis

from tokenward.log import recent

CHAT = "/v1/chat/completions"
TOKEN = secrets.token_urlsafe(24)
# $1 per refusal held at most: 100 output tokens at $10,000 / M, input free.
POLICY = {
    "proof": {"difficulty": 4},
    "prices": {"demo-1": {"input": 0, "output": 10_000}, "default": {"input": 0, "output": 10_000}},
    "money": {"max_output_tokens": 100},
    "max_body_bytes": 4096,
    "weights": {"behaviour/*": 0},
}
JSON = {"content-type": "application/json"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped: dict, metric: str, **labels: str) -> float:
    return scraped.get((metric, tuple(sorted(labels.items()))), 0.0)


def total(scraped: dict, metric: str, **labels: str) -> float:
    """The sum over every label set that includes ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in scraped.items() if n == metric and want <= set(ls))


def logged(gw: GatewayProc, n: int) -> list[dict]:
    deadline = time.monotonic() + 15
    while True:
        rows = recent(f"sqlite:///{gw.db}", 10_000)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def proved(gw: GatewayProc, body: bytes, counts: Counter) -> dict[str, str]:
    counts["challenges"] += 1
    return {**JSON, "tokenward-proof": proof_header(get_challenge(gw.url, CHAT), body)}


def send_mix(gw: GatewayProc) -> Counter:
    """Allowed JSON calls, a stream, and one refusal of each kind; returns what the client
    saw: responses by code, and challenges handed out (endpoint and refusals)."""
    seen: Counter = Counter()

    def note(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            error = response.json()["error"]
            seen["refused:" + error["code"]] += 1
            if "challenge" in error:
                seen["challenges"] += 1
        else:
            seen["allowed"] += 1
        return response

    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for i in range(3):
            body = chat_body(f"metrics call {i}")
            assert note(client.post(CHAT, content=body, headers=proved(gw, body, seen))).status_code == 200
        stream = json.dumps({
            "model": "demo-1", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "stream it"}],
        }).encode()  # fmt: skip
        answer = note(client.post(CHAT, content=stream, headers=proved(gw, stream, seen)))
        assert answer.status_code == 200 and "data:" in answer.text
        for _ in range(2):
            assert note(client.post(CHAT, content=chat_body("no proof"), headers=JSON)).status_code == 401
        body = chat_body("replayed")
        headers = proved(gw, body, seen)
        assert note(client.post(CHAT, content=body, headers=headers)).status_code == 200
        assert note(client.post(CHAT, content=body, headers=headers)).status_code == 401
        garbage = {**JSON, "tokenward-proof": "v1.not-a-proof"}
        assert note(client.post(CHAT, content=chat_body("bad proof"), headers=garbage)).status_code in (400, 401)
        big = chat_body("x" * 5000)
        assert note(client.post(CHAT, content=big, headers=JSON)).status_code == 413
        assert client.post("/nowhere", content=b"{}").status_code == 404  # no route: not judged
    return seen


def check_mix(scraped: dict, seen: Counter, rows: list[dict]) -> None:
    """Every counter and histogram count against what the client saw and the log holds."""
    by_decision = Counter((r["route"] or "(none)", r["action"], r["name"]) for r in rows)
    for (route, action, name), n in by_decision.items():
        assert value(scraped, "tokenward_decisions_total", route=route, action=action, name=name) == n
    assert total(scraped, "tokenward_decisions_total") == len(rows) == sum(seen.values()) - seen["challenges"]
    for (route, action), n in Counter((r["route"], r["action"]) for r in rows).items():
        assert value(scraped, "tokenward_request_duration_seconds_count", route=route, action=action) == n
    assert value(scraped, "tokenward_decision_duration_seconds_count", route=CHAT) == len(rows)
    refusals = {k.split(":", 1)[1]: n for k, n in seen.items() if k.startswith("refused:")}
    assert set(refusals) >= {"proof_required", "proof_replayed", "payload_too_large"}
    for code, n in refusals.items():
        assert value(scraped, "tokenward_refusals_total", route=CHAT, code=code) == n, code
        assert value(scraped, "tokenward_refused_usd_total", route=CHAT, code=code) == pytest.approx(n * 1.0), code
        held = sum(r["held_usd"] or 0 for r in rows if r["code"] == code)  # the log has the same figure
        assert held == pytest.approx(n * 1.0), code
    assert total(scraped, "tokenward_refusals_total") == sum(refusals.values())
    allowed = [r for r in rows if r["action"] == "allow"]
    assert len(allowed) == seen["allowed"] == 5
    assert value(scraped, "tokenward_upstream_response_seconds_count", route=CHAT) == len(allowed)
    assert value(scraped, "tokenward_stream_first_byte_seconds_count", route=CHAT) == 1
    assert value(scraped, "tokenward_tokens_total", route=CHAT, direction="input") == sum(
        r["tokens_in"] for r in allowed
    )
    assert value(scraped, "tokenward_tokens_total", route=CHAT, direction="output") == sum(
        r["tokens_out"] for r in allowed
    )
    spent = sum(r["cost_usd"] for r in allowed)
    assert spent > 0
    assert value(scraped, "tokenward_spend_usd_total", route=CHAT) == pytest.approx(spent, rel=1e-6)
    assert total(scraped, "tokenward_challenges_total") == seen["challenges"]
    # The route's difficulty; the refusal of a replay made where its challenge was used
    # carries the hardest the route's risk could ask: 4 + the challenge threshold's 4 bits.
    harder = value(scraped, "tokenward_challenges_total", difficulty="8")
    assert harder <= seen["refused:proof_replayed"]
    assert value(scraped, "tokenward_challenges_total", difficulty="4") + harder == seen["challenges"]
    assert value(scraped, "tokenward_route_under_attack", route=CHAT) == 0
    assert value(scraped, "tokenward_breaker_open") == 0
    assert value(scraped, "tokenward_store_roundtrip_seconds_count") > 0
    assert value(scraped, "tokenward_store_errors_total") == 0
    assert value(scraped, "tokenward_log_dropped_total") == 0
    assert ("tokenward_log_queue_depth", ()) in scraped
    labels = {k for (_, ls) in scraped for k, _ in ls}
    assert not labels & {"client", "client_ip", "ip", "device", "account", "path"}, labels


def scrape(url: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=30)


def settle(url: str, n: int) -> dict:
    """Scrape until the last request's decision is counted (they are counted as they end)."""
    deadline = time.monotonic() + 10
    while True:
        scraped = samples(scrape(url).text)
        if total(scraped, "tokenward_decisions_total") >= n or time.monotonic() > deadline:
            return scraped
        time.sleep(0.1)


def test_metrics_count_a_known_mix_exactly(tmp_path: Path, demo_upstream: Upstream) -> None:
    admin = free_port()
    gw = start_gateway(
        tmp_path, demo_upstream.url, POLICY, args=["--admin-port", str(admin)], env={"TOKENWARD_ADMIN_TOKEN": TOKEN}
    )
    try:
        seen = send_mix(gw)
        rows = logged(gw, sum(seen.values()) - seen["challenges"])
        on_admin = f"http://127.0.0.1:{admin}/metrics"
        scraped = settle(on_admin, len(rows))
        check_mix(scraped, seen, rows)
        # The same numbers on the main port, behind the same token.
        check_mix(samples(scrape(gw.url + "/.tokenward/metrics").text), seen, rows)
        for url in (on_admin, gw.url + "/.tokenward/metrics"):
            for token in (None, "wrong-token-of-enough-length"):
                refused = scrape(url, token)
                assert refused.status_code == 401 and "tokenward_" not in refused.text
    finally:
        gw.stop()
    # The admin listener stops with the gateway.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=2)


def test_without_an_admin_token_metrics_are_on_loopback_only(tmp_path: Path, demo_upstream: Upstream) -> None:
    admin = free_port()
    env = {"TOKENWARD_ADMIN_TOKEN": ""}
    gw = start_gateway(tmp_path, demo_upstream.url, POLICY, args=["--admin-port", str(admin)], env=env)
    try:
        assert httpx.post(gw.url + CHAT, content=chat_body(), headers=JSON).status_code == 401
        assert httpx.get(gw.url + "/.tokenward/metrics").status_code == 404  # not served on the main port
        scraped = settle(f"http://127.0.0.1:{admin}/metrics", 1)
        assert value(scraped, "tokenward_refusals_total", route=CHAT, code="proof_required") == 1
        dashboard = httpx.get(f"http://127.0.0.1:{admin}/.tokenward/dashboard/")
        assert dashboard.status_code == 404  # no token: no dashboard
    finally:
        gw.stop()


def test_two_workers_are_added_up(tmp_path: Path, demo_upstream: Upstream) -> None:
    need_redis()
    admin = free_port()
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"stale file of an earlier run")  # emptied at start
    with RedisServer(tmp_path) as redis:
        policy = {**POLICY, "store": f"{redis.url}?prefix=m{secrets.token_hex(3)}:&timeout=5"}
        gw = start_gateway(
            tmp_path, demo_upstream.url, policy, args=["--admin-port", str(admin), "--workers", "2"],
            env={"TOKENWARD_ADMIN_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        )  # fmt: skip
        try:
            refused = allowed = 0
            for i in range(60):  # a new connection each: the workers share them out
                with httpx.Client(base_url=gw.url, timeout=30) as client:
                    if i % 4 == 0:
                        body = chat_body(f"two workers {i}")
                        headers = {**JSON, "tokenward-proof": proof_header(get_challenge(gw.url, CHAT, client), body)}
                        assert client.post(CHAT, content=body, headers=headers).status_code == 200
                        allowed += 1
                    else:
                        assert client.post(CHAT, content=chat_body(), headers=JSON).status_code == 401
                        refused += 1
            scraped = settle(f"http://127.0.0.1:{admin}/metrics", refused + allowed)
            assert value(scraped, "tokenward_refusals_total", route=CHAT, code="proof_required") == refused
            assert value(scraped, "tokenward_decisions_total", route=CHAT, action="allow", name="proof/ok") == allowed
            assert total(scraped, "tokenward_challenges_total") == refused + allowed
            writers = {name.rsplit("_", 1)[1] for name in os.listdir(directory) if name.startswith("counter_")}
            assert len(writers) == 2, f"both workers served and counted: {writers}"
            assert "1.db" not in writers
        finally:
            gw.stop()
