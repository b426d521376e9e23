"""The import plan, checked on the code: no import loops, and no package importing one it must
not (docs/architecture.md, "Which package may import which").

Every .py file of our packages is parsed with `ast`, not imported. Every import counts, at the
top of a module or inside a function: a loop through a function-level import is still a loop,
only postponed to the first call. `from package import name` is an edge to the submodule
`package.name` when there is one, else to the package itself. The generated code under proto/
(certfed.v1) is nobody's layer and is left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("signing", "federation", "registry", "federation_node", "adapters", "cli")
# What each package must never import; `cli` may import every other one.
FORBIDDEN: dict[str, frozenset[str]] = {
    "signing": frozenset(PACKAGES) - {"signing"},
    "federation": frozenset({"registry", "federation_node", "adapters", "cli"}),
    "registry": frozenset({"federation_node", "adapters", "cli"}),
    "federation_node": frozenset({"registry", "adapters", "cli"}),
    "adapters": frozenset({"federation_node", "registry", "cli"}),
    "cli": frozenset(),
}

Graph = Mapping[str, Iterable[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name -> file, for every .py file of `packages` under `root`."""
    return {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterable[str]:
    """Every dotted name the module imports; `from X import Y` as X.Y, which `import_graph`
    takes for the submodule X.Y when there is one and for X when Y is a name in it."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # A relative import counts from the module's package (itself, for __init__).
                anchor = module.split(".")
                if not is_package:
                    anchor.pop()
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of `files` it imports."""
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        targets = set()
        for name in _imported_names(tree, module, is_package):
            # `import a.b.c` binds the deepest of a.b.c, a.b, a that is one of ours.
            parts = name.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            if parts and ".".join(parts) != module:
                targets.add(".".join(parts))
        graph[module] = targets
    return graph


def import_cycles(graph: Graph) -> list[list[str]]:
    """The loops of the graph: within each strongly connected component (Tarjan), the shortest
    loop through each of its modules, as the modules along it, first module repeated at the
    end. Every module in a loop shows in one, and every two-module loop shows as it is."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a long chain of imports cannot exhaust Python's recursion limit.
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    loops = set()
    for component in components:
        for module in component:
            loop = _loop_through(graph, component, module)[:-1]
            first = loop.index(min(loop))
            loops.add((*loop[first:], *loop[:first], loop[first]))
    return [list(loop) for loop in sorted(loops)]


def _loop_through(graph: Graph, component: set[str], start: str) -> list[str]:
    """The shortest way from `start` back to it, inside its strongly connected component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph.get(node, ())):
                if successor == start:
                    return [*paths[node], start]
                if successor in component and successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def forbidden_edges(graph: Graph, forbidden: Mapping[str, frozenset[str]]) -> list[tuple[str, str]]:
    """(importer, imported) for every import of a package its importer must not import."""
    return sorted(
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] in forbidden.get(module.split(".")[0], frozenset())
    )


def _file(files: Mapping[str, Path], module: str) -> str:
    path = files.get(module)
    return str(path.relative_to(ROOT)) if path is not None else module


# The plan of this repository.


def test_no_module_of_ours_takes_part_in_an_import_loop() -> None:
    files = source_files(ROOT, PACKAGES)
    loops = [
        " -> ".join(_file(files, module) for module in cycle)
        for cycle in import_cycles(import_graph(files))
    ]
    assert not loops, "import loops:\n" + "\n".join(loops)


def test_no_package_imports_one_the_plan_forbids() -> None:
    files = source_files(ROOT, PACKAGES)
    edges = [
        f"{_file(files, importer)} imports {_file(files, imported)}"
        for importer, imported in forbidden_edges(import_graph(files), FORBIDDEN)
    ]
    assert not edges, "forbidden imports:\n" + "\n".join(edges)


def test_only_the_entry_point_imports_the_command_line_main_module() -> None:
    files = source_files(ROOT, PACKAGES)
    importers = sorted(
        _file(files, module)
        for module, targets in import_graph(files).items()
        if "cli.main" in targets
    )
    assert importers == ["cli/__main__.py"]


# The checker itself, on planted graphs, so that it cannot pass by finding nothing.


def test_the_checker_finds_planted_loops() -> None:
    graph = {
        "federation.a": {"federation.b"},
        "federation.b": {"federation.c", "signing.x"},
        "federation.c": {"federation.a"},
        "signing.x": set(),
    }
    assert import_cycles(graph) == [
        ["federation.a", "federation.b", "federation.c", "federation.a"]
    ]
    # Two loops sharing a module, as cli.main once shared one with each command module that
    # imported it back: both are named, not only the component they form together.
    graph = {"cli.main": {"cli.one", "cli.two"}, "cli.one": {"cli.main"}, "cli.two": {"cli.main"}}
    assert import_cycles(graph) == [
        ["cli.main", "cli.one", "cli.main"],
        ["cli.main", "cli.two", "cli.main"],
    ]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_finds_planted_forbidden_edges() -> None:
    graph = {
        "signing.dsse": {"federation.errors"},
        "registry.service": {"federation_node.store.db", "federation.rpc"},
        "adapters.feeds": {"cli.desk"},
        "cli.main": {"registry.server", "federation_node.server", "adapters.feeds"},
    }
    assert forbidden_edges(graph, FORBIDDEN) == [
        ("adapters.feeds", "cli.desk"),
        ("registry.service", "federation_node.store.db"),
        ("signing.dsse", "federation.errors"),
    ]


def test_the_graph_follows_function_level_relative_and_submodule_imports(
    tmp_path: Path,
) -> None:
    package = tmp_path / "federation"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("from . import leaf\n")
    (package / "inner" / "leaf.py").write_text("def later():\n    from federation import top\n")
    (package / "top.py").write_text("from federation.inner import leaf, missing\nimport os\n")
    files = source_files(tmp_path, ["federation"])
    graph = import_graph(files)
    assert graph["federation.inner"] == {"federation.inner.leaf"}
    assert graph["federation.inner.leaf"] == {"federation.top"}
    assert graph["federation.top"] == {"federation.inner", "federation.inner.leaf"}
    # leaf's import, inside a function, closes loops with top and the package around leaf.
    assert import_cycles(graph) == [
        ["federation.inner", "federation.inner.leaf", "federation.top", "federation.inner"],
        ["federation.inner.leaf", "federation.top", "federation.inner.leaf"],
    ]
