"""Markers follow directories (tests/conftest.py): `-m "not integration"` really leaves every integration
test out, and `-m e2e` / `-m reliability` select their whole directory and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = """
def pytest_collection_finish(session):
    for item in session.items:
        print("MARKS\\t" + item.nodeid + "\\t" + ",".join(sorted({m.name for m in item.iter_markers()})))
"""
DIRECTORY_MARKERS = {"integration", "e2e", "reliability"}


def test_every_test_carries_the_marker_of_its_directory_and_no_other(tmp_path: Path) -> None:
    (tmp_path / "list_marks.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "list_marks",
            "tests/integration",
            "tests/e2e",
            "tests/reliability",
            "tests/unit/test_lock.py",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    marks = {}
    for line in proc.stdout.splitlines():
        if line.startswith("MARKS\t"):
            _, nodeid, names = line.split("\t")
            marks[nodeid] = set(names.split(",")) & DIRECTORY_MARKERS
    folders = {nodeid.split("/")[1] for nodeid in marks}
    assert {"integration", "e2e", "reliability", "unit"} <= folders and len(marks) > 100
    wrong = {n: m for n, m in marks.items() if m != ({n.split("/")[1]} & DIRECTORY_MARKERS)}
    assert wrong == {}
