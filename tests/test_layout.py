"""The house rules a reviewer would check by hand: no import cycles, no unexplained long module.

Static (``ast``) so that it needs no optional dependency. An edge is any import of one
package module by another: at module level, in ``if TYPE_CHECKING:`` blocks (a cycle
through annotations is still a cycle) and inside functions (loading a module late hides a
cycle from the import system, not from the design).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tracker"
LONG_MODULE_LINES = 600
LONG_REASON = "Long on purpose:"  # what a docstring says when a module is longer than that


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "v1" not in p.relative_to(PACKAGE).parts}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (module level, TYPE_CHECKING, functions)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that returns to its start, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_type_checking_relative_and_late_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "tracker"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    a_source = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from tracker import b\n"
    (pkg / "a.py").write_text(a_source)
    (pkg / "b.py").write_text("from .sub import c\n")
    (pkg / "sub" / "c.py").write_text("def f():\n    from tracker import a\n")  # late: an edge too
    mods = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in pkg.rglob("*.py")
    }
    graph = import_graph(mods)
    assert graph["tracker.a"] == {"tracker.b"}
    assert graph["tracker.b"] == {"tracker.sub.c"}
    assert graph["tracker.sub.c"] == {"tracker.a"}
    assert find_cycle(graph) == ["tracker.a", "tracker.b", "tracker.sub.c", "tracker.a"]


def test_the_package_has_no_import_cycle() -> None:
    modules = _modules()
    assert len(modules) > 50  # the scan really read the package
    assert find_cycle(import_graph(modules)) is None


@pytest.mark.parametrize("folder", ["tracker", "bench", "tests"])
def test_a_module_over_600_lines_says_why(folder: str) -> None:
    long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if "v1" in path.parts:  # generated protobuf code
            continue
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LONG_MODULE_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if LONG_REASON not in doc:
                long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, f"over {LONG_MODULE_LINES} lines with no '{LONG_REASON}' in the docstring: {long}"
