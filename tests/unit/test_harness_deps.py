"""A missing dependency is a failure that names it and how to install it, unless ALLOW_SKIPS=1 outside CI."""

from __future__ import annotations

import pytest

from harness.deps import require

WHAT = "the HypoPG extension (apt-get install postgresql-15-hypopg)"


@pytest.mark.parametrize(("ci", "allow"), [("", ""), ("true", ""), ("true", "1")])
def test_a_missing_dependency_fails_naming_it_and_how_to_install_it(monkeypatch: pytest.MonkeyPatch, ci: str, allow: str) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("ALLOW_SKIPS", allow)
    with pytest.raises(pytest.fail.Exception) as failed:
        require(False, WHAT)
    assert WHAT in str(failed.value) and "bootstrap.sh" in str(failed.value)
    assert ("ALLOW_SKIPS=1" in str(failed.value)) is (ci == "")


def test_allow_skips_turns_it_into_a_skip_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("ALLOW_SKIPS", "1")
    with pytest.raises(pytest.skip.Exception) as skipped:
        require(False, WHAT)
    assert WHAT in str(skipped.value)
    require(True, WHAT)  # present: nothing happens
