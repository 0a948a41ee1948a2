"""AnalyzeQuery overhead: a gRPC AnalyzeQuery call against a bare EXPLAIN ANALYZE over asyncpg (the
baseline, measured in the same run on the same private PostgreSQL), plus the pure-Python share
(safety parse, plan parse, insights). Not a test: prints figures and ratios.

    .venv/bin/python bench/analyzer_bench.py [--rounds 200] [--distinct] [--runs 5]

With `--runs N`, the measurement is repeated N times on the same database (a new server each time) and
the median of the N ratios is printed last: the figure the target (at most 2.5x) is read from.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.servers import in_process
from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.analyzer_service.insights import analyze_plan
from rentscout.analyzer_service.plan import parse_explain
from rentscout.analyzer_service.safety import parse_select
from rentscout.analyzer_service.service import create
from rentscout.db.migrate import migrate
from rentscout.db.seed import seed
from rentscout.devstack.instances import PostgresInstance

QUERIES = [
    "SELECT city, count(*) FROM properties WHERE price > $1 GROUP BY city ORDER BY 2 DESC",
    "SELECT id, title FROM properties WHERE city = $2 AND price > $1 ORDER BY views DESC LIMIT 20",
]
PARAMS: tuple[int, str] = (100_000, "Moscow")


def fmt(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"median {1000 * statistics.median(samples):7.3f} ms   p95 {1000 * p95:7.3f} ms"


async def measure(dsn: str, rounds: int, distinct: bool = False) -> tuple[list[float], list[float], str]:
    """Alternate one baseline call and one AnalyzeQuery call, so machine noise hits both alike.

    The same two statements again and again, as a dashboard or the slow-query list sends them: asyncpg
    keeps the baseline's statement prepared, and the analyzer keeps its own. With `distinct`, each round's
    statement is new to both (a comment numbers it), so each pays for parsing and preparing it."""
    params = [analyzer_pb2.QueryParam(int_value=PARAMS[0]), analyzer_pb2.QueryParam(string_value=PARAMS[1])]
    conn = await asyncpg.connect(dsn)
    base: list[float] = []
    ours: list[float] = []
    raw = ""
    try:
        async with (
            in_process([create], {"RENTSCOUT_DATABASE_URL": dsn, "RENTSCOUT_LOG_LEVEL": "warning"}) as host,
            grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
        ):
            stub = analyzer_pb2_grpc.AnalyzerServiceStub(channel)
            for i in range(rounds + 20):  # the first 20 warm caches and pools
                n = 1 if i % 2 == 0 else 2
                sql = f"{QUERIES[i % 2]} /* round {i} */" if distinct else QUERIES[i % 2]
                started = time.perf_counter()
                await conn.fetchval(f"EXPLAIN (FORMAT JSON, ANALYZE, BUFFERS) {sql}", *PARAMS[:n])
                middle = time.perf_counter()
                reply = await stub.AnalyzeQuery(
                    analyzer_pb2.AnalyzeQueryRequest(sql=sql, params=params[:n], analyze=True, buffers=True)
                )
                done = time.perf_counter()
                if i >= 20:
                    base.append(middle - started)
                    ours.append(done - middle)
                raw = reply.raw_json
    finally:
        await conn.close()
    return base, ours, raw


def pure_python(raw: str, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        started = time.perf_counter()
        parse_select(QUERIES[i % 2])
        analyze_plan(parse_explain(raw))
        out.append(time.perf_counter() - started)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--distinct", action="store_true", help="a statement never seen before in every round")
    parser.add_argument("--runs", type=int, default=1, help="repeat the measurement; print the median ratio")
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory(prefix="rentscout-bench-") as tmp:
        pg = PostgresInstance(Path(tmp) / "pg")
        pg.start()
        try:
            await migrate(pg.dsn)
            await seed(pg.dsn, 20_000)
            for run in range(1, args.runs + 1):
                base, ours, raw = await measure(pg.dsn, args.rounds, args.distinct)
                py = pure_python(raw, args.rounds)
                ratios.append(statistics.median(ours) / statistics.median(base))
                print(f"run {run}/{args.runs}")
                print(f"EXPLAIN ANALYZE over asyncpg (baseline): {fmt(base)}")
                print(f"AnalyzeQuery over gRPC (analyzer):       {fmt(ours)}")
                print(f"  of which parse + plan + insights:      {fmt(py)}")
                print(
                    f"ratio analyzer/baseline (median): {ratios[-1]:.2f}x ({args.rounds} calls each, 20k rows, "
                    f"{'distinct' if args.distinct else 'repeated'} statements)",
                    flush=True,
                )
        finally:
            pg.destroy()
    if args.runs > 1:
        print(f"median of {args.runs} runs: {statistics.median(ratios):.2f}x (runs: {', '.join(f'{r:.2f}x' for r in ratios)})")


if __name__ == "__main__":
    asyncio.run(main())
