"""Issue 14: ``check-policy`` failed when a ``${VAR}`` secret was unset, so CI could not
validate a policy. ``--no-secrets`` checks everything else, lists what it did not check,
and still checks the secrets that are set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli.helpers import environment, run

HEADER = "TOKENWARD_TEST_NS_UPSTREAM_KEY"
HOOK = "TOKENWARD_TEST_NS_WEBHOOK"
JWT = "TOKENWARD_TEST_NS_JWT_KEY"


def policy(tmp_path: Path, algorithm: str = "RS256", extra: str = "") -> Path:
    path = tmp_path / "ci.yaml"
    path.write_text(
        "upstream:\n"
        "  url: https://llm.example.com\n"
        "  headers:\n"
        f'    Authorization: "Bearer ${{{HEADER}}}"\n'
        "alerts:\n"
        f'  webhook: "${{{HOOK}}}"\n'
        "identity:\n"
        "  jwt:\n"
        f"    algorithms: [{algorithm}]\n"
        f"    key_env: {JWT}\n"
        "budgets:\n"
        "  - {name: day, key: global, usd: 50, window: 86400}\n" + extra
    )
    return path


def unset_env(**extra: str) -> dict[str, str]:
    env = environment(COLUMNS="250", **extra)
    for name in (HEADER, HOOK, JWT):
        if name not in extra:
            env.pop(name, None)
    return env


def test_without_the_flag_unset_secrets_fail_with_a_hint(tmp_path: Path) -> None:
    result = run("check-policy", policy(tmp_path), env=unset_env())
    assert result.returncode == 2
    assert HEADER in result.stderr and HOOK in result.stderr  # (the JWT key is read once the policy parses)
    assert "check-policy --no-secrets" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA", "HS256"])
def test_no_secrets_validates_and_names_what_it_did_not_check(tmp_path: Path, algorithm: str) -> None:
    result = run("check-policy", policy(tmp_path, algorithm), "--no-secrets", env=unset_env())
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("not checked"))
    for name, where in ((HEADER, "upstream.headers.Authorization"), (HOOK, "alerts.webhook"),
                        (JWT, "identity.jwt.key_env")):  # fmt: skip
        assert f"{name} ({where})" in line
    assert "placeholder.invalid" not in result.stdout  # the stand-ins are never shown as settings


def test_no_secrets_json_lists_them(tmp_path: Path) -> None:
    result = run("check-policy", policy(tmp_path), "--no-secrets", "--json", env=unset_env())
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["valid"] is True
    assert doc["unchecked_secrets"] == [
        {"variable": HEADER, "where": "upstream.headers.Authorization"},
        {"variable": HOOK, "where": "alerts.webhook"},
        {"variable": JWT, "where": "identity.jwt.key_env"},
    ]


def test_no_secrets_still_checks_the_secrets_that_are_set(tmp_path: Path) -> None:
    # A JWT HMAC key that is set but too short is an error with or without the flag.
    result = run("check-policy", policy(tmp_path, "HS256"), "--no-secrets", env=unset_env(**{JWT: "short"}))
    assert result.returncode == 2
    assert "HMAC secret needs at least" in result.stderr
    ok = run("check-policy", policy(tmp_path, "HS256"), "--no-secrets", "--json", env=unset_env(**{HEADER: "sk-x"}))
    assert ok.returncode == 0, ok.stderr
    assert [s["variable"] for s in json.loads(ok.stdout)["unchecked_secrets"]] == [HOOK, JWT]
    assert "sk-x" not in ok.stdout


def test_no_secrets_still_reports_every_other_problem(tmp_path: Path) -> None:
    result = run("check-policy", policy(tmp_path, extra="mode: audit\n"), "--no-secrets", env=unset_env())
    assert result.returncode == 2
    assert "mode:" in result.stderr and "unset environment variable" not in result.stderr
