"""Missing dependencies skip locally but fail under CI=true (a skip must never hide a missing install)."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, what: str) -> None:
    if ok:
        return
    if in_ci():
        pytest.fail(f"CI=true and {what} is missing: install it (make bootstrap does)", pytrace=False)
    pytest.skip(f"{what} is not available")
