"""Mixed load figures (moved here from the test suite, which asserts behaviour only): requests served,
throughput, latency percentiles and memory growth of `rentscout serve all` under 32 concurrent clients.

    python bench/load_bench.py [--seconds 20] [--clients 32]

The figures depend on the machine; compare runs on the same one. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
from sdk_bench import cache_service

LOADGEN = Path(__file__).resolve().parents[1] / "tests" / "harness" / "loadgen.py"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rows", type=int, default=20_000)
    args, _ = parser.parse_known_args()
    pid: list[int] = []
    with cache_service(args.rows, service="all", extra_env={"RENTSCOUT_EXPORT_MAX_CONCURRENT": "32"}, pid=pid) as target:
        proc = psutil.Process(pid[0])
        load = subprocess.Popen(
            [sys.executable, str(LOADGEN), "--target", target, "--seconds", str(args.seconds), "--clients", str(args.clients)],
            stdout=subprocess.PIPE,
            text=True,
        )
        samples = []
        while load.poll() is None:
            samples.append(proc.memory_info().rss / 2**20)
            time.sleep(0.5)
        result = json.loads(load.communicate(timeout=60)[0])
    warm = samples[len(samples) // 4] if samples else 0.0
    print(
        f"load: {result['requests']} requests, {result['rps']} rps, p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, errors {result['errors']}, rows exported {result['rows_exported']}"
    )
    if samples:
        print(
            f"RSS after warm-up {warm:.0f} MiB -> {samples[-1]:.0f} MiB at the end (max {max(samples):.0f}), "
            f"growth {samples[-1] - warm:+.0f} MiB"
        )


if __name__ == "__main__":
    main()
