"""The package's imports: no circles, and no import from a lower layer to a higher one.

Every module of hrc_fl is read with ``ast`` (nothing is imported): imports at the top, inside functions and
under ``TYPE_CHECKING`` all count, since a lazy import is still a dependency and used to hide circles.
Relative imports are resolved. ``from pkg import name`` is an edge to ``pkg.name`` where that is a module,
else to ``pkg``; the ``__init__`` that Python runs on the way to a submodule is not an edge. Imports by
string (``importlib.import_module``) are not seen. Layers: docs/architecture.md, "Layers".
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "hrc_fl"

#: Lowest first. A module may import modules of its own entry and of entries in lower layers only; entries
#: that share a layer are independent of each other. An entry is a package or a module; a module belongs to
#: the longest entry that names it or a package above it (the package itself, ``hrc_fl``, only by its name).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hrc_fl", "hrc_fl.paths", "hrc_fl.training_loop"),
    ("hrc_fl.data",),
    ("hrc_fl.perception", "hrc_fl.wearable", "hrc_fl.safety", "hrc_fl.intention"),
    ("hrc_fl.federated.core", "hrc_fl.sim", "hrc_fl.viz", "hrc_fl.tools", "hrc_fl.setup_assets"),
    ("hrc_fl.federated.transport", "hrc_fl.federated.evaluation", "hrc_fl.federated"),
    ("hrc_fl.nodes",),
    ("hrc_fl.graph",),
    ("hrc_fl.launcher", "hrc_fl.launch_adapter", "hrc_fl.discovery_check", "hrc_fl.ament_prefix"),
    ("hrc_fl.demo",),
    ("hrc_fl.commands",),
    ("hrc_fl.cli",),
)

#: Import edges (importer, imported) that break the rules today: mended on branches in flight. The
#: coordinator removes each entry once its branch is merged; a test below fails when one is no longer needed.
KNOWN_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()

Graph = dict[str, dict[str, int]]  # module -> {imported module: line of its first import}


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` under ``root`` (a package by its ``__init__``)."""
    out: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [max((m for m in modules if n == m or n.startswith(m + ".")), key=len, default="") for n in names]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]


def import_graph(root: Path, package: str) -> Graph:
    """Every module's imports of other modules of ``package`` (at any depth of its code)."""
    files = module_files(root, package)
    modules = set(files)
    graph: Graph = {}
    for name, path in files.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(node, name, path.name == "__init__.py", modules):
                    if target in modules and target != name:
                        edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def without(graph: Graph, edges: frozenset[tuple[str, str]]) -> Graph:
    return {a: {b: line for b, line in bs.items() if (a, b) not in edges} for a, bs in graph.items()}


def _strongly_connected(graph: Graph) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):  # iterative Tarjan: the graph may be deeper than the recursion limit
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def find_cycles(graph: Graph) -> list[list[str]]:
    """One import circle per group of modules that import each other: ``[a, b, ..., a]``, shortest from
    the group's first module, every step an import in ``graph``."""
    cycles = []
    for component in _strongly_connected(graph):
        members, start = set(component), component[0]
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if start in graph[node]:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                cycles.append([*reversed(path), start])
                break
            for child in sorted(graph[node]):
                if child in members and child not in previous and child != start:
                    previous[child] = node
                    queue.append(child)
    return cycles


def layer_entry(module: str, layers: Sequence[Sequence[str]], package: str) -> tuple[int, str] | None:
    """(layer index, entry) of a module; None when no entry of ``layers`` covers it."""
    matches = [(len(entry), i, entry) for i, layer in enumerate(layers) for entry in layer
               if module == entry or (entry != package and module.startswith(entry + "."))]
    if not matches:
        return None
    _, layer, entry = max(matches)
    return layer, entry


def unplaced(graph: Graph, layers: Sequence[Sequence[str]], package: str) -> list[str]:
    """Modules that no entry of ``layers`` covers."""
    return [m for m in sorted(graph) if layer_entry(m, layers, package) is None]


def upward_imports(graph: Graph, layers: Sequence[Sequence[str]], package: str) -> dict[tuple[str, str], str]:
    """Imports of another entry of the same or a higher layer: (importer, imported) -> what is wrong."""
    found = {}
    for importer in sorted(graph):
        here = layer_entry(importer, layers, package)
        for imported, line in sorted(graph[importer].items()):
            there = layer_entry(imported, layers, package)
            if here is None or there is None or here[1] == there[1] or there[0] < here[0]:
                continue
            where = "the same layer" if there[0] == here[0] else "a higher layer"
            found[importer, imported] = (f"{importer} (line {line}, layer {here[0]} {here[1]}) imports {imported}, "
                                         f"of {where} ({there[0]} {there[1]})")
    return found


def _describe(cycles: list[list[str]], graph: Mapping[str, Mapping[str, int]]) -> list[str]:
    return [" -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(c)) + f" -> {c[-1]}"
            for c in cycles]


