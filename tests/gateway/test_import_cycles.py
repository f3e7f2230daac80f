"""No two gateway modules import each other, not even for type hints or inside a function.

A cycle hidden under ``TYPE_CHECKING`` or in a function body still ties the modules together: one
cannot be read, tested or compiled (scripts/compile) without the other. The shared type belongs in
the lower module, or in a small module both import.
"""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "src" / "modelyard" / "gateway"
PACKAGE = "modelyard.gateway"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(GATEWAY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _imported(tree: ast.Module, name: str, is_package: bool, known: set[str]) -> set[str]:
    """Every gateway module ``name`` imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(tree):  # walks into functions, classes and `if TYPE_CHECKING:` alike
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module; `from module import name` the module
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in GATEWAY.rglob("*.py")}
    known = set(files)
    return {
        name: _imported(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), each as the path around it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_around(graph, group) for group in groups]


def _path_around(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    start = min(group)
    path, seen = [start], {start}
    while True:
        nxt = min(n for n in graph[path[-1]] if n in group)
        if nxt in seen:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)
        seen.add(nxt)


def test_no_import_cycle_among_gateway_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles in gateway/: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_scan_sees_hidden_imports() -> None:
    """The checker itself: imports under TYPE_CHECKING, in functions and relative ones count."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from modelyard.gateway.b import B\n"
        "def f():\n    from . import c\n"
        "from modelyard.gateway import d\n"
    )
    known = {f"{PACKAGE}.{n}" for n in "abcd"}
    imported = _imported(ast.parse(source), f"{PACKAGE}.a", False, known)
    assert imported == {f"{PACKAGE}.b", f"{PACKAGE}.c", f"{PACKAGE}.d"}
    graph = {f"{PACKAGE}.a": {f"{PACKAGE}.b"}, f"{PACKAGE}.b": {f"{PACKAGE}.a"}, f"{PACKAGE}.c": set()}
    assert _cycles(graph) == [[f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.a"]]
