"""The import graph of ``visit/`` (read from the code with ``ast``) against the layers in :mod:`visit.layers`."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from visit.layers import INDEPENDENT, LAYERS, MAX_FUNCTION_IMPORTS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "visit"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The ``visit`` modules an import statement loads (``from p import m`` names module ``p.m`` when it is one)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            out.append(name)
    return out


def _read_graph():
    """``(edges, function_imports)``: module -> the visit modules it imports (anywhere in it), and every import
    statement inside a function as ``(module, line, has_comment)``."""
    edges: dict[str, set[str]] = defaultdict(set)
    function_imports = []
    for module, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source)
        in_function: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(node) if n is not node)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            edges[module].update(t for t in _targets(module, node) if t != module)
            if id(node) in in_function:
                text = " ".join(lines[node.lineno - 1:node.end_lineno])
                above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                function_imports.append((module, node.lineno, "#" in text or above.startswith("#")))
    return edges, function_imports


EDGES, FUNCTION_IMPORTS = _read_graph()


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == unit or module.startswith(unit + ".") for unit in layer):
            return i
    raise KeyError(module)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def _contract(depth: int) -> dict[str, set[str]]:
    """The graph between packages at ``depth`` (``visit.ui.panels.x`` -> ``visit.ui.panels`` at depth 3)."""
    def unit(m: str) -> str:
        return ".".join(m.split(".")[:depth])

    contracted: dict[str, set[str]] = defaultdict(set)
    for a, targets in EDGES.items():
        for b in targets:
            ua, ub = unit(a), unit(b)
            if ua != ub and not ub.startswith(ua + ".") and not ua.startswith(ub + "."):
                contracted[ua].add(ub)
    return contracted


def test_the_graph_is_read():
    """The reader sees the imports it must (a broken reader would pass every test below)."""
    assert len(MODULES) > 100
    assert "visit.hooks.runner" in EDGES["visit.tracer"]
    assert "visit.pipeline" in EDGES["visit.cli.graph_cmd"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if m != "visit" and not _has_layer(m)]
    assert not unplaced, f"add these to visit.layers.LAYERS: {unplaced}"


def _has_layer(module: str) -> bool:
    try:
        layer_of(module)
    except KeyError:
        return False
    return True


def test_no_module_cycle():
    assert _cycles(EDGES) == []


@pytest.mark.parametrize("depth", [2, 3])
def test_no_package_cycle(depth):
    assert _cycles(_contract(depth)) == []


def test_no_upward_import():
    upward = sorted(f"{a} -> {b}" for a, targets in EDGES.items() if a != "visit" for b in targets
                    if b != "visit" and layer_of(b) > layer_of(a))
    assert upward == []


def _within(module: str, unit: str) -> bool:
    return module == unit or module.startswith(unit + ".")


@pytest.mark.parametrize("pair", INDEPENDENT, ids="-".join)
def test_independent_parts_do_not_import_each_other(pair):
    a, b = pair
    crossing = sorted(f"{m} -> {t}" for m, targets in EDGES.items() for t in targets
                      if (_within(m, a) and _within(t, b)) or (_within(m, b) and _within(t, a)))
    assert crossing == []


def test_function_level_imports_are_few_and_explained():
    assert len(FUNCTION_IMPORTS) <= MAX_FUNCTION_IMPORTS, f"{len(FUNCTION_IMPORTS)} imports inside functions"
    unexplained = [f"{m}:{line}" for m, line, has_comment in FUNCTION_IMPORTS if not has_comment]
    assert unexplained == [], "say which optional dependency or start-up cost each one defers"


def test_no_module_loaded_by_name():
    """Registries import what they list: a module named in a string (``importlib.import_module("visit.x")``,
    ``"visit.x:function"``) is a dependency the graph above cannot see."""
    named = []
    for module, path in MODULES.items():
        if module == "visit.layers":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.partition(":")[0] in MODULES and node.value.startswith("visit."):
                named.append(f"{module}: {node.value!r}")
    assert named == []
