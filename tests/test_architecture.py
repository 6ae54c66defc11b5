"""The layout shows the design: imports point one way, functions and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "akida_workflows"
PACKAGE = "akida_workflows"
FUNCTION_LIMIT, MODULE_LIMIT = 100, 900


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules) -> set[str]:
    """Project modules ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
        elif (node.module or "").startswith(PACKAGE):
            target = node.module.removeprefix(PACKAGE).lstrip(".")
        else:
            continue
        subs = {f"{target}.{a.name}" if target else a.name for a in node.names} & modules.keys()
        deps |= subs or ({target} if target in modules else set())
    deps.discard(name)
    return deps


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_cycle_between_project_modules():
    # function-local imports count too: a cycle dodged by importing late is still a cycle
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_low_layers_import_no_pipeline_stage():
    graph = import_graph()
    leaves = {"errors", "tables", "validation", "graph", "_quiet"}
    stages = {"compat", "convert", "deploy", "evaluate", "cli", "keras_bridge", "export"}
    for leaf in leaves:
        assert not graph[leaf] & stages, (leaf, graph[leaf])
    assert not {d for d in graph["graph"]} - {"errors"}, graph["graph"]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: p.name)
def test_no_long_function(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > FUNCTION_LIMIT]
    assert not long, long


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: p.name)
def test_no_long_module(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MODULE_LIMIT, f"{path.name}: {lines} lines"
