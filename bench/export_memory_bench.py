"""Export server memory at 8 concurrent streams: the figure the Kubernetes memory limits are sized from.

    .venv/bin/python bench/export_memory_bench.py [--rows 500000] [--streams 8] [--rounds 2]

Starts a private PostgreSQL (rentscout.devstack) with --rows seeded listings and one `rentscout serve export`
process (RENTSCOUT_EXPORT_MAX_CONCURRENT = --streams, the production slot count), then runs --streams
concurrent export streams, each a whole-table export read by its own client process: all CSV, all JSONL, all
JSON, all Arrow, then a mix of the four formats, --rounds times. It prints the server's resident memory when
idle and its peak (VmHWM, /proc) after each wave, and the limit that peak suggests (peak x 1.5, rounded up to
64 MiB: headroom for allocator fragmentation, bigger rows and the Python heap growing over days). The request
is the idle RSS plus one stream's share, rounded up likewise. k8s/base/deployments.yaml and the prod overlay
quote the figures of the last run (docs/operations.md, "Capacity").
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from export_bench import FORMATS, Server, seed_to

MIB = 1024


def stream(target: str, fmt: str, expect_rows: int) -> None:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("export_bench.py")), "--client", target, fmt],
        capture_output=True,
        text=True,
        check=True,
    )
    if f'"rows": {expect_rows},' not in out.stdout:
        raise RuntimeError(f"{fmt}: unexpected result {out.stdout.strip()}")


def wave(server: Server, formats: list[str], rows: int) -> float:
    """`formats` exported at once (one client process each); returns the wall seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(len(formats)) as pool:
        for future in [pool.submit(stream, server.target, fmt, rows) for fmt in formats]:
            future.result()
    return time.perf_counter() - started


def round_up(kib: float, step_mib: int = 64) -> int:
    """MiB, rounded up to `step_mib`."""
    return int(math.ceil(kib / MIB / step_mib) * step_mib)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()

    from rentscout.devstack.instances import PostgresInstance

    workdir = Path(tempfile.mkdtemp(prefix="export-memory-bench-"))
    pg = PostgresInstance(workdir / "pg").start()
    try:
        seed_to(pg.dsn, args.rows)
        server = Server(pg.dsn, workdir, max_concurrent=args.streams)
        try:
            idle = server.status_kb("VmRSS")
            print(f"idle RSS {idle / MIB:.1f} MiB", flush=True)
            mixed = [list(FORMATS)[i % len(FORMATS)] for i in range(args.streams)]
            for r in range(args.rounds):
                for name, formats in [*((fmt, [fmt] * args.streams) for fmt in FORMATS), ("mixed", mixed)]:
                    seconds = wave(server, formats, args.rows)
                    print(
                        f"round {r + 1}: {args.streams} x {name:6s} {seconds:6.1f}s  peak RSS so far "
                        f"{server.status_kb('VmHWM') / MIB:7.1f} MiB  now {server.status_kb('VmRSS') / MIB:7.1f} MiB",
                        flush=True,
                    )
            peak = server.status_kb("VmHWM")
        finally:
            server.stop()
        per_stream = max(0, peak - idle) / args.streams
        print(
            f"\n{args.streams} concurrent streams of {args.rows:,} rows: peak RSS {peak / MIB:.1f} MiB "
            f"(idle {idle / MIB:.1f} MiB, {per_stream / MIB:.1f} MiB per stream)"
        )
        print(f"suggested: requests.memory {round_up(idle + per_stream)}Mi, limits.memory {round_up(peak * 1.5)}Mi")
    finally:
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
