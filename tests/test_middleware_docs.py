"""docs/middleware.md runs as written: its files are written out, each app is served by
uvicorn on a free port (``uvicorn NAME:app``, as the page says) and each client runs
against it as a script, with the page's ``http://localhost:8000`` replaced by the port."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.conftest import ROOT, free_port, stop, wait_http
from tests.independent_client import get_challenge, proof_header

from tokenward import TokenwardMiddleware
from tokenward.policy import parse_policy

DOC = ROOT / "docs" / "middleware.md"
PAGE_URL = "http://localhost:8000"
# Which client runs against which app; every file the page names must be used here.
RUNS = [
    ("app.py", "client.py"),
    ("app_add_middleware.py", "client.py"),
    ("echo.py", "echo_client.py"),
    ("accounts.py", "accounts_client.py"),
]
POLICIES = {"tokenward.yaml", "tokenward-accounts.yaml"}


def doc_files() -> dict[str, str]:
    """The page's fenced python and yaml blocks, by the file name on their first line."""
    files: dict[str, str] = {}
    for lang, code in re.findall(r"^```(python|yaml)\n(.*?)^```", DOC.read_text(), re.M | re.S):
        first = code.splitlines()[0]
        name = re.fullmatch(r"# ([\w.-]+\.(?:py|yaml))", first)
        if name is None:
            assert len(code.splitlines()) == 1, f"a {lang} block without a '# FILE' first line:\n{code}"
            continue  # a one-line snippet (the install line), run by the apps below
        assert name.group(1) not in files, f"two blocks named {name.group(1)}"
        files[name.group(1)] = code
    return files


def test_every_example_on_the_page_is_run() -> None:
    files = doc_files()
    assert set(files) == {f for run in RUNS for f in run} | POLICIES
    one_liner = 'app = TokenwardMiddleware(app, policy="tokenward.yaml")'
    assert one_liner in DOC.read_text().split("## A first app")[0] and one_liner in files["app.py"]


@contextmanager
def served(directory: Path, module: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port), "--log-level", "warning"],
        cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/.tokenward/health", proc, timeout=30)
        yield url
    finally:
        code = stop(proc)
        out = proc.stdout.read().decode() if proc.stdout else ""
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it (exit by the signal).
        assert code in (0, -signal.SIGTERM), f"uvicorn {module}:app exited with {code}:\n{out}"
        assert "Traceback" not in out, out


def run_client(directory: Path, name: str, code: str, url: str) -> str:
    script = directory / f"run_{name}"
    script.write_text(code.replace(PAGE_URL, url))
    done = subprocess.run([sys.executable, str(script)], cwd=directory, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{name} against {url}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("app", "client"), RUNS)
def test_example_runs(tmp_path: Path, app: str, client: str) -> None:
    files = doc_files()
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    with served(tmp_path, app.removesuffix(".py")) as url:
        out = run_client(tmp_path, client, files[client], url)
    if client == "client.py":
        assert out.splitlines() == ["You said: hello", "allow"]
        with sqlite3.connect(tmp_path / "tokenward.db") as conn:
            actions = sorted(a for (a,) in conn.execute("SELECT action FROM decisions"))
        assert actions == ["allow", "challenge"]  # the call without a proof, the proved one
    if client == "accounts_client.py":
        assert out.splitlines()[-1] == "[200, 200, 200, 429] 200"
        with sqlite3.connect(tmp_path / "accounts.db") as conn:
            rows = conn.execute("SELECT account, action FROM decisions WHERE action != 'challenge'").fetchall()
        accounts = sorted((a or "-", act) for a, act in rows)
        assert accounts == [("-", "allow"), ("alice", "allow"), ("alice", "allow"), ("alice", "allow"),
                            ("alice", "throttle"), ("bob", "allow")]  # fmt: skip


def test_a_rewritten_body_reaches_the_app_with_its_own_length(tmp_path: Path) -> None:
    """The app reads the body tokenward planned (here: an OpenAI stream asked for its
    usage) with a Content-Length that is that body's, not the client's."""
    import threading

    import uvicorn

    async def chat(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"length": request.headers.get("content-length"), "body": body.decode()})

    policy = parse_policy({
        "log": f"sqlite:///{tmp_path / 'mw.db'}", "proof": {"difficulty": 4},
        "routes": [{"path": "/v1/chat/completions", "api": "openai"}],
    })  # fmt: skip
    inner = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(TokenwardMiddleware(inner, policy), host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        url = f"http://127.0.0.1:{server.config.port}"
        body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
        for framing in ({"Content-Length": str(len(body))}, {"Transfer-Encoding": "chunked"}):
            proof = proof_header(get_challenge(url, "/v1/chat/completions"), body)
            content = body if "Content-Length" in framing else iter([body[:10], body[10:]])
            r = httpx.post(f"{url}/v1/chat/completions", content=content, headers={"Tokenward-Proof": proof})
            assert r.status_code == 200, r.text
            seen = r.json()
            assert '"include_usage":true' in seen["body"].replace(" ", "")
            assert seen["length"] == str(len(seen["body"].encode())), framing
    finally:
        server.should_exit = True
        thread.join(10)
