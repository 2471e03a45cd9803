"""Imports only go down: no module of reasongen/, annotation/, training/ or webui/ imports itself,
directly or through others, and the packages keep their layering.

The graph is read with ``ast`` from every ``.py`` file of the four packages (nothing is imported):
``import a.b``, ``from a import b`` (an edge to ``a.b`` when that is a module, else to ``a``) and
relative imports, at module level and inside functions and classes alike, since a lazy import
still forms a cycle. Imports under ``if TYPE_CHECKING:`` are left out (they never run). Not seen:
imports by string (``importlib.import_module``, the reward registry's ``"module:Class"`` paths)
and the implicit import of a module's parent packages.

Layering: ``reasongen`` imports nothing from ``annotation``, ``training`` or ``webui``;
``annotation`` imports nothing from ``training`` or ``webui``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reasongen", "annotation", "training", "webui")
FORBIDDEN = {
    "reasongen": {"annotation", "training", "webui"},
    "annotation": {"training", "webui"},
}
"""Top-level package -> the packages it must never import."""


def module_files(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under the packages."""
    out: dict[str, Path] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement of the tree, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: dict[str, Path], packages: Iterable[str]) -> str | None:
    """The in-tree module ``name`` lands in (its longest known prefix), or None if outside."""
    if name.split(".")[0] not in packages:
        return None
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return name.split(".")[0]


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the in-tree modules it imports (anywhere in its code, TYPE_CHECKING aside)."""
    packages = tuple(packages)
    modules = module_files(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                resolved = _resolve(target, modules, packages)
                if resolved is not None:
                    graph[mod].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, plus self-imports (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        found.append(sorted(component))
    return sorted(found)


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """``"importer -> imported"`` for every import that goes up a layer."""
    bad = []
    for mod, targets in sorted(graph.items()):
        banned = FORBIDDEN.get(mod.split(".")[0], set())
        bad += [f"{mod} -> {t}" for t in sorted(targets) if t.split(".")[0] in banned]
    return bad


def _describe(cycle: list[str], graph: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in cycle for b in sorted(graph[a]) if b in cycle]
    return f"{{{', '.join(cycle)}}}: " + "; ".join(edges)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_the_graph_covers_the_packages(graph):
    assert {m.split(".")[0] for m in graph} == set(PACKAGES)
    assert "annotation.store" in graph["annotation.workflow"]  # a module-level import
    assert "reasongen.shapes.scene" in graph["reasongen.shapes.prompts"]  # a relative one


def test_no_import_cycles(graph):
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(c, graph) for c in found)


def test_layering(graph):
    assert not layering_violations(graph)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_reader_finds_lazy_relative_cycles_and_skips_type_checking(tmp_path):
    _write(
        tmp_path,
        {
            "reasongen/__init__.py": "",
            "reasongen/shapes/__init__.py": "from .a import f\n",
            "reasongen/shapes/a.py": "from . import b\n",
            "reasongen/shapes/b.py": "def g():\n    from reasongen.shapes.a import f\n",
            "reasongen/c.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from reasongen import d\n"
                "else:\n    import reasongen.shapes.b\n"
            ),
            "reasongen/d.py": "import reasongen.c\nimport annotation.store as s\n",
            "reasongen/e.py": "from .e import x\n",
            "annotation/__init__.py": "",
            "annotation/store.py": "import os\n",
        },
    )
    g = import_graph(tmp_path, ("reasongen", "annotation"))
    assert g["reasongen.shapes"] == {"reasongen.shapes.a"}
    assert g["reasongen.shapes.a"] == {"reasongen.shapes.b"}
    assert g["reasongen.c"] == {"reasongen.shapes.b"}  # the TYPE_CHECKING import is left out
    assert cycles(g) == [["reasongen.e"], ["reasongen.shapes.a", "reasongen.shapes.b"]]
    assert layering_violations(g) == ["reasongen.d -> annotation.store"]
