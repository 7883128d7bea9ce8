"""The deployment artefacts: Dockerfile, .dockerignore, compose.yaml and deploy/policy.yaml.

Checks that always run: the files parse and say what docs/operations.md ("Running in
containers") promises, and the command lines they run (the image's ENTRYPOINT + CMD,
the compose gateway's ``serve`` and its ``db init``) run here for real, against the
mounted policy, a real redis-server and the machine's PostgreSQL, with the compose
file's own environment interpolated. Where a container engine answers (``docker
info``), the image is built and the compose stack is started and called.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from tests.conftest import ROOT, TOKENWARD, Upstream, free_port, stop, wait_http
from tests.independent_client import chat_body, get_challenge, proof_header
from tests.services import RedisServer, need_redis

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
PG_ADMIN_DSN = os.environ.get("TOKENWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.I)
REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# --------------------------------------------------------------------------------------
# Reading the files
# --------------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order; continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        instruction, _, args = full.partition(" ")
        out.append((instruction.upper(), args.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return out


def instructions(name: str) -> list[str]:
    return [args for instr, args in dockerfile() if instr == name]


def exec_form(args: str) -> list[str]:
    """An instruction's JSON (exec) form: no shell between the runtime and the process, so
    SIGTERM reaches tokenward and it drains (docs/operations.md)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), args
    return value


def image_command() -> list[str]:
    (entrypoint,) = instructions("ENTRYPOINT")
    (cmd,) = instructions("CMD")
    return exec_form(entrypoint) + exec_form(cmd)


def image_files() -> dict[str, Path]:
    """Where each COPY puts a file of the repository in the image (destination -> source)."""
    out: dict[str, Path] = {}
    for args in instructions("COPY"):
        parts = args.split()
        assert not any(p.startswith("--from") for p in parts), "COPY --from: check the stage by hand"
        *sources, dest = [p for p in parts if not p.startswith("--")]
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the repository"
            target = dest.rstrip("/") + "/" + path.name if dest.endswith("/") else dest
            out[target] = path
    return out


def flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} once in {argv}"
    return argv[argv.index(name) + 1]


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and (value is None or (op == ":-" and not value)):
            return arg
        return value or ""

    return REF.sub(one, value)


