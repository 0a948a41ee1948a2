"""What the `rentscout` client commands say, read as a newcomer reads them: real processes against a real
server, stderr through a pipe. Each message says what happened, to which file, and what to do next."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.servers import ServerProcess
from rentscout.devstack.instances import free_port

ADMIN, READER = "e2e-cli-admin-token", "e2e-cli-reader-token"


def rentscout(*args: str, timeout: float = 120, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if k != "COLUMNS"}, **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "rentscout.main", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def server(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {**service_env, "RENTSCOUT_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:reader"}
    proc = ServerProcess("all", env, tmp_path_factory.mktemp("cli-messages")).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_ctrl_c_mid_export_says_what_was_written_and_removed_and_how_to_retry(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    partial = tmp_path / "all.jsonl.partial"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rentscout.main",
            "export",
            "--target",
            server.target,
            "--token",
            READER,
            "--rows-per-chunk",
            "1",
            "--progress",
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert server.proc is not None
    try:
        end = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size > 0):
            assert cli.poll() is None and time.monotonic() < end, cli.communicate()
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGSTOP)  # the export cannot finish now: the Ctrl-C lands mid-export
        assert cli.poll() is None, "the export finished before it could be interrupted"
        cli.send_signal(signal.SIGINT)
        _, stderr = cli.communicate(timeout=60)
    finally:
        server.proc.send_signal(signal.SIGCONT)
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130, stderr
    error = [line for line in stderr.splitlines() if line.startswith("error: INTERRUPTED: ")]
    assert len(error) == 1, stderr
    rows = int(re.search(r"interrupted after ([\d,]+) rows", error[0]).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert rows > 0, error[0]
    assert f"removed the incomplete {partial}; {out} was not created" in error[0]
    assert "hint: run the same command again" in stderr
    assert "correlation id" not in stderr and "Traceback" not in stderr  # a local event, said once
    assert stderr.rstrip().splitlines()[-1].strip().startswith("hint:")  # the bar is closed above the message
    assert not partial.exists() and not out.exists()


def test_ctrl_c_mid_export_to_stdout_says_the_data_there_is_incomplete(server: ServerProcess) -> None:
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rentscout.main",
            "export",
            "--target",
            server.target,
            "--token",
            READER,
            "--format",
            "jsonl",
            "-o",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert cli.stdout is not None
    try:
        assert len(cli.stdout.read(65536)) == 65536  # rows are flowing; now the pipe fills and the export waits
        cli.send_signal(signal.SIGINT)
        stdout, stderr_bytes = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    stderr = stderr_bytes.decode()
    assert cli.returncode == 130, stderr
    assert re.search(
        r"^error: INTERRUPTED: interrupted after [\d,]+ rows \([^)]+\): the data on stdout is "
        r"incomplete$",
        stderr,
        re.M,
    ), stderr
    assert "hint: run the same command again" in stderr and "correlation id" not in stderr
    assert len(stdout.splitlines()) < 20_000  # it was cut short indeed


def test_a_missing_directory_names_the_users_path_without_a_correlation_id(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "out.csv"
    out = rentscout("export", "--target", f"127.0.0.1:{free_port()}", "--format", "csv", "-o", str(target))
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines()[0] == f"error: IO: No such file or directory: {target}"
    assert ".partial" not in out.stderr and "correlation id" not in out.stderr
    assert f"hint: the directory {target.parent} does not exist: create it (mkdir -p {target.parent})" in out.stderr


def test_a_remote_error_keeps_its_correlation_id(tmp_path: Path) -> None:
    out = rentscout("cache", "cities", "--target", f"127.0.0.1:{free_port()}", "--retries", "0")
    assert out.returncode == 3
    assert re.search(r"^  correlation id: [0-9a-f-]{36}$", out.stderr, re.M), out.stderr


@pytest.mark.parametrize(
    ("args", "usage", "suggestion"),
    [
        (["export", "--fromat", "csv"], "usage: rentscout export ", "did you mean --format?"),
        (["cache", "popular", "--city", "Moscow", "--limt", "3"], "usage: rentscout cache popular ", "did you mean --limit?"),
        (["analyze", "slow", "--order-by=calls", "--limti=3"], "usage: rentscout analyze slow ", "did you mean --limit?"),
    ],
)
def test_a_mistyped_flag_shows_the_subcommands_usage_and_the_closest_flag(args: list[str], usage: str, suggestion: str) -> None:
    out = rentscout(*args)
    assert out.returncode == 2
    assert out.stderr.startswith(usage), out.stderr
    assert suggestion in out.stderr and "usage: rentscout [-h] COMMAND" not in out.stderr


def test_counts_say_what_they_count(server: ServerProcess, tmp_path: Path) -> None:
    token = ("--token", READER, "--target", server.target)
    cities = rentscout("cache", "cities", *token)
    assert cities.returncode == 0 and "active listings" in cities.stdout, cities.stdout
    active = {c["city"]: int(c["count"]) for c in json.loads(rentscout("cache", "cities", "--json", *token).stdout)["cities"]}
    everything = rentscout("export", "--city", "Moscow", "-o", str(tmp_path / "all.jsonl"), *token)
    only_active = rentscout("export", "--city", "Moscow", "--active-only", "-o", str(tmp_path / "active.jsonl"), *token)
    assert everything.returncode == 0 and only_active.returncode == 0
    all_rows = len((tmp_path / "all.jsonl").read_text().splitlines())
    assert f"exported {all_rows:,} rows (active and inactive listings)" in everything.stderr
    assert f"exported {active['Moscow']:,} active listings" in only_active.stderr  # the count `cache cities` shows
    assert all_rows > active["Moscow"]


def test_analyze_indexes_with_nothing_to_suggest_prints_only_the_sentence(server: ServerProcess) -> None:
    out = rentscout(
        "analyze", "indexes", "--sql", "SELECT id FROM properties WHERE id = 1", "--target", server.target, "--token", ADMIN
    )
    assert out.returncode == 0, out.stderr
    assert "no index worth creating" in out.stdout and "index suggestions" not in out.stdout, out.stdout


def test_analyze_slow_fits_an_80_column_terminal(server: ServerProcess) -> None:
    admin = ("--target", server.target, "--token", ADMIN)
    assert (
        rentscout("analyze", "explain", "SELECT count(*) FROM properties WHERE price > $1", "--param", "1", *admin).returncode
        == 0
    )  # at least one statement in pg_stat_statements
    out = rentscout("analyze", "slow", "--limit", "5", "--min-mean-ms", "0", *admin, COLUMNS="80")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    assert any(re.match(r"^\s*1\s+[\d,]+\s+[\d,]+\s+[\d,.]+\s", line) for line in lines), out.stdout  # unfolded numbers
    assert any(line.startswith("#1 ") for line in lines), out.stdout  # the statement itself, below the table
