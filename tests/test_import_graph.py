"""No import cycle among the modules of diag/.

The graph is read from the source with ``ast`` (nothing is imported), one node per module, an edge
for every import of another module of ``diag``:

* Imports at module level count, and so do imports inside functions and methods. A lazy import
  only postpones a cycle (the trace package once ran reader -> builder -> columnar -> reader through
  two imports inside functions), so both kinds must point the same way.
* Imports under ``if TYPE_CHECKING:`` do not count: they never run.
* ``from diag.pkg import name`` is an edge to ``diag.pkg.name`` when that is a module, else to the
  package ``diag.pkg`` (its ``__init__``, which is what runs).
* The implicit import of a parent package (importing ``diag.trace.reader`` first runs
  ``diag/trace/__init__.py``) is not an edge: a package's ``__init__`` re-exports its modules by
  design, and a module that imports its own package by name is counted through the rule above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DIAG = Path(__file__).resolve().parent.parent / "diag"


def module_files(root: Path = DIAG) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST):
    """Every Import/ImportFrom below ``node``, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for orelse in child.orelse:
                yield from _imports(ast.Module(body=[orelse], type_ignores=[]))
        else:
            yield from _imports(child)


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported module of the same package: line of the first such import}."""

    def owner(name: str) -> str | None:
        if name.split(".")[:2] in (["diag", "adapters"], ["diag", "tui"]):
            return None  # installed from adapters/ and tui/, not modules of diag/ (not its __init__ either)
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                target = owner(target)
                if target is not None and target != name:
                    edges.setdefault(target, node.lineno)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a closed path) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; diag is far too small for recursion limits
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_within(graph, set(component)) for component in components]


def _cycle_within(graph: dict[str, dict[str, int]], members: set[str]) -> list[str]:
    """A shortest closed path through the first member of a strongly connected component."""
    start = min(members)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node]):
                if succ == start:
                    return paths[node] + [start]
                if succ in members and succ not in paths:
                    paths[succ] = paths[node] + [succ]
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def describe(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    steps = [f"{a} (line {graph[a][b]} of {modules[a].relative_to(DIAG.parent)}) -> {b}"
             for a, b in zip(cycle, cycle[1:])]
    return "import cycle: " + " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def test_no_import_cycle_among_diag_modules():
    modules = module_files()
    graph = import_graph(modules)
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(describe(c, graph, modules) for c in cycles)


# The trace package's layers, as diag/trace/__init__.py describes them: a module imports only
# modules of earlier layers. A new module of the package must be placed here.
TRACE_LAYERS = [
    ["records", "limits", "measured"],
    ["schema", "columnar", "step_plan", "record_errors", "parse"],
    ["step_block"],
    ["builder"],
    ["versions", "runs", "line_count", "shards"],
    ["jsonl"],
    ["reader", "writer"],
]


def test_trace_package_reads_as_a_line():
    """records -> columnar -> builder -> reader: no module imports one of its own or a later layer."""
    modules = module_files()
    graph = import_graph(modules)
    layer_of = {f"diag.trace.{name}": i for i, layer in enumerate(TRACE_LAYERS) for name in layer}
    package = sorted(m for m in modules if m.startswith("diag.trace."))
    assert sorted(layer_of) == package, "every module of diag/trace/ has one place in TRACE_LAYERS"
    for module in package:
        late = sorted(m for m in graph[module] if layer_of.get(m, -1) >= layer_of[module])
        assert not late, f"{module} imports {late}, of its own or a later layer"
    assert "diag.trace.columnar" in graph["diag.trace.builder"]
    assert "diag.trace.builder" in graph["diag.trace.jsonl"]
    assert "diag.trace.jsonl" in graph["diag.trace.reader"]


@pytest.mark.parametrize("source, cycle", [
    # The trace package's old cycle, made of two imports inside functions.
    ({"a": "from pkg import b\n", "b": "def f():\n    from pkg.c import X\n",
      "c": "def g():\n    import pkg.a\n"}, ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]),
    # A relative import into the package's __init__, which imports the module back.
    ({"__init__": "from pkg.a import A\n", "a": "from . import helper\n", "helper": ""}, None),
    ({"__init__": "from pkg.a import A\n", "a": "from . import B\n"}, ["pkg", "pkg.a", "pkg"]),
])
def test_cycles_are_found_through_lazy_and_relative_imports(tmp_path, source, cycle):
    package = tmp_path / "pkg"
    package.mkdir()
    source = {"__init__": "", **source}
    for name, text in source.items():
        (package / f"{name}.py").write_text(text)
    cycles = find_cycles(import_graph(module_files(package)))
    assert cycles == ([cycle] if cycle else [])


def test_type_checking_imports_are_not_edges(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    assert find_cycles(import_graph(module_files(package))) == []
    (package / "b.py").write_text("from pkg import a\n")  # the same import, run: a cycle
    assert find_cycles(import_graph(module_files(package))) == [["pkg.a", "pkg.b", "pkg.a"]]
