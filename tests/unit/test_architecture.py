"""The package's seams, checked: module sizes, layers, import cycles and private names.

``docs/architecture.md`` draws the layers; this test holds the code to the picture. Every
import counts, type-only ones included (a protocol does that job without an import).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "asyncwait"
MAX_LINES = 500

# Lower layers never import higher ones (same layer: allowed, but no cycle).
LAYERS: dict[str, int] = {
    # core: elements, errors, the I/O-free queues, functions, retry, metrics, helpers
    "elements": 0,
    "errors": 0,
    "_reprs": 0,
    "_checks": 0,
    "_faults": 0,
    "_paths": 0,
    "_locks": 0,
    "_tasks": 0,
    "_codec": 0,
    "_rejects": 0,
    "_flow": 0,
    "_adaptive": 0,
    "_breaker": 0,
    "_gate": 0,
    "retry": 0,
    "metrics": 0,
    "queues": 0,
    "function": 0,
    # the operator and the helpers over it
    "_operator": 1,
    "operator": 1,
    "waits": 1,
    # lookups, caches, the join; sources and sinks; event time
    "lookups": 2,
    "cache": 2,
    "join": 2,
    "sources": 2,
    "sinks": 2,
    "watermarks": 2,
    # checkpoints (store, coordinator: it talks to the job through protocols)
    "_checkpoint": 3,
    # the dataflow runtime
    "_dataflow": 4,
    "runtime": 4,
    "prometheus": 4,
    # front ends
    "jobfile": 5,
    "cli": 6,
    "__main__": 6,
}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def layer(module: str) -> int | None:
    """The layer of ``asyncwait.x.y`` (by ``x``); None for the package root."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return LAYERS[parts[1]]


def resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The asyncwait modules an ``from ... import ...`` names."""
    if node.level:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if not base.startswith("asyncwait"):
        return []
    names = {m for m, _ in modules()}
    found = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        found.append(candidate if candidate in names else base)
    return found


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                targets.update(resolve(module, path, node))
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("asyncwait"))
        targets.discard(module)
        graph[module] = targets
    return graph


@pytest.mark.parametrize(("module", "path"), list(modules()), ids=lambda v: str(v))
def test_every_module_is_under_the_line_limit(module: str, path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concept"


def test_every_module_has_a_layer() -> None:
    for module, _ in modules():
        if module != "asyncwait":
            assert layer(module) is not None


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in imports().items()
        for target in targets
        if layer(module) is not None and layer(target) is not None and layer(target) > layer(module)  # type: ignore[operator]
    ]
    assert upward == []


def test_there_is_no_import_cycle() -> None:
    graph = imports()
    # The package root re-exports everything; submodules never import it.
    graph = {m: {t for t in ts if t != "asyncwait"} for m, ts in graph.items()}
    # A package's __init__ and its own modules form one unit: importing x.y runs x first.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own modules
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def defined_private_names(tree: ast.AST) -> set[str]:
    """Names starting with ``_`` that a module defines: functions, classes, attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_")}


# Underscored names that are documented public API of the standard library.
STDLIB_API = {"_replace", "_asdict", "_fields", "_make", "_exit"}


def is_self(node: ast.expr) -> bool:
    """``self``/``cls``: an object's own state, whichever class of its MRO set it."""
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def test_no_module_uses_another_modules_private_names() -> None:
    found: list[str] = []
    for module, path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = defined_private_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and resolve(module, path, node):
                        found.append(f"{module}:{node.lineno} imports {alias.name}")
            elif isinstance(node, ast.Attribute):
                name = node.attr
                if not name.startswith("_") or name.startswith("__") or name in own:
                    continue
                if is_self(node.value) or name in STDLIB_API:
                    continue
                found.append(f"{module}:{node.lineno} reads .{name}")
    assert found == []
