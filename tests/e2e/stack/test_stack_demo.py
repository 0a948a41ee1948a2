"""The README's first command: `rentscout stack demo` runs the three services and the sample job."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

from harness import ecs
from harness.ports import free_offset


def test_stack_demo_end_to_end(service_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RENTSCOUT_DATABASE_URL": service_env["RENTSCOUT_DATABASE_URL"],
        "RENTSCOUT_REDIS_URL": service_env["RENTSCOUT_REDIS_URL"],
    }
    offset = free_offset(random.Random().randrange(2000, 8000, 10))  # away from the default ports a developer may use
    out = subprocess.run(
        [sys.executable, "-m", "rentscout.main", "stack", "demo", "--dir", str(tmp_path), "--port-offset", str(offset)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "exported" in text and "JSONL" in text
    assert "second call: cache hit" in text
    # no line reads as if a call returned nothing: each call says how many listings, then they are listed
    calls = [line for line in text.splitlines() if line.startswith("[stack] popular properties in Moscow, ")]
    assert len(calls) == 2 and all(line.endswith(" 5 listings") for line in calls), calls
    listed = text.split("[stack] the 5 most viewed active Moscow listings:\n", 1)[1].splitlines()[:5]
    assert all(line.startswith("[stack]   #") and " views " in line for line in listed), listed
    # numbers one way: thousands separated, and counts say what they count
    assert re.search(r"^\[stack\] exported [\d,]+ Moscow listings \(active and inactive\)", text, re.M), text
    assert re.search(r"^\[stack\] Moscow prices: [\d,]+ active listings", text, re.M), text
    for line in text.splitlines():
        if line.startswith(("[stack] exported ", "[stack] Moscow prices", "[stack] table properties")):
            assert not re.search(r"(?<![\d,.#:/])\d{4,}(?![\d,.])", line.split(" to ")[0]), line
    assert "EXPLAIN ANALYZE popular query" in text and "demo finished" in text
    # auth on by default: the demo called with the generated tokens, and says how to call the stack yourself
    assert "auth is on" in text and (tmp_path / "tokens").stat().st_mode & 0o077 == 0
    assert "export RENTSCOUT_TOKEN=" in text and 'grpcurl -plaintext -H "authorization: Bearer $RENTSCOUT_TOKEN"' in text
    # never silent for long: each step announces itself before it runs
    assert [line for line in text.splitlines() if line.startswith("[stack] demo: ")][:3] == [
        "[stack] demo: exporting up to 20,000 Moscow listings as JSONL ...",
        "[stack] demo: the most viewed Moscow listings, twice (the second call is a cache hit) ...",
        "[stack] demo: table statistics and EXPLAIN ANALYZE of the popular query (admin) ...",
    ]
    lines = (tmp_path / "demo-export.jsonl").read_text().splitlines()
    assert lines and all('"city":"Moscow"' in line for line in lines)
    for name in ("export", "cache-query", "analyzer"):
        ecs.register(tmp_path / "logs" / f"{name}.log")
        last = (tmp_path / "logs" / f"{name}.log").read_text().strip().splitlines()[-1]
        assert json.loads(last)["message"] == "stopped"  # each service shut down gracefully
        # a graceful stop warns about nothing: there is nothing for an operator to act on
        records = [json.loads(line) for line in (tmp_path / "logs" / f"{name}.log").read_text().splitlines()]
        stopping = next(i for i, r in enumerate(records) if r["message"].startswith("shutting down"))
        warned = [r["message"] for r in records[stopping:] if r["log.level"] in ("warning", "error")]
        assert not warned, (name, warned)
