"""The import rules of docs/architecture.md, checked on the AST of every module (function-level
imports included): layers point down only.

- core (rentscout.wire, rentscout.resilience) imports only the generated stubs and third parties;
- services (the runtime, the three services, db, devstack, ops) never import the SDK or the CLI;
- the SDK and the CLI never import the runtime or any service package;
- only the composition root, rentscout.main, sees both sides.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("rentscout.common", "rentscout.export", "rentscout.cache", "rentscout.analyzer", "rentscout.arrow_flight")
CORE = ("rentscout.wire", "rentscout.resilience")
CLIENT = ("rentscout.sdk", "rentscout.cli")
SERVER = ("rentscout.runtime", "rentscout.export_service", "rentscout.cache_service", "rentscout.analyzer_service",
          "rentscout.db", "rentscout.devstack", "rentscout.ops")


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> list[tuple[str, Path]]:
    found = [(_module_name(p, ROOT / src), p) for src in ("core", "services", "clients") for p in (ROOT / src).rglob("*.py")]
    assert len(found) > 50, "the source roots moved?"
    return sorted(found)


def imports(module: str, path: Path) -> set[str]:
    """Every rentscout module `module` imports, wherever the import statement is."""
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {name for name in out if name == "rentscout" or name.startswith("rentscout.")}


def forbidden_for(module: str) -> tuple[tuple[str, ...], str]:
    if _within(module, CORE):
        return (*SERVER, *CLIENT, "rentscout.main"), "core imports nothing above it"
    if _within(module, SERVER):
        return (*CLIENT, "rentscout.main"), "services never import the SDK or the CLI"
    if _within(module, CLIENT):
        return (*SERVER, "rentscout.main"), "the SDK and the CLI never import server code"
    return (), ""


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down(module: str, path: Path) -> None:
    forbidden, rule = forbidden_for(module)
    bad = sorted(name for name in imports(module, path) if _within(name, forbidden))
    assert not bad, f"{module} imports {bad}: {rule}"


def test_every_module_is_in_a_layer() -> None:
    known = (*CORE, *SERVER, *CLIENT, "rentscout.main")
    assert [m for m, _ in modules() if not _within(m, known)] == []


def test_the_rules_catch_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def lazy():\n    from rentscout.sdk import errors\n")
    assert "rentscout.sdk.errors" in imports("rentscout.runtime.bad", bad)
    assert _within("rentscout.sdk.errors", forbidden_for("rentscout.runtime.bad")[0])
    assert not _within("rentscout.wire.enums", forbidden_for("rentscout.sdk.export")[0])
    assert not any(_within(g, forbidden_for("rentscout.wire.enums")[0]) for g in GENERATED)
