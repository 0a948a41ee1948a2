"""A missing dependency fails the test that needs it, naming it and how to install it: a skip must never
hide a missing install. A developer who knowingly lacks one opts out with ALLOW_SKIPS=1 (not under CI=true)."""

from __future__ import annotations

import os

import pytest

ALLOW_SKIPS_ENV = "ALLOW_SKIPS"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skips_allowed() -> bool:
    """ALLOW_SKIPS=1 outside CI: missing dependencies skip instead of failing."""
    return not in_ci() and os.environ.get(ALLOW_SKIPS_ENV, "").lower() in ("1", "true", "yes")


def require(ok: bool, what: str) -> None:
    """Fail (or, with ALLOW_SKIPS=1 outside CI, skip) unless `ok`; `what` names the dependency and says how to
    install it, e.g. "the HypoPG extension (apt-get install postgresql-15-hypopg)"."""
    if ok:
        return
    if skips_allowed():
        pytest.skip(f"{what} is not available ({ALLOW_SKIPS_ENV}=1)")
    why = "CI=true" if in_ci() else f"set {ALLOW_SKIPS_ENV}=1 to skip such tests instead"
    pytest.fail(f"missing dependency: {what}; `sudo bash scripts/bootstrap.sh` installs it with apt ({why})", pytrace=False)