@pytest.fixture(scope="module")
def package_graph() -> Graph:
    return import_graph(REPO, PACKAGE)


def test_hrc_fl_has_no_import_circles(package_graph):
    # Execute
    cycles = find_cycles(without(package_graph, KNOWN_EXCEPTIONS))

    # Assert
    assert not cycles, "import circles:\n" + "\n".join(_describe(cycles, package_graph))


def test_no_import_goes_up_a_layer(package_graph):
    # Execute
    problems = upward_imports(without(package_graph, KNOWN_EXCEPTIONS), LAYERS, PACKAGE)

    # Assert
    assert not problems, "\n".join(problems.values())


def test_every_module_has_a_layer(package_graph):
    missing = unplaced(package_graph, LAYERS, PACKAGE)
    assert not missing, f"modules in no layer (add them or their package to LAYERS): {missing}"


def test_every_known_exception_is_still_needed(package_graph):
    for edge in sorted(KNOWN_EXCEPTIONS):
        # Prepare: the rules with every other exception
        importer, imported = edge
        rest = without(package_graph, KNOWN_EXCEPTIONS - {edge})

        # Execute
        in_circle = any({importer, imported} <= set(c) for c in _strongly_connected(rest))
        upward = edge in upward_imports(rest, LAYERS, PACKAGE)

        # Assert: the import exists and breaks a rule
        assert imported in package_graph[importer], \
            f"{importer} no longer imports {imported}: remove it from KNOWN_EXCEPTIONS"
        assert in_circle or upward, f"{importer} -> {imported} breaks no rule now: remove it from KNOWN_EXCEPTIONS"


def test_nothing_in_the_package_or_the_benchmarks_imports_the_tests():
    # Execute
    found = []
    for path in sorted([*(REPO / PACKAGE).rglob("*.py"), *(REPO / "bench").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "tests"]

    # Assert
    assert not found, "\n".join(found)


# ------------------------------------------------------------------ the checks themselves, on a tiny package

def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


SYNTHETIC = {
    "pkg/__init__.py": "",
    "pkg/base.py": "",
    "pkg/low/__init__.py": "from pkg.low.a import helper\n",
    "pkg/low/a.py": "def helper():\n    from ..high import b  # hidden in a function\n    return b\n",
    "pkg/high/__init__.py": "",
    "pkg/high/b.py": "from pkg.low import a\nfrom pkg import base\n",
    "pkg/high/c.py": "from . import b\n",
}
SYNTHETIC_LAYERS = (("pkg", "pkg.base"), ("pkg.low",), ("pkg.high",))


def test_a_circle_through_a_function_level_relative_import_is_found_and_named(tmp_path):
    # Prepare
    _write(tmp_path, SYNTHETIC)

    # Execute
    graph = import_graph(tmp_path, "pkg")
    cycles = find_cycles(graph)

    # Assert: relative imports resolved, a submodule is the edge (not its package's __init__)
    assert graph["pkg.low.a"] == {"pkg.high.b": 2}
    assert graph["pkg.high.b"] == {"pkg.low.a": 1, "pkg.base": 2}
    assert graph["pkg.high.c"] == {"pkg.high.b": 1}
    assert graph["pkg.low"] == {"pkg.low.a": 1}
    assert cycles == [["pkg.high.b", "pkg.low.a", "pkg.high.b"]]
    assert _describe(cycles, graph) == ["pkg.high.b (line 1) -> pkg.low.a (line 2) -> pkg.high.b"]
    assert find_cycles(without(graph, frozenset({("pkg.low.a", "pkg.high.b")}))) == []


def test_an_upward_import_a_sibling_import_and_a_module_without_a_layer_are_reported(tmp_path):
    # Prepare: low imports high (upward); two entries of one layer, one importing the other; a module in no layer
    _write(tmp_path, {**SYNTHETIC, "pkg/side.py": "import pkg.base\n", "pkg/loose.py": ""})
    layers = (("pkg", "pkg.base", "pkg.side"), ("pkg.low",), ("pkg.high",))

    # Execute
    graph = import_graph(tmp_path, "pkg")
    problems = upward_imports(graph, layers, "pkg")

    # Assert
    assert unplaced(graph, layers, "pkg") == ["pkg.loose"]
    assert problems == {
        ("pkg.low.a", "pkg.high.b"):
            "pkg.low.a (line 2, layer 1 pkg.low) imports pkg.high.b, of a higher layer (2 pkg.high)",
        ("pkg.side", "pkg.base"):
            "pkg.side (line 1, layer 0 pkg.side) imports pkg.base, of the same layer (0 pkg.base)",
    }
    # the package itself covers only its __init__, and the other order turns the other import upward
    swapped = (layers[0], ("pkg.high",), ("pkg.low",))
    assert unplaced(graph, (("pkg",),), "pkg") == sorted(set(graph) - {"pkg"})
    assert set(upward_imports(graph, swapped, "pkg")) == {("pkg.high.b", "pkg.low.a"), ("pkg.side", "pkg.base")}