def service_env(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "environment as a mapping"
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def mounted_policy(service: Mapping[str, Any]) -> tuple[str, Path]:
    """The ``--policy`` path a service's command names and the repository file mounted there."""
    path = flag(service["command"], "--policy")
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        target = rest.split(":")[0]
        if target == path:
            assert source.startswith("./"), f"{volume}: a file of the repository"
            return path, ROOT / source
    raise AssertionError(f"nothing is mounted at {path}")


def check_policy_env() -> dict[str, str]:
    """The secrets the compose policy names, as the gateway's environment would hold them."""
    return {**os.environ, "UPSTREAM_API_KEY": "test-key", "PGPASSWORD": "test"}


def load_compose_policy() -> Any:
    from tokenward.policy import load_policy

    _, path = mounted_policy(compose()["services"]["gateway"])
    old = os.environ.get("UPSTREAM_API_KEY")
    os.environ["UPSTREAM_API_KEY"] = "test-key"
    try:
        return load_policy(path)
    finally:
        if old is None:
            del os.environ["UPSTREAM_API_KEY"]
        else:
            os.environ["UPSTREAM_API_KEY"] = old


# --------------------------------------------------------------------------------------
# .dockerignore, as the builder reads it
# --------------------------------------------------------------------------------------
def _pattern(p: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern matching the path
    or one of its parent directories decides; ``!`` patterns take it back."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = _pattern(raw.lstrip("!").strip("/"))
        if any(pattern.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --------------------------------------------------------------------------------------
# Always: the files say what they must
# --------------------------------------------------------------------------------------
def test_dockerfile_installs_the_source_with_redis_and_postgres_and_runs_serve_unprivileged() -> None:
    steps = dockerfile()
    assert steps[0][0] in ("FROM", "ARG")
    (run_install,) = [a for a in instructions("RUN") if "pip install" in a]
    # From the source tree the Dockerfile copied, with the store and log extras.
    match = re.search(r"pip install\s+\"?(\S+?)\[([a-z,]+)\]\"?", run_install)
    assert match, run_install
    assert {"redis", "postgres"} <= set(match.group(2).split(","))
    copied = image_files()
    source_dir = match.group(1).rstrip("/")
    assert copied.get(f"{source_dir}/pyproject.toml") == ROOT / "pyproject.toml"
    assert copied.get(f"{source_dir}/src") == ROOT / "src"
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert copied.get(f"{source_dir}/{readme}") == ROOT / readme  # the build reads it
    # No index named: pip's configured one is used; no host other than loopback anywhere.
    assert "index-url" not in run_install and "--find-links" not in run_install
    for _, args in steps:
        for host in re.findall(r"https?://([^/:'\"\s]+)", args):
            assert host in ("127.0.0.1", "localhost"), f"{host} in the Dockerfile"
    assert not [a for a in instructions("ENV") if SECRET_NAME.search(a.split("=")[0])], "secrets in ENV"

    # Unprivileged: the last USER is not root, and nothing runs after it as another user.
    users = [(i, args) for i, (instr, args) in enumerate(steps) if instr == "USER"]
    assert users, "no USER: the gateway would run as root"
    last_user, user = users[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert all(i < last_user for i, (instr, _) in enumerate(steps) if instr == "RUN")
    name = user.split(":")[0]
    assert re.search(rf"useradd\b.*\b{re.escape(name)}\b", run_install), f"user {name} is created"

    assert "8080" in " ".join(instructions("EXPOSE")).split()
    argv = image_command()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts and argv[1] == "serve"
    assert flag(argv, "--host") == "0.0.0.0" and flag(argv, "--port") == "8080"
    assert flag(argv, "--policy") in copied, "the policy the image serves is copied into it"

    (health,) = instructions("HEALTHCHECK")
    probe = exec_form(health[health.index("CMD") + 3 :].strip())
    assert "http://127.0.0.1:8080/.tokenward/health" in " ".join(probe)


def test_the_image_command_line_is_one_tokenward_accepts() -> None:
    """ENTRYPOINT + CMD run here as the image would, with the policy it copies: the
    options parse, and the policy is valid."""
    argv = image_command()
    copied = image_files()
    policy = copied[flag(argv, "--policy")]
    local = [str(policy) if a == flag(argv, "--policy") else a for a in argv[1:]]
    out = subprocess.run([*TOKENWARD, *local, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in (a for a in argv if a.startswith("--")):
        assert option in out.stdout
    checked = subprocess.run(
        [*TOKENWARD, "check-policy", str(policy)], capture_output=True, text=True, timeout=60, env=check_policy_env()
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dockerignore_keeps_what_the_build_copies_and_nothing_local() -> None:
    patterns = dockerignore_patterns()
    tracked = subprocess.run(
        ["git", "ls-files", "src", "pyproject.toml", "README.md", "deploy"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(tracked) > 50
    for source in image_files().values():
        rel = source.relative_to(ROOT).as_posix()
        needed = [t for t in tracked if t == rel or t.startswith(rel + "/")] or [rel]
        left_out = [t for t in needed if dockerignored(t, patterns)]
        assert not left_out, f"the build copies {rel} but .dockerignore leaves out {left_out[:5]}"
    for local in (".git/HEAD", ".venv/bin/python", "src/tokenward/__pycache__/cli.cpython-311.pyc",
                  "tokenward.db", "tokenward-journal.d/x.0", ".env", "tests/x/y.db"):  # fmt: skip
        assert dockerignored(local, patterns), f"{local} would be sent to the builder"


def test_dockerignore_matcher() -> None:
    assert dockerignored("a/b/c.pyc", ["**/*.pyc"]) and dockerignored("c.pyc", ["**/*.pyc"])
    assert dockerignored("build/x", ["build"]) and not dockerignored("src/build", ["build"])
    assert not dockerignored("x.md", ["*.md", "!x.md"]) and dockerignored("y.md", ["*.md", "!x.md"])


def test_compose_runs_gateway_redis_postgres_with_healthchecks_and_db_init_first() -> None:
    services = compose()["services"]
    assert {"gateway", "redis", "postgres"} <= set(services)
    gateway, redis, postgres = services["gateway"], services["redis"], services["postgres"]
    build = gateway["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (ROOT / context / "Dockerfile").resolve() == DOCKERFILE

    argv = [str(a) for a in gateway["command"]]
    assert argv[0] == "serve" and flag(argv, "--host") == "0.0.0.0"
    port = flag(argv, "--port")
    assert any(str(p).endswith(f":{port}") for p in gateway["ports"]), gateway["ports"]
    assert port in " ".join(instructions("EXPOSE")).split()

    for name, service in services.items():
        if name != "db-init":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("user") in (None,) and not service.get("privileged"), name
    probe = " ".join(gateway["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/.tokenward/health" in probe

    # db init, with the same image, policy and secrets, completes before serve starts.
    inits = [n for n, s in services.items() if list(map(str, s.get("command", [])))[:2] == ["db", "init"]]
    assert len(inits) == 1, "one service runs tokenward db init"
    init = services[inits[0]]
    assert init["build"] == gateway["build"]
    assert mounted_policy(init) == mounted_policy(gateway)
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(init["environment"].items()) <= set(gateway["environment"].items())
    needs = gateway["depends_on"]
    assert needs[inits[0]]["condition"] == "service_completed_successfully"
    assert needs["redis"]["condition"] == needs["postgres"]["condition"] == "service_healthy"

    # The admin listener: on every interface of the container only with a required
    # token, and published on the host's loopback only.
    admin_port = flag(argv, "--admin-port")
    published = [str(p) for p in gateway["ports"] if str(p).endswith(f":{admin_port}")]
    assert published and all(p.startswith("127.0.0.1:") for p in published), gateway["ports"]
    token = REF.fullmatch(gateway["environment"]["TOKENWARD_ADMIN_TOKEN"])
    assert flag(argv, "--admin-host") in ("127.0.0.1", "::1") or (token and token.group(2) == ":?")
    assert flag(argv, "--log-format") == "json"

    # Redis must not evict a consumed challenge or a budget (docs/stores.md).
    assert "noeviction" in redis["command"]
    assert "pg_isready" in postgres["healthcheck"]["test"]


def test_compose_policy_is_valid_and_names_the_compose_services() -> None:
    services = compose()["services"]
    gateway, postgres = services["gateway"], services["postgres"]
    _, policy_file = mounted_policy(gateway)
    checked = subprocess.run(
        [*TOKENWARD, "check-policy", str(policy_file)],
        capture_output=True, text=True, timeout=60, env=check_policy_env(),
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    pol = load_compose_policy()
    store, log = urlsplit(pol.store), urlsplit(pol.log)
    assert store.scheme == "redis" and store.hostname == "redis" and (store.port or 6379) == 6379
    assert log.scheme in ("postgresql", "postgres") and log.hostname == "postgres" and (log.port or 5432) == 5432
    assert log.username == postgres["environment"]["POSTGRES_USER"]
    assert log.path.lstrip("/") == postgres["environment"]["POSTGRES_DB"]
    assert store.password is None and log.password is None, "no password in the policy"
    # The PostgreSQL journal is on a volume that outlives the container.
    (journal,) = parse_qs(log.query)["journal"]
    mounts = [v.split(":")[1] for v in gateway["volumes"] if not v.startswith("./")]
    assert any(journal == m or journal.startswith(m.rstrip("/") + "/") for m in mounts), (journal, mounts)
    # Several workers need the shared store.
    assert int(flag([str(a) for a in gateway["command"]], "--workers")) > 1


def test_secrets_come_from_the_environment() -> None:
    data = compose()
    services = data["services"]
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert REF.fullmatch(str(value)), f"{name}: {key} is a literal, not ${{VAR}}"
    # The gateway's database password is the one PostgreSQL is started with; the
    # required ones stop `docker compose up` with a message when unset.
    pg = REF.fullmatch(services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    gw = REF.fullmatch(services["gateway"]["environment"]["PGPASSWORD"])
    assert pg and gw and pg.group(1) == gw.group(1) and pg.group(2) == ":?"
    keys = REF.fullmatch(services["gateway"]["environment"]["TOKENWARD_KEYS"])
    assert keys and keys.group(2) == ":?", "every worker must share the signing keys"
    with pytest.raises(KeyError, match="TOKENWARD_KEYS"):
        service_env(services["gateway"], {"UPSTREAM_API_KEY": "k", "POSTGRES_PASSWORD": "p"})
    # The policy's upstream credentials are ${VAR} references too.
    _, policy_file = mounted_policy(services["gateway"])
    raw = yaml.safe_load(policy_file.read_text())
    for header, value in raw["upstream"]["headers"].items():
        assert REF.search(value), f"upstream.headers.{header} holds a literal"
    for path in (DOCKERFILE, COMPOSE, policy_file):
        assert not re.search(r"://[^/\s:@]+:[^/\s@$]+@", path.read_text()), f"a password in a URI in {path.name}"


def test_interpolation() -> None:
    assert interpolate("${A:-x}-${B-y}-${C}", {"B": ""}) == "x--"
    with pytest.raises(KeyError, match="A: say"):
        interpolate("${A:?say}", {"A": ""})
    assert interpolate("${A?say}", {"A": ""}) == ""


# --------------------------------------------------------------------------------------
# Always: the compose commands, run here against real Redis and PostgreSQL
# --------------------------------------------------------------------------------------
@pytest.fixture
def pg_database() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}")
    name = f"tokenward_deploy_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_DSN.rpartition('/')[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _localized(argv: list[str], policy: Path, **ports: int) -> list[str]:
    """The compose command with the container's policy path and ports (``port=``,
    ``admin_port=``) replaced by ours."""
    out = [str(policy) if a == flag(argv, "--policy") else a for a in argv]
    for name, value in ports.items():
        i = out.index("--" + name.replace("_", "-"))
        out[i + 1] = str(value)
    return out


@pytest.mark.timeout(180)
def test_compose_commands_run_here_against_real_redis_and_postgres(
    tmp_path: Path, demo_upstream: Upstream, pg_database: str
) -> None:
    """db init, then the gateway's serve, exactly as compose.yaml runs them (environment
    interpolated as compose does), with the mounted policy; only the service host names
    become the local Redis and PostgreSQL and the journal a temp directory."""
    need_redis()
    services = compose()["services"]
    gateway = services["gateway"]
    init = next(s for s in services.values() if list(map(str, s.get("command", [])))[:2] == ["db", "init"])
    _, policy_file = mounted_policy(gateway)
    data = yaml.safe_load(policy_file.read_text())
    with RedisServer(tmp_path) as redis:
        store = urlsplit(data["store"])
        data["store"] = f"{redis.url}?{store.query}"
        log = urlsplit(data["log"])
        data["log"] = f"{pg_database}?journal={tmp_path / 'journal'}"
        assert parse_qs(log.query).keys() == {"journal"}, "options other than journal: keep them here too"
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(data))

        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        outside = {
            "UPSTREAM_URL": demo_upstream.url, "UPSTREAM_API_KEY": "test-key", "POSTGRES_PASSWORD": "unused-here",
            "TOKENWARD_KEYS": key, "TOKENWARD_ADMIN_TOKEN": secrets.token_urlsafe(32),
        }  # fmt: skip
        init_env = {**os.environ, **service_env(init, outside)}
        done = subprocess.run(
            [*TOKENWARD, *_localized([interpolate(str(a), outside) for a in init["command"]], policy)],
            capture_output=True, text=True, timeout=60, env=init_env, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        import psycopg

        with psycopg.connect(pg_database) as conn:
            assert conn.execute("SELECT count(*) FROM decisions").fetchone() == (0,)

        port, admin_port = free_port(), free_port()
        argv = _localized(
            [interpolate(str(a), outside) for a in gateway["command"]], policy, port=port, admin_port=admin_port
        )
        assert flag(argv, "--upstream") == demo_upstream.url
        proc = subprocess.Popen(
            [*TOKENWARD, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, **service_env(gateway, outside)}, cwd=tmp_path,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        probe = [a.replace(":8080/", f":{port}/") for a in gateway["healthcheck"]["test"][1:]]
        probe[0] = sys.executable if probe[0] == "python" else probe[0]
        try:
            wait_http(f"{url}/.tokenward/health", proc, timeout=60)
            assert subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
            body = chat_body("What does the gateway do?")
            refused = httpx.post(f"{url}/v1/chat/completions", content=body, timeout=10)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "proof_required"
            proof = proof_header(get_challenge(url, "/v1/chat/completions"), body)
            ok = httpx.post(f"{url}/v1/chat/completions", content=body, headers={"Tokenward-Proof": proof}, timeout=30)
            assert ok.status_code == 200, ok.text
            assert ok.json()["choices"][0]["message"]["content"]
            ids = {refused.headers["tokenward-request-id"]: "challenge", ok.headers["tokenward-request-id"]: "allow"}
            deadline = time.monotonic() + 20
            rows: dict[str, str] = {}
            while time.monotonic() < deadline and rows != ids:
                with psycopg.connect(pg_database) as conn:
                    found = conn.execute(
                        "SELECT request_id, action FROM decisions WHERE request_id = ANY(%s)", (list(ids),)
                    ).fetchall()
                rows = dict(found)
                time.sleep(0.2)
            assert rows == ids, "the decisions reached PostgreSQL"
            # The admin listener serves the metrics with the token, and only with it.
            metrics = f"http://127.0.0.1:{admin_port}/metrics"
            assert httpx.get(metrics, timeout=10).status_code == 401
            bearer = {"Authorization": f"Bearer {outside['TOKENWARD_ADMIN_TOKEN']}"}
            scraped = httpx.get(metrics, headers=bearer, timeout=10)
            assert scraped.status_code == 200 and "tokenward_decisions_total{" in scraped.text
        finally:
            code = stop(proc, timeout=40)
            output = proc.stdout.read().decode() if proc.stdout else ""
        assert code == 0, output
        # --log-format json: every line the gateway wrote is a JSON object.
        lines = [line for line in output.splitlines() if line.strip()]
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), output[-2000:]
        assert subprocess.run(probe, capture_output=True, timeout=10).returncode != 0, (
            "healthcheck of a stopped gateway"
        )


# --------------------------------------------------------------------------------------
# Where a container engine runs: build the image and start the stack
# --------------------------------------------------------------------------------------
def _engine() -> list[str]:
    """The compose command line; skips the test, with the reason, where none can run."""
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"no container engine: `docker info` fails: {reason}")
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("a container engine runs, but neither `docker compose` nor docker-compose is installed")


@pytest.mark.timeout(1800)
def test_image_builds_and_the_stack_serves(tmp_path: Path) -> None:
    compose_cmd = _engine()
    tag = f"tokenward-test:{secrets.token_hex(4)}"
    built = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1500)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    try:
        uid = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True, timeout=120
        )  # fmt: skip
        assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), uid.stdout + uid.stderr
        helped = subprocess.run(
            ["docker", "run", "--rm", tag, "serve", "--help"], capture_output=True, text=True, timeout=120
        )
        assert helped.returncode == 0 and "--upstream" in helped.stdout, helped.stdout + helped.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)

    # The stack, with the demo LLM (shipped in the image) as its upstream.
    override = tmp_path / "compose.test.yaml"
    override.write_text(
        yaml.safe_dump({
            "services": {"llm": {
                "build": str(ROOT),
                "entrypoint": ["python", "-m", "tokenward.demo.upstream", "--host", "0.0.0.0", "--port", "8000"],
            }},
        })
    )  # fmt: skip
    port, admin_port = free_port(), free_port()
    project = f"tokenward-test-{secrets.token_hex(4)}"
    env = {
        **os.environ, "UPSTREAM_URL": "http://llm:8000", "UPSTREAM_API_KEY": "test-key",
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24), "TOKENWARD_PORT": str(port),
        "TOKENWARD_ADMIN_PORT": str(admin_port), "TOKENWARD_ADMIN_TOKEN": secrets.token_urlsafe(32),
        "TOKENWARD_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
    }  # fmt: skip
    stack = [*compose_cmd, "-p", project, "--project-directory", str(ROOT), "-f", str(COMPOSE), "-f", str(override)]
    try:
        up = subprocess.run(
            [*stack, "up", "-d", "--build", "--wait"], capture_output=True, text=True, env=env, timeout=1500
        )
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/.tokenward/health", timeout=10).json() == {"status": "ok"}
        body = chat_body("Hello from the container test")
        refused = httpx.post(f"{url}/v1/chat/completions", content=body, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "proof_required"
        proof = proof_header(get_challenge(url, "/v1/chat/completions"), body)
        ok = httpx.post(f"{url}/v1/chat/completions", content=body, headers={"Tokenward-Proof": proof}, timeout=60)
        assert ok.status_code == 200, ok.text
        request_id = ok.headers["tokenward-request-id"]
        query = f"SELECT action FROM decisions WHERE request_id = '{request_id}'"
        deadline = time.monotonic() + 30
        action = ""
        while time.monotonic() < deadline and action != "allow":
            psql = [*stack, "exec", "-T", "postgres", "psql", "-U", "tokenward", "-d", "tokenward", "-tAc", query]
            action = subprocess.run(psql, capture_output=True, text=True, env=env, timeout=60).stdout.strip()
            time.sleep(0.5)
        assert action == "allow", "the decision reached the compose PostgreSQL"
        bearer = {"Authorization": f"Bearer {env['TOKENWARD_ADMIN_TOKEN']}"}
        scraped = httpx.get(f"http://127.0.0.1:{admin_port}/metrics", headers=bearer, timeout=10)
        assert scraped.status_code == 200 and "tokenward_decisions_total{" in scraped.text
    finally:
        subprocess.run([*stack, "down", "-v", "--rmi", "local"], capture_output=True, env=env, timeout=600)
