"""Import layers: no cycle between tokenward's modules, nor between its packages.

The graph is read from the source with ``ast`` (nothing is imported): every module-level
``import``/``from ... import`` of a ``tokenward`` module, skipping imports inside
functions (deliberately lazy) and under ``if TYPE_CHECKING:`` (never run). Two views:

* **modules** — an edge to the module named (``from .x import y`` is an edge to ``x``,
  or to ``x.y`` when ``y`` is a submodule). A package's ``__init__`` importing its own
  submodules is how packages work, so edges are not added to parent packages implicitly.
* **units** — each module collapsed to its top-level unit under ``tokenward``
  (``tokenward.content.purpose`` -> ``content``, ``tokenward.guard`` -> ``guard``): a
  cycle here is two areas of the code that each need the other.

A cycle listed in ``ALLOWED_*`` is tolerated (none is today); any other cycle fails with
one concrete loop spelled out (``a -> b -> a``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "tokenward"

# Known cycles, each as the sorted tuple of its members (modules or units), e.g.
# ("tokenward.guard", "tokenward.policy") or ("content", "signals"). Empty since the call
# reader moved out of content/ (content/turns.py -> transcript.py, issue 13): keep them
# empty. An entry whose cycle is gone fails the test, so the sets never go stale.
ALLOWED_MODULE_CYCLES: frozenset[tuple[str, ...]] = frozenset()
ALLOWED_UNIT_CYCLES: frozenset[tuple[str, ...]] = frozenset()


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _module_level(body: Iterable[ast.stmt]) -> Iterable[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (not in functions, not TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name != "TYPE_CHECKING":
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)
        # def/class bodies: imports there are lazy on purpose


def _imports(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _module_level(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            mod = ".".join([*base, node.module] if node.module else base)
        else:
            mod = node.module or ""
        for alias in node.names:
            sub = f"{mod}.{alias.name}"
            targets.add(sub if sub in known else mod)
    return {t for t in targets if t in known and t != name}


def graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def unit_graph(modules: Mapping[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for src, targets in modules.items():
        out.setdefault(_unit(src), set()).update(_unit(t) for t in targets if _unit(t) != _unit(src))
    return out


def cycles(g: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                out.append(sorted(members))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


def path_through(g: Mapping[str, set[str]], members: list[str]) -> str:
    """One concrete loop inside a component, for the message: a -> b -> ... -> a."""
    inside = set(members)
    start = members[0]
    # breadth-first from start's successors back to start, staying inside the component
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(g.get(v, set()) & inside):
                if w == start:
                    loop = [start]
                    while v != start:
                        loop.append(v)
                        v = previous[v]
                    return " -> ".join([start, *reversed(loop[1:]), start])
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return " -> ".join(members)


def _report(g: Mapping[str, set[str]], found: list[list[str]], allowed: frozenset[tuple[str, ...]]) -> str:
    lines = []
    new = [c for c in found if tuple(c) not in allowed]
    for c in new:
        lines.append(f"new import cycle among {', '.join(c)}: {path_through(g, c)}")
    gone = allowed - {tuple(c) for c in found}
    for c in sorted(gone):
        lines.append(f"allowed cycle {c} no longer exists (or changed): remove it from the ALLOWED set")
    return "\n".join(lines)


def test_the_graph_sees_tokenward() -> None:
    g = graph()
    assert "tokenward.guard.pipeline" in g and "tokenward.policy" in g["tokenward.guard.pipeline"]
    assert "tokenward.store" in g["tokenward.store.memory"] or "tokenward.store.base" in g["tokenward.store.memory"]


def test_no_import_cycle_between_modules() -> None:
    g = graph()
    message = _report(g, cycles(g), ALLOWED_MODULE_CYCLES)
    assert not message, message


def test_no_import_cycle_between_packages() -> None:
    g = unit_graph(graph())
    message = _report(g, cycles(g), ALLOWED_UNIT_CYCLES)
    assert not message, message


def test_a_cycle_is_found_and_named() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert _report(g, cycles(g), frozenset()) == "new import cycle among a, b, c: a -> b -> c -> a"
    assert _report(g, cycles(g), frozenset({("a", "b", "c")})) == ""


GUARD_STAGES = (
    "base", "plan", "challenges", "devices", "conversations", "decide", "signed_requests", "families", "settle",
    "pipeline",
)  # fmt: skip


def test_the_guard_stages_are_layered_in_pipeline_order() -> None:
    """A stage imports only the stages before it (base first, the pipeline last), so a
    newcomer can read the guard from the bottom up."""
    g = graph()
    stages = {f"tokenward.guard.{s}" for s in GUARD_STAGES}
    assert stages <= set(g), sorted(stages - set(g))
    upward = [
        f"{a} imports {b}"
        for i, a in enumerate(GUARD_STAGES)
        for b in GUARD_STAGES[i + 1 :]
        if f"tokenward.guard.{b}" in g[f"tokenward.guard.{a}"]
    ]
    assert not upward, upward


# -- sizes a newcomer can hold in their head ---------------------------------------------

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# Modules a protected request runs through, from the edge to the decision log.
REQUEST_PATH = ("tokenward.http", "tokenward.guard", "tokenward.signals", "tokenward.proof", "tokenward.store",
                "tokenward.money", "tokenward.content", "tokenward.trusted_clients", "tokenward.facts",
                "tokenward.transcript", "tokenward.decision", "tokenward.scoring", "tokenward.limits",
                "tokenward.log")  # fmt: skip
# Start-up only: runs once, before the first request.
NOT_PER_REQUEST = {"tokenward.store.redis.open_redis_store"}


def test_no_module_is_longer_than_a_newcomer_can_read() -> None:
    long = {
        name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_on_the_request_path_is_longer_than_a_screen() -> None:
    long = {}
    for name, path in _modules().items():
        if not name.startswith(REQUEST_PATH):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES and f"{name}.{node.name}" not in NOT_PER_REQUEST:
                    long[f"{name}.{node.name}"] = size
    assert not long, f"request-path functions over {MAX_FUNCTION_LINES} lines: {long}"
