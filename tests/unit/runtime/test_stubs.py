"""The committed gRPC stubs match protos/ (the same check `make check-stubs` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_stubs_are_fresh() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "codegen.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "up to date" in out.stdout
    # checking writes nothing and says one line (no "Writing mypy to ..." from the plugin)
    assert out.stderr == "" and len(out.stdout.splitlines()) == 1, out.stdout + out.stderr
