"""Each distribution of the workspace declares exactly what its modules import, and the packaging agrees
with the layers: a module may import the `rentscout` modules of its own distribution and of the workspace
distributions it depends on, nothing else (so a client module importing server code fails here as well as
in test_layers.py).

Read from the AST of every module, function-level imports included. A third-party import is mapped to
the installed distribution whose files hold it (the dev venv has every extra).
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
# Source folders of each member's wheel besides its own rentscout/ (core/pyproject.toml force-includes gen/).
EXTRA_ROOTS = {"core": ("gen",)}
# Declared but never imported, with the reason the distribution needs them anyway.
NOT_IMPORTED = {
    "rentscout-server": {"rentscout-client": "the `rentscout` command that hosts serve/db/stack (and the image's health check)"},
}
# Imported but deliberately undeclared: optional plugins the operator installs.
UNDECLARED: dict[str, str] = {}
# Modules named by the distribution that declares them (imported lazily, so maybe not installed here).
OPTIONAL_MODULES = {"opentelemetry.exporter.otlp": "opentelemetry-exporter-otlp-proto-grpc"}
# Packages that exist for one extra: they may import what it adds as they load (the `rentscout` command is
# the client's `cli` extra: without it, rentscout.main says to install it).
EXTRA_PACKAGES = {("rentscout-client", "cli"): ("rentscout.cli", "rentscout.main")}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return normalize(match.group(1))


@dataclass
class Imports:
    third_party: dict[str, set[str]] = field(default_factory=dict)  # distribution -> modules importing it
    top_level: dict[str, set[str]] = field(default_factory=dict)  # distribution -> modules importing it as they load
    rentscout: dict[str, set[str]] = field(default_factory=dict)  # rentscout module -> modules importing it


@dataclass(frozen=True)
class Member:
    folder: str
    name: str
    base: frozenset[str]
    extras: dict[str, frozenset[str]]

    @property
    def roots(self) -> tuple[Path, ...]:
        return (ROOT / self.folder, *(ROOT / r for r in EXTRA_ROOTS.get(self.folder, ())))

    def declared(self) -> set[str]:
        return set(self.base).union(*self.extras.values())


def load_member(folder: str) -> Member:
    project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
    extras = {k: frozenset(map(requirement_name, v)) for k, v in project.get("optional-dependencies", {}).items()}
    return Member(folder, normalize(project["name"]), frozenset(map(requirement_name, project["dependencies"])), extras)


@cache
def _file_owners() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for dist in md.distributions():
        for f in dist.files or ():
            if f.suffix in (".py", ".so", ".pyi") or f.name == "__init__.py":
                owners[Path(str(dist.locate_file(f))).resolve()] = normalize(dist.metadata["Name"])
    return owners


def distribution_of(module: str) -> str:
    """The installed distribution that provides `module` (or its nearest importable parent)."""
    for optional, dist in OPTIONAL_MODULES.items():
        if module == optional or module.startswith(optional + "."):
            return dist
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:n]))
        except ModuleNotFoundError:
            spec = None
        if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
            owner = _file_owners().get(Path(spec.origin).resolve())
            if owner is not None:
                return owner
    return normalize(parts[0])  # not installed here (an extra of another platform): named like its module


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def member_modules(member: Member) -> Iterator[tuple[str, Path]]:
    for root in member.roots:
        for path in sorted((root / "rentscout").rglob("*.py")):
            yield _module_name(path, root), path


def _imported_names(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        return [".".join([*anchor, *([base] if base else [])]) + f".{a.name}" for a in node.names]
    return [f"{base}.{a.name}" for a in node.names]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(body: list[ast.stmt], top: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, with whether it runs when the module loads (not in a function, a
    TYPE_CHECKING block or a try that handles its absence)."""
    for stmt in body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            yield stmt, top
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(stmt.body, False)
        elif isinstance(stmt, ast.ClassDef):
            yield from _walk(stmt.body, top)
        elif isinstance(stmt, ast.If):
            yield from _walk(stmt.body, top and not _is_type_checking(stmt))
            yield from _walk(stmt.orelse, top)
        elif isinstance(stmt, ast.Try):
            yield from _walk(stmt.body, False)
            for handler in stmt.handlers:
                yield from _walk(handler.body, top)
            yield from _walk(stmt.orelse, top)
            yield from _walk(stmt.finalbody, top)
        elif isinstance(stmt, ast.With | ast.AsyncWith | ast.For | ast.AsyncFor | ast.While):
            yield from _walk(stmt.body, top)


