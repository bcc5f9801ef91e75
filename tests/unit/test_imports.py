"""Our modules import each other without cycles (issue 16).

The graph is built from the source with ``ast``: every ``import`` / ``from ... import`` of
``tunesmith.*``, at module level and inside functions alike (a function-level import only hides
a cycle until the function runs). ``from pkg import name`` counts as importing ``pkg.name`` when
that is one of our modules, else ``pkg``. Nothing is imported, so this is fast and needs no torch.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import tunesmith

SRC = Path(tunesmith.__file__).resolve().parent.parent

#: Cycles still to cut, each as its sorted modules (none now; the last ones were data/sources <->
#: data/formats, model/loader -> tiny -> tiny_vlm -> multimodal -> loader, data/engine <->
#: data/pairs, train/recipes/sft <-> train/run_dir and api <-> cli). A new cycle fails the test;
#: so does an entry here that is no longer a cycle.
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(module: str, path: Path, modules: set[str]) -> dict[str, int]:
    """Our modules that ``module`` imports -> the line of the first such import."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in modules:  # tunesmith.a.b.attr -> tunesmith.a.b
                name = name.rpartition(".")[0]
            if name and name != module:
                found.setdefault(name, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    files = {_module_name(p): p for p in sorted((SRC / "tunesmith").rglob("*.py"))}
    return {m: _imports(m, p, set(files)) for m, p in files.items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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


def one_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    """The shortest cycle through ``component[0]``: ``a (line 3) -> b (line 9) -> a``."""
    members, start = set(component), component[0]
    came_from: dict[str, str] = {}
    queue = [start]
    while queue:  # breadth first from start until an edge leads back to it
        here = queue.pop(0)
        if start in graph[here]:
            break
        for w in sorted(graph[here]):
            if w in members and w not in came_from and w != start:
                came_from[w] = here
                queue.append(w)
    path = [here]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    path = [*reversed(path), start]
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(path)) + (
        f" -> {start}"
    )


def test_graph_sees_our_imports() -> None:
    graph = import_graph()
    assert "tunesmith.model.loader" in graph["tunesmith.model.multimodal"]  # module level
    assert "tunesmith.data.pairs" in graph["tunesmith.data.engine"]  # inside a function
    assert "tunesmith.data.formats" in graph["tunesmith.data.sources"]  # a package


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = {tuple(c) for c in cycles(graph)}
    new = [list(c) for c in sorted(found - KNOWN_CYCLES)]
    assert not new, "import cycles:\n" + "\n".join(
        f"{one_cycle(graph, c)}  (cycle among {', '.join(c)})" for c in new
    )
    gone = sorted(KNOWN_CYCLES - found)
    assert not gone, f"no longer cycles; remove them from KNOWN_CYCLES: {gone}"
