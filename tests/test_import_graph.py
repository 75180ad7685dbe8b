"""The import graph of the package: no circle between its modules, and no private name taken from
another module. Read from the source with `ast`, so an import inside a function counts as much as one
at the top. Left out of the circle check: imports under `if TYPE_CHECKING:` (never run), and under
`if __name__ == "__main__":`, which run in the module object `__main__` (the file run as a command),
not in the module the graph names, so they close no circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the folders and the import names pyproject.toml maps them to
PACKAGES = {"models": "pausecast.models", "sim": "pausecast.sim", "executor": "pausecast.executor",
            "pausecast": "pausecast"}

def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (folders without __init__.py hold data)."""
    out = {}
    for folder, name in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            if not (path.parent / "__init__.py").exists():
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((name, *parts))] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def _imports(module: str, path: Path) -> list[tuple[str, str | None, bool]]:
    """(imported module, the name the import binds from it or None for `import x`, only under
    TYPE_CHECKING) for each project import in the file, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, str | None, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name, None, typing_only) for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if alias.name.startswith("__"):
                    # `from .. import __version__`: package metadata; the package is imported anyway
                    continue
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:
                    found.append((submodule, alias.name, typing_only))
                elif source in MODULES:
                    found.append((source, alias.name, typing_only))
        if isinstance(node, ast.If) and (_is_type_checking(node.test) or _is_main_guard(node.test)):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


IMPORTS = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_walk_sees_the_package():
    assert {"pausecast.models.scenario", "pausecast.sim.engine", "pausecast.cli"} <= set(MODULES)
    assert ("pausecast.models.scenario", "Scenario", False) in IMPORTS["pausecast.sim.engine"]
    # a relative import inside a function, and one of a submodule by name
    assert ("pausecast.sim.fleet", "simulate_fleet", False) in IMPORTS["pausecast.runs.sweep"]
    assert ("pausecast.sim.compiled", "compiled", False) in IMPORTS["pausecast.sim.fast"]


def test_imports_under_type_checking_are_marked(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from .scenario import Scenario\n"
                      "def f():\n    from . import units\n    from .. import __version__\n"
                      "if __name__ == '__main__':\n    from .files import main\n")
    assert _imports("pausecast.models.probe", source) == [
        ("pausecast.models.scenario", "Scenario", True), ("pausecast.models.units", "units", False),
        ("pausecast.models.files", "main", True)]


def test_a_circle_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    graph = {m: {target for target, _, typing_only in found if not typing_only and target != m}
             for m, found in IMPORTS.items()}
    assert _cycles(graph) == []


def test_no_private_name_from_another_module():
    private = {(m, target, name) for m, found in IMPORTS.items() for target, name, _ in found
               if name is not None and name.startswith("_")}
    assert private == set()
