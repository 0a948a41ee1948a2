"""The import rules of docs/architecture.md, checked on the AST of every module (function-level
imports included): ordered layers, imports point down only, and no import cycle anywhere.

    shared:        generated stubs  <  core (rentscout.wire, rentscout.resilience)
    services side: runtime  <  services (export, cache, analyzer, db, devstack)  <  ops
    client side:   sdk  <  cli  <  rentscout.main

A module imports its own package and the layers below it on its side (the shared ones included),
never a sibling package of its own layer (services never import each other), never the other side.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("core", "services", "clients")


@dataclass(frozen=True)
class Layer:
    name: str
    side: str  # "shared", "services" or "client"
    rank: int
    packages: tuple[str, ...]


LAYERS = (
    Layer(
        "generated",
        "shared",
        0,
        ("rentscout.common", "rentscout.export", "rentscout.cache", "rentscout.analyzer", "rentscout.arrow_flight"),
    ),
    Layer("core", "shared", 1, ("rentscout.wire", "rentscout.resilience")),
    Layer("runtime", "services", 2, ("rentscout.runtime",)),
    Layer(
        "services",
        "services",
        3,
        (
            "rentscout.export_service",
            "rentscout.cache_service",
            "rentscout.analyzer_service",
            "rentscout.db",
            "rentscout.devstack",
        ),
    ),
    Layer("ops", "services", 4, ("rentscout.ops",)),
    Layer("sdk", "client", 2, ("rentscout.sdk",)),
    Layer("cli", "client", 3, ("rentscout.cli",)),
    Layer("main", "client", 4, ("rentscout.main",)),
)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def package_of(module: str) -> tuple[Layer, str] | None:
    """The layer and the top package (`rentscout.x`) a module belongs to."""
    for layer in LAYERS:
        for package in layer.packages:
            if _within(module, package):
                return layer, package
    return None


def allowed(importer: str, imported: str) -> bool:
    """Whether `importer` may import `imported` under the layer rules."""
    mine, theirs = package_of(importer), package_of(imported)
    if mine is None or theirs is None:
        return False
    (layer, package), (their_layer, their_package) = mine, theirs
    if package == their_package:
        return True
    return their_layer.rank < layer.rank and their_layer.side in ("shared", layer.side)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> list[tuple[str, Path]]:
    """The modules of the `rentscout` namespace (a root's build tooling, such as core/hatch_build.py, is not one)."""
    found = [(_module_name(p, root / src), p) for src in SOURCE_ROOTS for p in (root / src / "rentscout").rglob("*.py")]
    return sorted(found)


def _statements(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(base, names) of every import statement, wherever it is: `import a.b` is ("a.b", []), `from a import
    b, c` is ("a", ["b", "c"]), relative imports resolved against the module's package."""
    out: list[tuple[str, list[str]]] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.append((base, [a.name for a in node.names]))
    return [(base, names) for base, names in out if base == "rentscout" or base.startswith("rentscout.")]


def imports(module: str, path: Path) -> set[str]:
    """Every rentscout name `module` imports: for `from a import b`, both `a` and `a.b` (b may be a module
    or a name)."""
    return {name for base, names in _statements(module, path) for name in (base, *(f"{base}.{n}" for n in names))}


def import_graph(found: Iterable[tuple[str, Path]]) -> dict[str, set[str]]:
    """Module -> the project modules it imports. `from pkg import sub` is an edge to the submodule `sub`
    alone, `from module import name` an edge to `module` (a package's __init__ runs before any of its
    submodules in every case, so it is not an edge of its own)."""
    paths = dict(found)
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        edges: set[str] = set()
        for base, names in _statements(module, path):
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in paths]
            edges |= set(subs)
            if (len(subs) < len(names) or not names) and base in paths:
                edges.add(base)
        graph[module] = edges - {module}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
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
        for w in graph.get(v, ()):
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


def upward_imports(graph: Mapping[str, set[str]]) -> list[str]:
    return sorted(f"{m} imports {i}" for m, targets in graph.items() for i in targets if not allowed(m, i))


MODULES = modules()
GRAPH = import_graph(MODULES)


def test_every_module_is_in_a_layer() -> None:
    assert len(MODULES) > 50, "the source roots moved?"
    assert [m for m, _ in MODULES if package_of(m) is None] == []


@pytest.mark.parametrize(("module", "path"), MODULES, ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down(module: str, path: Path) -> None:
    bad = sorted(name for name in imports(module, path) if package_of(name) is not None and not allowed(module, name))
    assert not bad, f"{module} imports {bad}, which is not below it ({package_of(module)})"


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_the_rules_order_the_sub_layers() -> None:
    assert allowed("rentscout.ops.serve", "rentscout.export_service.service")
    assert allowed("rentscout.export_service.service", "rentscout.runtime.errors")
    assert allowed("rentscout.runtime.errors", "rentscout.wire.badrequest")
    assert allowed("rentscout.cli.export", "rentscout.sdk.export") and allowed("rentscout.main", "rentscout.cli.commands")
    assert allowed("rentscout.sdk.export", "rentscout.export.v1.export_pb2")
    for importer, imported in [
        ("rentscout.runtime.config", "rentscout.export_service.settings"),  # runtime < services
        ("rentscout.runtime.logs", "rentscout.ops.serve"),  # runtime < ops
        ("rentscout.export_service.service", "rentscout.ops.serve"),  # services < ops
        ("rentscout.cache_service.service", "rentscout.analyzer_service.session"),  # siblings
        ("rentscout.wire.health", "rentscout.runtime.health"),  # core < runtime
        ("rentscout.sdk.export", "rentscout.cli.export"),  # sdk < cli
        ("rentscout.cli.export", "rentscout.main"),  # cli < main
        ("rentscout.sdk.errors", "rentscout.runtime.errors"),  # the client side never imports the services side
        ("rentscout.runtime.errors", "rentscout.sdk.errors"),
        ("rentscout.ops.stack", "rentscout.cli.health"),
    ]:
        assert not allowed(importer, imported), (importer, imported)


def _plant(tmp_path: Path, files: dict[str, str]) -> list[tuple[str, Path]]:
    for rel, text in files.items():
        path = tmp_path / "services" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules(tmp_path)


def test_a_planted_upward_import_is_caught(tmp_path: Path) -> None:
    planted = _plant(
        tmp_path,
        {
            "rentscout/runtime/__init__.py": "",
            "rentscout/runtime/bad.py": "def lazy():\n    from rentscout.cache_service import queries\n",
            "rentscout/cache_service/__init__.py": "",
            "rentscout/cache_service/queries.py": "from rentscout.runtime import bad\n",
        },
    )
    assert upward_imports(import_graph(planted)) == ["rentscout.runtime.bad imports rentscout.cache_service.queries"]


def test_a_planted_cycle_is_caught(tmp_path: Path) -> None:
    planted = _plant(
        tmp_path,
        {
            "rentscout/runtime/__init__.py": "",
            "rentscout/runtime/deadline.py": "from rentscout.runtime.errors import DeadlineExceeded\n",
            "rentscout/runtime/errors.py": "def classify():\n    from rentscout.runtime import deadline\n",
            "rentscout/runtime/context.py": "from rentscout.runtime import errors\n",
        },
    )
    graph = import_graph(planted)
    assert graph["rentscout.runtime.context"] == {"rentscout.runtime.errors"}
    assert upward_imports(graph) == []
    assert cycles(graph) == [["rentscout.runtime.deadline", "rentscout.runtime.errors"]]
