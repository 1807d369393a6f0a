"""The sweep's modules import one way: no module reaches, even lazily or for type checking, a module
that (directly or not) imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import rlbench_med.runners.sweep as sweep

PACKAGE = "rlbench_med.runners.sweep"
FOLDER = Path(sweep.__file__).parent


def _module_name(path: Path) -> str:
    return "__init__" if path.stem == "__init__" else path.stem


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The sweep modules ``path`` imports anywhere in its body (top level, functions, TYPE_CHECKING blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .plan import Plan / from . import jobcache
                base = node.module or ""
                names = [base] if base else [a.name for a in node.names]
            elif node.module == PACKAGE:
                names = [a.name if a.name in modules else "__init__" for a in node.names]
            elif node.module and node.module.startswith(PACKAGE + "."):
                names = [node.module[len(PACKAGE) + 1:].split(".")[0]]
            else:
                continue
            found.update(n for n in names if n in modules)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name[len(PACKAGE) + 1:].split(".")[0])
    return found - {_module_name(path)}


def _graph() -> dict[str, set[str]]:
    paths = sorted(FOLDER.glob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_sweep_modules_import_each_other_one_way() -> None:
    graph = _graph()
    assert {"plan", "planner", "datacache", "jobcache", "results", "tracking", "calibration"} <= set(graph)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_the_plan_is_read_from_below() -> None:
    graph = _graph()
    # Plan's home imports no module that reads a plan; each of them imports the home.
    assert graph["plan"] <= {"settings"}
    for reader in ("datacache", "jobcache", "results", "tracking", "calibration", "planner"):
        assert "plan" in graph[reader], reader


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import() -> None:
    assert _cycle({"plan": {"jobcache"}, "jobcache": {"results"}, "results": {"plan"}}) == [
        "jobcache", "results", "plan", "jobcache"]
    assert _cycle({"plan": set(), "jobcache": {"plan"}}) is None
