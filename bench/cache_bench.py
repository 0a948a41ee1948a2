"""Cache-query benchmark: a cache hit against the same server's grpc.health.v1.Health/Check (a bare
RPC), and against the same query uncached on a 1M-row table; then 200 concurrent cold requests for one key.

Standalone: starts a private PostgreSQL (seeded with --rows listings) and Redis, and three server
processes of the real runtime (ServiceHost, interceptors, access log at info level to a file):
  A  cache-query with near cache + Redis
  B  cache-query with the near cache off (every hit is a Redis round trip)
  C  cache-query with the cache disabled (every call runs the SQL)
Measurements of A's Health/Check, A and B take turns in small blocks (rotating which goes first), as
in bench/runtime_bench.py, so that machine noise hits them alike. Figures are client-observed
(grpc.aio client in this process). Goals: a near hit costs <= 1.25x the health check; a hit is >= 20x
faster than uncached price stats; 200 cold requests cause exactly one query. Then the invalidation
latency: from an UPDATE's commit to the first answer of A that shows it (the change log read on the
doorbell, see cache_service/changes.py), p50/p99 over --changes updates. bench/runtime_bench.py
breaks the per-call cost of the runtime down further.

    .venv/bin/python bench/cache_bench.py [--rows 1000000] [--calls 2000] [--rounds 4] [--block 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from benchlib import Figures, fmt, interleaved, latencies, stack, throughput

COLD_CITY, HOT_CITY = "Saint Petersburg", "Moscow"
PRICE_SQL = "WITHIN GROUP (ORDER BY price)"  # the price-stats statement, as pg_stat_statements stores it

if TYPE_CHECKING:
    from rentscout.cache.v1 import cache_pb2
# the answers whose assembly is measured: each carries a `cache` CacheInfo field
Answer = TypeVar("Answer", "cache_pb2.PriceStatsResponse", "cache_pb2.PopularPropertiesResponse")


# -- server side (a subprocess running this file with --serve) ----------------------------------


def serve(port: int) -> None:
    from rentscout.cache_service.service import create
    from rentscout.runtime import logs
    from rentscout.runtime.config import RuntimeSettings, load
    from rentscout.runtime.server import ServiceHost

    settings = load(RuntimeSettings)
    logs.configure("rentscout-cache-bench", "bench", settings.log_level)
    host = ServiceHost([create], settings, label="bench", host="127.0.0.1", port=port, metrics_port=None)
    asyncio.run(host.run_until_signal())


# -- client side --------------------------------------------------------------------------------


def assembly_costs(message: Answer, n: int = 2000) -> tuple[float, float, int]:
    """Seconds per answer: appending CacheInfo to stored bytes vs rebuilding the message (what a
    cache storing messages, or JSON, would do on every hit)."""
    from rentscout.cache.v1 import cache_pb2
    from rentscout.cache_service.entry import Entry

    kind = type(message)
    bare = kind()
    bare.CopyFrom(message)
    bare.ClearField("cache")
    entry = Entry("ns:v2.1:q:{0123456789abcdef0123456789abcdef}", bare.SerializeToString(), time.time(), 300.0, 0.1)
    t0 = time.perf_counter()
    for _ in range(n):
        entry.response(True, cache_pb2.CACHE_SOURCE_NEAR, time.time())
    stored = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        m = kind.FromString(entry.payload)
        m.cache.hit, m.cache.key, m.cache.source = True, entry.key, cache_pb2.CACHE_SOURCE_NEAR
        m.cache.ttl.FromSeconds(300)
        m.cache.age.FromNanoseconds(int((time.time() - entry.created) * 1e9))
        m.SerializeToString()
    return stored, (time.perf_counter() - t0) / n, len(entry.payload)


async def run(args: argparse.Namespace) -> int:
    import asyncpg
    from grpc_health.v1 import health_pb2

    from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
    from rentscout.common.v1 import common_pb2
    from rentscout.wire.health import health_stub

    async with stack(args.rows, "rentscout-cache-bench-") as st:
        a = st.server(__file__, "A-near", st.env())
        b = st.server(__file__, "B-redis", st.env(RENTSCOUT_CACHE_NEAR_MAX_ENTRIES="0"))
        c = st.server(__file__, "C-uncached", st.env(RENTSCOUT_CACHE_ENABLED="false"))
        for s in st.servers:
            await s.wait_ready()
        stub_a, stub_b, stub_c = (cache_pb2_grpc.CacheQueryServiceStub(s.channel) for s in (a, b, c))
        health = health_stub(a.channel)
        check = health_pb2.HealthCheckRequest()
        request = cache_pb2.PriceStatsRequest(city=HOT_CITY)

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "Health/Check (same server)": lambda: health.Check(check),
            "hit, near cache": lambda: stub_a.PriceStats(request),
            "hit, Redis": lambda: stub_b.PriceStats(request),
        }
        first = await stub_a.PriceStats(request)
        for _ in range(20):  # warm connections, admit the key to A's near cache
            for call in calls.values():
                await call()
        sources = {(await stub_a.PriceStats(request)).cache.source, (await stub_b.PriceStats(request)).cache.source}
        assert sources == {cache_pb2.CACHE_SOURCE_NEAR, cache_pb2.CACHE_SOURCE_REDIS}, sources
        figures = {name: Figures([]) for name in calls}
        for r in range(args.rounds):  # small blocks taking turns (benchlib.interleaved), as runtime_bench measures
            await interleaved(calls, figures, args.calls // args.rounds, args.block)
            await interleaved(
                calls, figures, args.calls // args.rounds, max(args.block, 10 * args.concurrency), concurrency=args.concurrency
            )
            print(f"round {r + 1}/{args.rounds} done", flush=True)

        uncached = Figures(await latencies(lambda: stub_c.PriceStats(request), args.uncached_calls))
        uncached.calls, uncached.seconds = await throughput(lambda: stub_c.PriceStats(request), args.uncached_calls, 4)
        figures[f"uncached PriceStats ({first.count:,} rows of {args.rows:,})"] = uncached

        conn = await asyncpg.connect(st.database_url)
        try:

            async def price_queries() -> int:
                return int(
                    await conn.fetchval(
                        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%' || $1 || '%'", PRICE_SQL
                    )
                )

            cold = cache_pb2.PriceStatsRequest(city=COLD_CITY, property_type=common_pb2.PROPERTY_TYPE_APARTMENT)
            before = await price_queries()
            t0 = time.perf_counter()
            replies = await asyncio.gather(*(stub_a.PriceStats(cold) for _ in range(200)))
            cold_seconds = time.perf_counter() - t0
            cold_queries = await price_queries() - before
        finally:
            await conn.close()
        cold_sources: dict[str, int] = {}
        for reply in replies:
            name = cache_pb2.CacheSource.Name(reply.cache.source)
            cold_sources[name] = cold_sources.get(name, 0) + 1

        invalidation = await invalidation_latencies(st.database_url, stub_a, args.changes)
        big = await stub_a.PopularProperties(cache_pb2.PopularPropertiesRequest(city=HOT_CITY, limit=100))
        assembly = {"PriceStats": assembly_costs(first), "PopularProperties(100)": assembly_costs(big)}

    print(f"\n{'RPC':<48} {'p50':>12} {'p99':>12} {'throughput':>14}")
    for name, f in figures.items():
        print(f"{name:<48} {fmt(f.p50)} {fmt(f.p99)} {f.rps:10.0f} rps")
    base, near, redis_hit = (figures[n] for n in calls)
    print(
        f"\n(sequential calls: {len(base.latencies)} per RPC; throughput: {args.concurrency} concurrent callers;"
        f" uncached: {args.uncached_calls} calls)"
    )
    ratio_base = near.p50 / base.p50
    ratio_uncached = uncached.p50 / near.p50
    print(
        f"hit (near) / Health/Check, p50:        {ratio_base:6.2f}x   (goal <= 1.25x) "
        f"{'MET' if ratio_base <= 1.25 else 'NOT MET'}"
    )
    print(f"hit (near) / Health/Check, p99:        {near.p99 / base.p99:6.2f}x")
    print(f"hit (near) / Health/Check, throughput: {near.rps / base.rps:6.2f}x")
    print(f"hit (Redis) / Health/Check, p50:       {redis_hit.p50 / base.p50:6.2f}x")
    print(
        f"uncached / hit (near), p50:            {ratio_uncached:6.0f}x   (goal >= 20x)   "
        f"{'MET' if ratio_uncached >= 20 else 'NOT MET'}"
    )
    print(f"uncached / hit (Redis), p50:           {uncached.p50 / redis_hit.p50:6.0f}x")
    print(
        f"200 concurrent cold requests:          {cold_queries} database quer{'y' if cold_queries == 1 else 'ies'} "
        f"in {cold_seconds * 1e3:.0f} ms, sources {cold_sources}   (goal: exactly 1)  "
        f"{'MET' if cold_queries == 1 else 'NOT MET'}"
    )
    inv = Figures(invalidation)
    print(
        f"invalidation latency (commit -> fresh answer, {len(invalidation)} changes): "
        f"p50 {inv.p50 * 1e3:.1f} ms, p99 {inv.p99 * 1e3:.1f} ms"
    )
    print("\nbuilding a hit's answer in the server (per call), and its share of a near hit's p50:")
    for name, (stored, reserialized, size) in assembly.items():
        print(
            f"  {name:<24} {size:>6} bytes: stored bytes + CacheInfo {stored * 1e6:6.1f} us, "
            f"parse + set cache + serialize {reserialized * 1e6:6.1f} us ({reserialized / stored:.1f}x); "
            f"hand-encoding saves {(reserialized - stored) / near.p50 * 100:.1f}% of the near hit"
        )
    return 0


async def invalidation_latencies(dsn: str, stub: object, changes: int) -> list[float]:
    """Seconds from each UPDATE's commit to A's first PriceStats answer showing it (polled back to back)."""
    import asyncpg

    from rentscout.cache.v1 import cache_pb2

    conn = await asyncpg.connect(dsn)
    pid, city = 9_000_000_000, "Benchgrad"
    request = cache_pb2.PriceStatsRequest(city=city)
    out = []
    try:
        await conn.execute(
            "INSERT INTO properties (id, source, external_id, title, city, property_type, price, area) "
            "VALUES ($1, 'avito', 'bench-inv', 'bench', $2, 'apartment', 1, 50)",
            pid,
            city,
        )
        for i in range(2, changes + 2):
            for _ in range(3):  # cached again (A admits it to its near cache)
                await stub.PriceStats(request)  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
            await conn.execute("UPDATE properties SET price = $2 WHERE id = $1", pid, i)
            t0 = time.perf_counter()
            while (await stub.PriceStats(request)).max != i:  # type: ignore[attr-defined]
                pass
            out.append(time.perf_counter() - t0)
    finally:
        await conn.execute("DELETE FROM properties WHERE id = $1", pid)
        await conn.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="listings in the private PostgreSQL")
    parser.add_argument("--calls", type=int, default=2000, help="calls per cached RPC (split over rounds)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved measurement rounds")
    parser.add_argument("--block", type=int, default=50, help="calls per RPC before the next one takes its turn")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent callers for throughput")
    parser.add_argument("--uncached-calls", type=int, default=20, help="calls of the uncached query")
    parser.add_argument("--changes", type=int, default=100, help="updates timed for the invalidation latency")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port)
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
