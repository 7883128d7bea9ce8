"""Issue 14: ``spend`` and ``check-policy`` had no ``--json``. Each prints one JSON
document with the keys docs/operations.md lists, from a real SQLite log and real
policy files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli.helpers import ROOT, environment, record, run, write_log

POLICIES = ROOT / "tests" / "policies"
SERVED = {"action": "allow", "name": "proof/ok", "code": None, "status": 200, "reasons": ["proof/ok"]}


@pytest.fixture(scope="module")
def spend_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("json") / "decisions.db"
    records = [
        record(0, **SERVED, route="/v1/chat", model="m-big", tokens_in=100, tokens_out=50, usage_exact=True,
               cost_usd=0.5, upstream_status=200),
        record(1, **SERVED, route="/v1/chat", model="m-big", tokens_in=10, tokens_out=5, usage_exact=False,
               cost_usd=0.25, upstream_status=200),
        record(2, **SERVED, route="/v1/embed", model="m-small", tokens_in=7, tokens_out=0, usage_exact=True,
               cost_usd=0.125, upstream_status=200),
        record(3, action="degrade", name="risk/degrade", code=None, status=200, route="/v1/chat", model="m-small",
               tokens_in=1, tokens_out=1, usage_exact=True, cost_usd=0.0625, upstream_status=200),
        record(4, action="throttle", name="budget/day", code="budget_exhausted", status=429, reserved_usd=2.0),
        record(5, action="throttle", name="budget/day", code="budget_exhausted", status=429, reserved_usd=1.0),
        record(6),  # proof/missing: a refusal that held nothing
    ]  # fmt: skip
    write_log(db, records)
    return db


def test_spend_json_is_one_document_with_the_report(spend_db: Path) -> None:
    result = run("spend", "--db", spend_db, "--since", "100000d", "--by", "route", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # the whole output is one document
    assert set(doc) == {
        "since", "since_ts", "by", "usd", "calls", "exact_calls", "estimated_calls", "groups", "refused", "degraded"
    }  # fmt: skip
    assert (doc["since"], doc["by"]) == ("100000d", "route")
    assert doc["usd"] == pytest.approx(0.9375)
    assert (doc["calls"], doc["exact_calls"], doc["estimated_calls"]) == (4, 3, 1)
    assert doc["groups"] == [
        {"key": "/v1/chat", "calls": 3, "usd": 0.8125, "tokens_in": 111, "tokens_out": 56},
        {"key": "/v1/embed", "calls": 1, "usd": 0.125, "tokens_in": 7, "tokens_out": 0},
    ]
    assert doc["refused"] == [
        {"rule": "budget/day", "requests": 2, "usd": 3.0},
        {"rule": "proof/missing", "requests": 1, "usd": 0.0},
    ]
    assert doc["degraded"] == {"calls": 1, "usd": 0.0625}


def test_spend_json_groups_by_model(spend_db: Path) -> None:
    result = run("spend", "--db", spend_db, "--since", "100000d", "--by", "model", "--json")
    assert result.returncode == 0, result.stderr
    groups = {g["key"]: (g["calls"], g["usd"]) for g in json.loads(result.stdout)["groups"]}
    assert groups == {"m-big": (2, 0.75), "m-small": (2, 0.1875)}


def test_check_policy_json_describes_a_valid_policy() -> None:
    result = run("check-policy", POLICIES / "good" / "custom_routes.yaml", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {
        "file", "valid", "problems", "routes", "other_routes", "upstream", "store", "log", "trusted_proxies",
        "limits", "budgets", "breaker", "warnings", "unchecked_secrets",
    }  # fmt: skip
    assert doc["valid"] is True and doc["problems"] == [] and doc["other_routes"] == "refuse"
    routes = {r["path"]: r for r in doc["routes"]}
    assert list(routes) == ["/api/chat", "/api/assistant/*", "/api/assistant/health", "/static/*"]
    assert routes["/api/assistant/*"]["difficulty"] == 12 and routes["/api/assistant/*"]["protected"] is True
    assert routes["/api/assistant/*"]["api"] == "custom" and "POST" in routes["/api/assistant/*"]["methods"]
    assert routes["/static/*"] == {**routes["/static/*"], "protected": False, "difficulty": None, "methods": []}
    assert doc["upstream"] is None and doc["breaker"] is None and doc["unchecked_secrets"] == []
    assert any("nothing caps" in w for w in doc["warnings"])


def test_check_policy_json_on_an_invalid_policy_lists_the_problems_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: audit\nproof: {difficulty: 99}\n")
    result = run("check-policy", bad, "--json")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["file"] == str(bad)
    assert [p["where"] for p in doc["problems"]] == ["mode", "proof.difficulty"]
    assert "Traceback" not in result.stderr and "2 problem(s)" in result.stderr


def test_check_policy_never_prints_store_or_log_passwords(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "store: redis://:hunter2-store@redis.internal:6379/0\n"
        "log: postgresql://tokenward:hunter2-log@db.internal/tokenward\n"
    )
    env = environment(COLUMNS="250")
    for args in ([], ["--json"]):
        result = run("check-policy", policy, *args, env=env)
        assert result.returncode == 0, result.stderr
        assert "hunter2" not in result.stdout + result.stderr
        assert "redis.internal" in result.stdout and "db.internal" in result.stdout
    doc = json.loads(result.stdout)
    assert doc["store"] == "redis://:***@redis.internal:6379/0"
    assert doc["log"] == "postgresql://tokenward:***@db.internal/tokenward"


def test_check_policy_steers_routes_open_to_any_client(tmp_path: Path) -> None:
    """Issue 16: a route that accepts any client is named, with what to set instead;
    routes that say who calls them are not."""
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "routes:\n"
        "  - {path: /v1/chat/completions, api: openai}\n"
        "  - {path: /api/chat, api: custom, clients: browser}\n"
        "  - {path: /v1/messages, api: anthropic, signed: require}\n"
        "  - {path: /static/*, protect: false}\n"
    )
    doc = json.loads(run("check-policy", policy, "--json").stdout)
    (warning,) = [w for w in doc["warnings"] if "clients: any" in w]
    assert warning.startswith("/v1/chat/completions: clients: any")
    assert "clients: browser" in warning and "signed: require" in warning
    assert not any(p in warning for p in ("/api/chat", "/v1/messages", "/static"))
    policy.write_text("routes:\n  - {path: /api/chat, api: custom, clients: browser}\n")
    assert not [w for w in json.loads(run("check-policy", policy, "--json").stdout)["warnings"] if "clients" in w]
