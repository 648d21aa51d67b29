"""The package's import graph has no cycle: no module imports, at the top or inside a function, a
module that (directly or through others) imports it back.  Read with ast only (nothing imported)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "CephLandmarksLib"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """Dotted name below the package: "detection.predictor", "cli"; a subpackage's __init__ is the subpackage."""
    parts = list(path.relative_to(package).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict:
    """{module: set of package modules it imports anywhere in its source (relative or absolute)},
    over every subpackage; a module is named by its dotted path below the package."""
    paths = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    names = {module_name(p, package) for p in paths}
    graph = {}
    for path in paths:
        me = module_name(path, package)
        here = me.split(".")[:-1] if path.name != "__init__.py" else me.split(".") if me else []
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                    stem = base + (node.module.split(".") if node.module else [])
                elif node.module == package.name or (node.module or "").startswith(f"{package.name}."):
                    stem = node.module.split(".")[1:]
                else:
                    continue
                for alias in node.names:  # "from .room import module" names a module; else the stem is one
                    full = ".".join(stem + [alias.name])
                    deps.add(full if full in names else ".".join(stem))
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith(f"{package.name}.")}
        graph[me] = (deps & names) - {"", me}
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
    assert {"training.loop", "training.calibration", "training.evaluate", "training.prepared", "detection.predictor",
            "training.scoring", "imaging.images"} <= set(graph)
    assert "detection.result" in graph["detection.predictor"]  # relative imports inside a subpackage are followed
    assert "imaging.geometry" in graph["network.inputs"]  # and across subpackages
    assert "store.registry" in graph["cli"]
    assert cycles(graph) == []
