"""Code-health figures of src/openlt for the engine review (issue 13): the largest functions, import cycles between
modules (package __init__ counted), and public functions / classes / methods without a docstring.

    python scripts/code_health.py [src/openlt]
"""
import ast, sys
from pathlib import Path
root = Path(sys.argv[1] if len(sys.argv) > 1 else "src/openlt")
mods = {}
for f in root.rglob("*.py"):
    rel = f.relative_to(root.parent).with_suffix("")
    name = ".".join(rel.parts)
    if name.endswith(".__init__"): name = name[:-9]
    mods[name] = f
sizes, nodoc, edges = [], [], {m: set() for m in mods}
for m, f in mods.items():
    tree = ast.parse(f.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            sizes.append((node.end_lineno - node.lineno + 1, f"{m}:{node.name}"))
    for node in tree.body:
        items = [node] + ([n for n in node.body if isinstance(n, (ast.FunctionDef,))] if isinstance(node, ast.ClassDef) else [])
        for n in items:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_") and not ast.get_docstring(n):
                nodoc.append(f"{m}:{n.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("openlt"):
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in mods and t != m: edges[m].add(t)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in mods and a.name != m: edges[m].add(a.name)
# cycles: strongly connected components (Tarjan)
idx, low, stack, on, comps, c = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: comps.append(sorted(comp))
for v in mods:
    if v not in idx: sc(v)
sizes.sort(reverse=True)
print("largest functions:", ", ".join(f"{n} ({s})" for s, n in sizes[:8]))
print("functions over 60 lines:", sum(s > 60 for s, _ in sizes))
print("import cycles (incl. package __init__):", len(comps)); [print("  ", c) for c in comps]
print("public functions/classes/methods without docstring:", len(nodoc))
