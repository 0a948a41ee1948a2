"""The pre-commit hooks run the same checks as `make lint` and `make typecheck`, with the locked tools."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _recipe(target: str) -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert body, target
    return [line.strip() for line in body.group(1).splitlines()]


def test_the_hooks_run_ruff_and_mypy_as_make_does() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert set(hooks) == {"ruff-format", "ruff", "mypy"}
    lint, typecheck = _recipe("lint"), _recipe("typecheck")
    assert any(line.startswith("$(BIN)/ruff format --check") for line in lint)
    assert hooks["ruff-format"]["entry"] == ".venv/bin/ruff format --check"
    assert any(line.startswith("$(BIN)/ruff check") for line in lint)
    assert hooks["ruff"]["entry"] == ".venv/bin/ruff check"
    assert typecheck == ["$(BIN)/mypy"] and hooks["mypy"]["entry"] == ".venv/bin/mypy"
    assert hooks["mypy"]["pass_filenames"] is False  # mypy checks the whole namespace from pyproject.toml
    for hook in hooks.values():
        assert (ROOT / hook["entry"].split()[0]).exists(), f"{hook['entry']}: run scripts/bootstrap.sh"
