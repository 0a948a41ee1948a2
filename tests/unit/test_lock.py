"""uv.lock pins exactly what the repository installs and tests, and agrees with pyproject.toml's bounds.

The lock is never refreshed implicitly (`make lock` does it); these tests fail when someone edits one of
the two files and not the other, and when an install path (bootstrap, image) does not use the lock.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def _uv_check(project: Path) -> subprocess.CompletedProcess[str]:
    assert UV is not None, "uv is locked in the dev extra: run scripts/bootstrap.sh"
    # --offline: the check reads the lock and pyproject.toml only; a new requirement cannot be satisfied
    # from the lock, so it fails without asking the registry.
    return subprocess.run(
        [UV, "lock", "--check", "--offline", "--project", str(project)], capture_output=True, text=True, timeout=120
    )


def _copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md", *(f"{m}/pyproject.toml" for m in MEMBERS)):
        (project / name).parent.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    return project


def test_the_lock_agrees_with_pyproject() -> None:
    proc = _uv_check(ROOT)
    assert proc.returncode == 0, f"uv.lock is out of date with pyproject.toml: run `make lock`\n{proc.stderr}"


@pytest.mark.parametrize(
    ("member", "edit"),
    [
        ("clients", ('"rich>=13.7",', '"rich>=13.7",\n    "six>=1.16",')),  # a dependency added to pyproject only
        ("services", ('"redis>=5.2",', '"redis>=999",')),  # a bound the locked version no longer meets
        (".", ('"ruff>=0.6",', '"ruff>=0.6",\n    "six>=1.16",')),  # the workspace root's dev tools
    ],
)
def test_a_disagreement_fails_the_check(tmp_path: Path, member: str, edit: tuple[str, str]) -> None:
    project = _copy_project(tmp_path)
    pyproject = project / member / "pyproject.toml"
    text = pyproject.read_text()
    assert edit[0] in text
    pyproject.write_text(text.replace(edit[0], edit[1], 1))
    assert _uv_check(project).returncode != 0


def test_every_extra_is_locked_with_hashes() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (me,) = [p for p in lock["package"] if p["name"] == "rentscout-dataplane"]
    assert set(me.get("optional-dependencies", {})) == set(extras)
    workspace = {p["name"] for p in lock["package"] if {"virtual", "editable"} & set(p.get("source", {}))}
    assert workspace == {"rentscout-dataplane", "rentscout-core", "rentscout-client", "rentscout-server"}
    for package in lock["package"]:
        if package["name"] in workspace:
            continue
        artifacts = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert artifacts and all(a.get("hash", "").startswith("sha256:") for a in artifacts), package["name"]


def test_bootstrap_and_the_image_install_the_lock_frozen() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen" in bootstrap and "uv sync --frozen" in dockerfile
    assert "pip install -e" not in bootstrap
    assert "lock_pin.py uv" in bootstrap and "lock_pin.py uv" in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "uv lock --upgrade" in makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]


def test_the_installed_environment_is_the_locked_one() -> None:
    """What this test run imports is what the lock pins (the venv was synced exactly)."""
    from importlib.metadata import version

    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    pinned = {p["name"]: p["version"] for p in lock["package"] if "version" in p}
    for name in ("grpcio", "protobuf", "asyncpg", "redis", "mypy", "pyarrow"):
        assert version(name) == pinned[name], name
