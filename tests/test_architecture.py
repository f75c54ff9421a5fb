"""The package's shape, read from its source with `ast` (nothing is imported):

- no import cycle between openlt's modules (a package's ``__init__`` is a module of its own:
  ``from openlt.models import x`` is an edge to ``openlt.models``, and to ``openlt.models.x`` when x is a module);
- no import climbs a layer: cli / __main__ / config_docs / the ``openlt`` package itself (the public face:
  ``openlt.load_run`` comes from the engine) -> engine -> {models, losses, data, openset, decoupling,
  reporting} -> metrics, with the foundation (errors, io, registry, config, paper_numbers, optim, run_folders) importable
  from anywhere; the middle layer's packages may import each other
  where that makes no cycle between them;
- every function in src/ is under 60 lines.

Imports inside functions count like module-level ones: a lazy import hides a cycle from Python, not from the design.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "openlt"
MAX_FUNCTION_LINES = 60  # a function must be shorter than this

# higher imports lower; equal ranks import each other (acyclically)
LAYERS = {
    "top": (4, {"", "cli", "__main__", "config_docs"}),  # "": the package itself, openlt/__init__.py
    "engine": (3, {"engine"}),
    "middle": (2, {"models", "losses", "data", "openset", "decoupling", "reporting"}),
    "metrics": (1, {"metrics"}),
    "foundation": (0, {"errors", "io", "registry", "config", "paper_numbers", "optim", "run_folders"}),
}


def module_files() -> dict[str, Path]:
    """{dotted module name: file} for every module of the package; a package is named by its __init__."""
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _targets(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """The openlt modules one import statement loads explicitly (not the parent packages Python runs first)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    if node.level:  # relative: from . import x / from .closed import y
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        name = ".".join(base + ([node.module] if node.module else []))
    else:
        name = node.module or ""
    if name not in modules:
        return []
    return [name] + [f"{name}.{alias.name}" for alias in node.names if f"{name}.{alias.name}" in modules]


def import_graph() -> dict[str, set[str]]:
    """{module: the openlt modules it imports}, at module level and inside functions alike."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_targets(node, module, path.name == "__init__.py", set(files)))
        graph[module] = edges - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_edges(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    members = set(component)
    return [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in members]


def group(module: str) -> str:
    """The package (or top-level module) directly under openlt: openlt.models.backbones -> models."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> tuple[str, int]:
    for name, (rank, groups) in LAYERS.items():
        if group(module) in groups:
            return name, rank
    raise AssertionError(f"{module} belongs to no layer: add {group(module)!r} to LAYERS in {__file__}")


def test_every_module_has_a_layer():
    for module in module_files():
        layer(module)


def test_no_import_cycle_between_modules():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles (each with its edges):\n" + "\n".join(
        f"  {' <-> '.join(c)}: " + ", ".join(_cycle_edges(graph, c)) for c in found)


def test_no_import_climbs_a_layer():
    graph = import_graph()
    climbs = []
    for source, targets in sorted(graph.items()):
        src_layer, src_rank = layer(source)
        for target in sorted(targets):
            dst_layer, dst_rank = layer(target)
            if dst_rank > src_rank:
                climbs.append(f"  {source} ({src_layer}) -> {target} ({dst_layer})")
    assert not climbs, "imports that climb a layer (cli -> engine -> middle -> metrics -> foundation):\n" + "\n".join(climbs)


def test_middle_layer_packages_import_each_other_without_cycle():
    graph = import_graph()
    middle = LAYERS["middle"][1]
    packages: dict[str, set[str]] = defaultdict(set)
    witness: dict[tuple[str, str], str] = {}
    for source, targets in graph.items():
        for target in targets:
            a, b = group(source), group(target)
            if a in middle and b in middle and a != b:
                packages[a].add(b)
                witness.setdefault((a, b), f"{source} -> {target}")
    found = cycles(dict(packages))
    assert not found, "cycles between middle-layer packages:\n" + "\n".join(
        f"  {' <-> '.join(c)}: " + ", ".join(witness[tuple(e.split(' -> '))] for e in _cycle_edges(packages, c))
        for c in found)


def test_the_checker_sees_cycles_and_climbs():
    """The checker itself: a lazy import inside a function is an edge, `from pkg import x` reaches pkg and pkg.x."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from openlt.models import backbones\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert _targets(node, "openlt.x", False, {"openlt.models", "openlt.models.backbones"}) == [
        "openlt.models", "openlt.models.backbones"]
    rel = next(n for n in ast.walk(ast.parse("from .closed import f")) if isinstance(n, ast.ImportFrom))
    assert _targets(rel, "openlt.metrics", True, {"openlt.metrics.closed"}) == ["openlt.metrics.closed"]
    assert _targets(rel, "openlt.metrics.curves", False, {"openlt.metrics.closed"}) == ["openlt.metrics.closed"]
    assert layer("openlt.engine.bench") == ("engine", 3) and layer("openlt") == ("top", 4)


def long_functions() -> list[str]:
    found = []
    for module, path in module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines >= MAX_FUNCTION_LINES:
                    found.append(f"  {module}.{node.name} ({path.relative_to(SRC)}:{node.lineno}): {lines} lines")
    return found


def test_every_function_is_under_60_lines():
    found = long_functions()
    assert not found, f"functions of {MAX_FUNCTION_LINES} lines or more:\n" + "\n".join(found)
