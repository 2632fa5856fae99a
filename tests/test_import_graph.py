"""hermes_tasks' own imports form no cycle, counting imports inside functions too.

A function-level ``from . import x`` hides a cycle from Python but not from a reader: the
two modules still depend on each other. Every ``import``/``from`` naming a hermes_tasks
module, wherever it sits in the file, is an edge here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hermes_tasks

PACKAGE = Path(hermes_tasks.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (its ``source``) imports, at any
    depth of its syntax tree: in functions and methods too."""
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                if node.module:
                    base += node.module.split(".")
            else:
                base = (node.module or "").split(".")
            base_name = ".".join(base)
            for alias in node.names:
                sub = f"{base_name}.{alias.name}"
                if sub in modules:  # from . import x: the module x
                    out.add(sub)
                elif base_name in modules:  # from .x import y: the module x
                    out.add(base_name)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: imports(path.read_text(), name, path.name == "__init__.py", modules)
            for name, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_every_kind_of_import():
    modules = {"p", "p.a", "p.b", "p.c", "p.d", "p.sub", "p.sub.e", "p.f"}
    source = ("import p.f\nfrom . import b\nfrom .sub.e import thing\n"
              "def later():\n    from .c import name\n"
              "class K:\n    def m(self):\n        from . import d\n")
    assert imports(source, "p.a", False, modules) == {"p.b", "p.c", "p.d", "p.sub.e", "p.f"}
    assert imports("from .. import a\n", "p.sub.e", False, modules) == {"p.a"}
    assert imports("from . import e\n", "p.sub", True, modules) == {"p.sub.e"}


def test_the_cycle_finder():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(graph())
    assert found == [], "import cycles (module-level and function-level imports): " + \
        "; ".join(" <-> ".join(c) for c in found)
