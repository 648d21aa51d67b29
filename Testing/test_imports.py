"""The package's import graph has no cycle: no module imports, at the top or inside a function, a
module that (directly or through others) imports it back.  Read with ast only (nothing imported)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "CephLandmarksLib"


def import_graph(package: Path = PACKAGE) -> dict:
    """{module: set of package modules it imports anywhere in its source (relative or absolute)}."""
    names = {p.stem for p in package.glob("*.py")}
    graph = {}
    for path in sorted(package.glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
                elif node.level == 0 and (node.module or "").startswith(f"{package.name}."):
                    deps.add(node.module.split(".")[1])
                elif node.level == 0 and node.module == package.name:
                    deps |= {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith(f"{package.name}.")}
        graph[path.stem] = (deps & names) - {"__init__"}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (or a module importing itself)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert {"training", "calibration", "evaluate", "prepared", "detect", "scoring"} <= set(graph)
    assert cycles(graph) == []
