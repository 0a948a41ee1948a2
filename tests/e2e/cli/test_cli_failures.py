"""The `rentscout` client commands as a newcomer meets them when something is wrong: a real process,
stderr captured through a pipe (not a terminal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rentscout.devstack.instances import free_port


def rentscout(*args: str, timeout: float = 60, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if k != "COLUMNS"}, **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "rentscout.main", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_export_against_a_closed_port_fails_fast_once_with_the_address_and_a_hint(tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    out = rentscout("export", "--target", target, "--format", "csv", "-o", str(tmp_path / "x.csv"))
    assert time.monotonic() - started < 20  # a generous cap: it used to resume for 251 s
    assert out.returncode == 3, out.stderr
    lines = out.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, out.stderr  # printed once
    assert target in errors[0] and "Connection refused" in errors[0]
    assert len(errors[0]) > 100  # not folded at 80 columns when stderr is not a terminal
    assert any(line.strip().startswith("hint:") and "make up" in line and target in line for line in lines)
    assert "WARNING" not in out.stderr and "INFO" not in out.stderr  # warnings and retries only with -v
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_verbose_shows_the_retries_each_on_one_line() -> None:
    target = f"127.0.0.1:{free_port()}"
    out = rentscout("cache", "cities", "--target", target, "-v")
    assert out.returncode == 3
    retries = [line for line in out.stderr.splitlines() if line.startswith("rentscout: INFO: retrying")]
    assert retries and all(target in line for line in retries)
    assert sum(line.startswith("error:") for line in out.stderr.splitlines()) == 1


def test_empty_results_say_so_with_the_closest_city_and_exit_0(service_env: dict[str, str], tmp_path: Path) -> None:
    from harness.servers import ServerProcess

    server = ServerProcess("all", service_env, tmp_path).start()
    try:
        cities_from = server.target  # RENTSCOUT_CACHE_TARGET: where the export looks the cities up
        out_file = tmp_path / "moscw.csv"
        export = rentscout(
            "export", "--target", server.target, "--city", "Moscw", "-o", str(out_file), RENTSCOUT_CACHE_TARGET=cities_from
        )
        popular = rentscout("cache", "popular", "--target", server.target, "--city", "moscow")
        stats = rentscout("cache", "price-stats", "--target", server.target, "--city", "Xyzzy", "--json")
        found = rentscout("cache", "popular", "--target", server.target, "--city", "Moscow", "--limit", "1")
        no_match = rentscout(
            "export",
            "--target",
            server.target,
            "--city",
            "Moscow",
            "--min-price",
            "999999999",
            "-o",
            str(tmp_path / "none.csv"),
            RENTSCOUT_CACHE_TARGET=cities_from,
        )
    finally:
        server.stop()
    assert export.returncode == 0, export.stderr
    assert "note: the export matched no rows" in export.stderr
    assert "hint: no city 'Moscw' (closest: Moscow" in export.stderr and "rentscout cache cities" in export.stderr
    assert out_file.exists()  # the (empty) file is still written: an empty answer is an answer
    assert popular.returncode == 0 and "no active listings in 'moscow'" in popular.stderr
    assert "closest: Moscow" in popular.stderr
    assert stats.returncode == 0
    assert json.loads(stats.stderr.strip().splitlines()[-1])["notice"]["hint"].startswith("no city 'Xyzzy'; ")
    assert json.loads(stats.stdout).get("count", 0) == 0  # stdout stays the data
    assert found.returncode == 0 and "note:" not in found.stderr
    assert no_match.returncode == 0
    assert "hint: the cities exist but nothing else in the filter matched" in no_match.stderr