def imports_of(modules: Iterator[tuple[str, Path]] | list[tuple[str, Path]]) -> Imports:
    found = Imports()
    for module, path in modules:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        for node, top in _walk(tree.body, True):
            for name in _imported_names(node, package):
                root = name.split(".")[0]
                if root == "rentscout":
                    found.rentscout.setdefault(name, set()).add(module)
                elif root and root not in __import__("sys").stdlib_module_names and root != "__future__":
                    dist = distribution_of(name)
                    found.third_party.setdefault(dist, set()).add(module)
                    if top:
                        found.top_level.setdefault(dist, set()).add(module)
    return found


def owner_of(module: str, members: list[Member]) -> str | None:
    """The workspace distribution whose wheel holds `module` (or its package)."""
    for member in members:
        for root in member.roots:
            rel = Path(*module.split("."))
            for candidate in ((root / rel).with_suffix(".py"), root / rel, (root / rel.parent).with_suffix(".py")):
                if candidate.exists():
                    return member.name
    return None


def misplaced_imports(member: Member, imports: Imports, members: list[Member]) -> list[str]:
    allowed = {member.name} | {m.name for m in members if m.name in member.base}
    bad = []
    for name, importers in sorted(imports.rentscout.items()):
        owner = owner_of(name, members)
        if owner is not None and owner not in allowed:
            bad.append(f"{sorted(importers)} import {name} of {owner}, which {member.name} does not depend on")
    return bad


MEMBER_LIST = [load_member(f) for f in MEMBERS]
WORKSPACE = {m.name for m in MEMBER_LIST}


def test_the_workspace_has_the_three_distributions() -> None:
    assert {m.name: m.folder for m in MEMBER_LIST} == {
        "rentscout-core": "core",
        "rentscout-client": "clients",
        "rentscout-server": "services",
    }
    every = [m for member in MEMBER_LIST for m, _ in member_modules(member)]
    assert len(every) == len(set(every)) > 100, "a module in two distributions, or the roots moved"


@pytest.mark.parametrize("member", MEMBER_LIST, ids=lambda m: m.name)
def test_declared_dependencies_are_what_the_modules_import(member: Member) -> None:
    imports = imports_of(member_modules(member))
    imported = set(imports.third_party) - set(UNDECLARED)
    declared = member.declared() - WORKSPACE
    reasons = NOT_IMPORTED.get(member.name, {})
    assert imported - declared == set(), {d: sorted(imports.third_party[d]) for d in imported - declared}
    assert declared - imported == set(), f"declared by {member.name} but never imported: {sorted(declared - imported)}"
    workspace_declared = member.declared() & WORKSPACE
    used = {owner_of(n, MEMBER_LIST) for n in imports.rentscout} - {member.name}
    assert workspace_declared - used == set(reasons), (workspace_declared - used, reasons)
    # what a module imports as it loads comes with the distribution itself, or with the extra its package is for
    assert load_time_extras(member, imports) == {}


def load_time_extras(member: Member, imports: Imports) -> dict[str, list[str]]:
    """Distributions that modules import as they load although only an extra (not theirs) brings them."""
    bad: dict[str, list[str]] = {}
    for dist, modules in imports.top_level.items():
        for module in modules:
            allowed = set(member.base) | {member.name}
            for (name, extra), packages in EXTRA_PACKAGES.items():
                if name == member.name and any(module == p or module.startswith(p + ".") for p in packages):
                    allowed |= member.extras[extra]
            if dist not in allowed:
                bad.setdefault(dist, []).append(module)
    return bad


@pytest.mark.parametrize("member", MEMBER_LIST, ids=lambda m: m.name)
def test_modules_import_only_their_own_and_their_dependencies_distributions(member: Member) -> None:
    assert misplaced_imports(member, imports_of(member_modules(member)), MEMBER_LIST) == []


def test_a_client_module_importing_server_code_is_caught(tmp_path: Path) -> None:
    client = next(m for m in MEMBER_LIST if m.name == "rentscout-client")
    planted = tmp_path / "planted.py"
    planted.write_text("def later():\n    from rentscout.runtime import errors\n    import asyncpg\n")
    imports = imports_of([("rentscout.sdk.planted", planted)])
    (bad,) = misplaced_imports(client, imports, MEMBER_LIST)
    assert bad.startswith("['rentscout.sdk.planted'] import rentscout.runtime.errors of rentscout-server"), bad
    assert "asyncpg" in set(imports.third_party) - client.declared()


def test_an_optional_import_at_load_time_is_caught(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import redis\nimport pyarrow\n"
        "try:\n    import pglast\nexcept ImportError:\n    pass\n"
    )
    imports = imports_of([("rentscout.sdk.planted", planted)])
    assert set(imports.top_level) == {"pyarrow"} and {"redis", "pglast", "pyarrow"} <= set(imports.third_party)
    client = next(m for m in MEMBER_LIST if m.name == "rentscout-client")
    assert load_time_extras(client, imports) == {"pyarrow": ["rentscout.sdk.planted"]}
