"""Policy files: golden good/bad files, every problem reported with its location."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenward.decision import Flavour
from tokenward.policy import (
    STANDARD_ROUTES,
    Mode,
    Policy,
    PolicyError,
    load_policy,
    parse_policy,
)

POLICIES = Path(__file__).resolve().parent.parent / "policies"
GOOD = sorted((POLICIES / "good").glob("*.yaml"))
BAD = sorted((POLICIES / "bad").glob("*.yaml"))
UPSTREAM_KEY = "TOKENWARD_TEST_UPSTREAM_KEY"  # referenced by good/full.yaml
UNSET_VAR = "TOKENWARD_TEST_SURELY_UNSET_VAR"  # referenced by bad/unset_env_var.yaml


@pytest.fixture(autouse=True)
def policy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPSTREAM_KEY, "sk-test-123")
    monkeypatch.delenv(UNSET_VAR, raising=False)


def expected_where(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect:"), f"{path.name}: first line must be '# expect: <where>'"
    return first.removeprefix("# expect:").strip()


def test_golden_files_are_present() -> None:
    names = {p.stem for p in GOOD}
    assert {"minimal", "full", "custom_routes", "shadow"} <= names
    assert len(BAD) >= 11


# -- good files -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_policy_loads(path: Path) -> None:
    policy = load_policy(path)
    assert isinstance(policy, Policy)
    assert policy.routes


def test_minimal_policy_has_the_documented_defaults() -> None:
    policy = load_policy(POLICIES / "good" / "minimal.yaml")
    assert policy == load_policy(None) == parse_policy({})
    assert policy.mode is Mode.ENFORCE
    assert policy.proof.difficulty == 16
    assert policy.proof.ttl == 120
    assert policy.proof.keys_file is None
    assert policy.other_routes == "refuse"
    assert policy.upstream is None
    assert policy.store == "memory://"
    assert policy.trusted_proxies == ()
    assert policy.max_body_bytes == 1_048_576
    assert [(r.path, r.api.value) for r in policy.routes] == [(r["path"], r["api"]) for r in STANDARD_ROUTES]
    assert len(policy.routes) == 5
    for route in policy.routes:
        assert route.protect and route.methods == ("POST",)
        assert policy.difficulty_for(route) == 16
        assert policy.ttl_for(route) == 120
        assert policy.mode_for(route) is Mode.ENFORCE
        assert policy.body_cap_for(route) == 1_048_576


def test_full_policy_reads_every_setting() -> None:
    policy = load_policy(POLICIES / "good" / "full.yaml")
    assert policy.upstream is not None
    assert policy.upstream.url == "https://llm.example.com"  # trailing slash dropped
    headers = policy.upstream.headers
    assert headers["Authorization"].get_secret_value() == "Bearer sk-test-123"
    assert headers["X-Static"].get_secret_value() == "plain-value"
    assert "sk-test-123" not in repr(policy)  # credentials are masked
    assert policy.upstream.forward_client_auth is True
    assert (policy.upstream.connect_timeout, policy.upstream.read_timeout) == (3.5, 120)
    assert policy.upstream.max_connections == 64
    assert policy.store == "memory://?max_used=1000&max_keys=1000"
    assert policy.log == "sqlite:///./decisions.db"
    assert policy.trusted_proxies == ("10.0.0.0/8", "192.168.1.1", "2001:db8::/32")
    assert policy.max_body_bytes == 65536
    assert (policy.proof.difficulty, policy.proof.ttl) == (18, 60)
    assert policy.proof.keys_file == Path("/etc/tokenward/keys")
    assert policy.other_routes == "pass"
    chat = policy.route_for("/v1/chat/completions")
    assert chat is not None
    assert chat.methods == ("POST",)  # upper-cased
    assert policy.difficulty_for(chat) == 20
    assert policy.ttl_for(chat) == 30
    assert policy.mode_for(chat) is Mode.SHADOW
    assert policy.body_cap_for(chat) == 4096
    messages = policy.route_for("/v1/messages")
    assert messages is not None and messages.api is Flavour.ANTHROPIC
    assert policy.difficulty_for(messages) == 18
    assert policy.mode_for(messages) is Mode.ENFORCE
    models = policy.route_for("/v1/models")
    assert models is not None and models.protect is False


def test_shadow_policy_and_route_override() -> None:
    policy = load_policy(POLICIES / "good" / "shadow.yaml")
    assert policy.mode is Mode.SHADOW
    chat = policy.route_for("/v1/chat/completions")
    custom = policy.route_for("/api/chat")
    assert chat is not None and custom is not None
    assert policy.mode_for(chat) is Mode.SHADOW
    assert policy.mode_for(custom) is Mode.ENFORCE


def test_upstream_override_replaces_the_url() -> None:
    policy = load_policy(POLICIES / "good" / "shadow.yaml", upstream="http://10.1.2.3:8000/")
    assert policy.upstream is not None and policy.upstream.url == "http://10.1.2.3:8000"
    assert load_policy(None, upstream="http://x:1").upstream is not None


# -- route matching ---------------------------------------------------------------------------


@pytest.fixture
def custom() -> Policy:
    return load_policy(POLICIES / "good" / "custom_routes.yaml")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/chat", "/api/chat"),
        ("/api/assistant", "/api/assistant/*"),
        ("/api/assistant/", "/api/assistant/*"),
        ("/api/assistant/ask", "/api/assistant/*"),
        ("/api/assistant/a/b/c", "/api/assistant/*"),
        ("/api/assistant/health", "/api/assistant/health"),  # exact beats prefix
        ("/static/app.js", "/static/*"),
        ("/api/chat/more", None),  # an exact route is not a prefix
        ("/api/chatty", None),
        ("/api/assistantX", None),  # a prefix matches whole segments only
        ("/api", None),
        ("/", None),
        ("/v1/chat/completions", None),  # custom routes replace the standard ones
    ],
)
def test_route_for(custom: Policy, path: str, expected: str | None) -> None:
    route = custom.route_for(path)
    assert (route.path if route is not None else None) == expected


def test_longest_prefix_wins() -> None:
    policy = parse_policy({"routes": [{"path": "/api/*"}, {"path": "/api/v2/*", "difficulty": 4}, {"path": "/*"}]})
    for path, expected in [("/api/v2/x", "/api/v2/*"), ("/api/v1/x", "/api/*"), ("/x", "/*")]:
        route = policy.route_for(path)
        assert route is not None and route.path == expected, path


# -- bad files: one problem each, at the place the file's first line names --------------------


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_policy_reports_its_one_problem_where_it_is(path: Path) -> None:
    where = expected_where(path)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    assert problems[0].where == where, str(problems[0])
    assert problems[0].message
    assert info.value.source == str(path)
    assert str(path) in str(info.value)


def test_unknown_setting_message_is_helpful() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(POLICIES / "bad" / "unknown_key.yaml")
    assert "unknown setting" in info.value.problems[0].message


def test_unset_env_var_is_named() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(POLICIES / "bad" / "unset_env_var.yaml")
    assert UNSET_VAR in info.value.problems[0].message


def test_duplicate_path_is_named() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(POLICIES / "bad" / "duplicate_path.yaml")
    assert "/api/chat" in info.value.problems[0].message


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "mode": "audit",
        "colour": "blue",
        "proof": {"difficulty": 99, "ttl": 0},
        "trusted_proxies": ["not-a-cidr"],
        "upstream": {"url": "llm.example.com"},
        "routes": [
            {"path": "/ok", "api": "openai"},
            {"path": "no-slash", "api": "gemini"},
            {"path": "/a/*/b"},
        ],
    }
    with pytest.raises(PolicyError) as info:
        parse_policy(data)
    wheres = sorted(p.where for p in info.value.problems)
    assert wheres == sorted(
        [
            "mode",
            "colour",
            "proof.difficulty",
            "proof.ttl",
            "trusted_proxies",
            "upstream.url",
            "routes[1].path",
            "routes[1].api",
            "routes[2].path",
        ]
    )
    text = str(info.value)
    assert "9 problem(s)" in text
    for where in wheres:
        assert where in text


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "absent.yaml")
    assert "cannot read" in info.value.problems[0].message


def test_parse_policy_refuses_a_non_mapping() -> None:
    with pytest.raises(PolicyError):
        parse_policy(["/api/chat"])


def test_policy_is_immutable() -> None:
    policy = parse_policy({})
    with pytest.raises(ValueError):
        policy.mode = Mode.SHADOW  # type: ignore[misc]
