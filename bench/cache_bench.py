"""Cache-query benchmark: a cache hit against a bare echo RPC of the same runtime, and against the
same query uncached on a 1M-row table; then 200 concurrent cold requests for one key.

Standalone: starts a private PostgreSQL (seeded with --rows listings) and Redis, and three server
processes of the real runtime (ServiceHost, interceptors, access log at info level to a file):
  A  cache-query with near cache + Redis, and an extra echo service registered via a generic handler
  B  cache-query with the near cache off (every hit is a Redis round trip)
  C  cache-query with the cache disabled (every call runs the SQL)
Measurements of A, B and the echo are interleaved in rounds so that machine noise hits them alike.
Figures are client-observed (grpc.aio client in this process). Goals: a hit costs <= 1.2x the echo;
a hit is >= 20x faster than uncached price stats; 200 cold requests cause exactly one query.

    .venv/bin/python bench/cache_bench.py [--rows 1000000] [--calls 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

ECHO_SERVICE, ECHO_METHOD = "rentscout.bench.v1.Echo", "Echo"
COLD_CITY, HOT_CITY = "Saint Petersburg", "Moscow"
PRICE_SQL = "WITHIN GROUP (ORDER BY price)"  # the price-stats statement, as pg_stat_statements stores it


# -- server side (a subprocess running this file with --serve) ----------------------------------


def echo_factory(payload_size: int):  # type: ignore[no-untyped-def]
    """An extra service on the same ServiceHost: returns a fixed payload the size of a hit's answer."""
    from rentscout.runtime.server import ServiceSpec

    payload = b"\x08\x01" + b"x" * max(0, payload_size - 2)

    async def echo(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
        return payload

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(echo)  # bytes in, bytes out: no (de)serialization
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ECHO_SERVICE, {ECHO_METHOD: handler}),))

    return lambda resources: ServiceSpec(name=ECHO_SERVICE, register=register)


def serve(port: int, echo_bytes: int) -> None:
    from rentscout.cache_service.service import create
    from rentscout.runtime import logs
    from rentscout.runtime.config import RuntimeSettings, load
    from rentscout.runtime.server import ServiceHost

    settings = load(RuntimeSettings)
    logs.configure("rentscout-cache-bench", "bench", settings.log_level)
    factories = [create, *([echo_factory(echo_bytes)] if echo_bytes else [])]
    host = ServiceHost(factories, settings, label="bench", host="127.0.0.1", port=port, metrics_port=None)
    asyncio.run(host.run_until_signal())


# -- client side --------------------------------------------------------------------------------


@dataclass
class Figures:
    latencies: list[float]
    calls: int = 0
    seconds: float = 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    @property
    def rps(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


async def latencies(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


async def throughput(call: Callable[[], Awaitable[object]], n: int, concurrency: int) -> tuple[int, float]:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n, time.perf_counter() - t0


class Server:
    def __init__(self, name: str, env: dict[str, str], workdir: Path, echo_bytes: int = 0) -> None:
        from rentscout.devstack.instances import free_port

        self.name, self.port = name, free_port()
        self.log = (workdir / f"server-{name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--port", str(self.port), "--echo-bytes", str(echo_bytes)],
            env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")

    async def wait_ready(self, timeout: float = 60) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service="rentscout.cache.v1.CacheQueryService"),
                                         timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"server {self.name} not serving")

    async def close(self) -> None:
        await self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def assembly_costs(message: object, n: int = 2000) -> tuple[float, float, int]:
    """Seconds per answer: appending CacheInfo to stored bytes vs rebuilding the message (what a
    cache storing messages, or JSON, would do on every hit)."""
    from rentscout.cache.v1 import cache_pb2
    from rentscout.cache_service.entry import Entry

    kind = type(message)
    bare = kind()
    bare.CopyFrom(message)  # type: ignore[attr-defined]
    bare.ClearField("cache")  # type: ignore[attr-defined]
    entry = Entry("ns:v1.1:q:{0123456789abcdef0123456789abcdef}", bare.SerializeToString(), time.time(), 300.0, 0.1)
    t0 = time.perf_counter()
    for _ in range(n):
        entry.response(True, cache_pb2.CACHE_SOURCE_NEAR, time.time())
    stored = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        m = kind.FromString(entry.payload)  # type: ignore[attr-defined]
        m.cache.hit, m.cache.key, m.cache.source = True, entry.key, cache_pb2.CACHE_SOURCE_NEAR
        m.cache.ttl.FromSeconds(300)
        m.cache.age.FromNanoseconds(int((time.time() - entry.created) * 1e9))
        m.SerializeToString()
    return stored, (time.perf_counter() - t0) / n, len(entry.payload)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:9.0f} us" if seconds < 0.01 else f"{seconds * 1e3:9.1f} ms"


async def run(args: argparse.Namespace) -> int:
    import asyncpg

    from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
    from rentscout.common.v1 import common_pb2
    from rentscout.db.migrate import migrate
    from rentscout.db.seed import seed
    from rentscout.devstack.instances import PostgresInstance, RedisInstance

    root = Path(tempfile.mkdtemp(prefix="rentscout-cache-bench-"))
    pg = PostgresInstance(root / "pg")
    redis = RedisInstance(root / "redis")
    servers: list[Server] = []
    try:
        t0 = time.perf_counter()
        pg.start()
        redis.start()
        await migrate(pg.dsn)
        print(f"seeding {args.rows:,} listings ...", flush=True)
        await seed(pg.dsn, args.rows)
        print(f"PostgreSQL and Redis ready in {time.perf_counter() - t0:.0f}s (data in {root})", flush=True)
        env = {"RENTSCOUT_DATABASE_URL": pg.dsn, "RENTSCOUT_REDIS_URL": redis.url, "RENTSCOUT_LOG_LEVEL": "info",
               "RENTSCOUT_CACHE_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}", "OTEL_TRACES_EXPORTER": "none"}
        request = cache_pb2.PriceStatsRequest(city=HOT_CITY)
        hit_bytes = 0
        # the echo answers with as many bytes as a hit does: measure one first
        probe = Server("probe", env, root)
        servers.append(probe)
        await probe.wait_ready()
        hit_bytes = len((await cache_pb2_grpc.CacheQueryServiceStub(probe.channel).PriceStats(request)).SerializeToString())
        await probe.close()
        servers.remove(probe)

        a = Server("A-near", env, root, echo_bytes=hit_bytes)
        b = Server("B-redis", {**env, "RENTSCOUT_CACHE_NEAR_MAX_ENTRIES": "0"}, root)
        c = Server("C-uncached", {**env, "RENTSCOUT_CACHE_ENABLED": "false"}, root)
        servers += [a, b, c]
        for s in servers:
            await s.wait_ready()
        stub_a, stub_b, stub_c = (cache_pb2_grpc.CacheQueryServiceStub(s.channel) for s in (a, b, c))
        echo_rpc = a.channel.unary_unary(f"/{ECHO_SERVICE}/{ECHO_METHOD}")
        echo_body = request.SerializeToString()

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "echo (same runtime)": lambda: echo_rpc(echo_body),
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
        for r in range(args.rounds):
            for name, call in calls.items():
                figures[name].latencies += await latencies(call, args.calls // args.rounds)
            for name, call in calls.items():
                n, secs = await throughput(call, args.calls // args.rounds, args.concurrency)
                figures[name].calls += n
                figures[name].seconds += secs
            print(f"round {r + 1}/{args.rounds} done", flush=True)

        uncached = Figures(await latencies(lambda: stub_c.PriceStats(request), args.uncached_calls))
        uncached.calls, uncached.seconds = await throughput(lambda: stub_c.PriceStats(request), args.uncached_calls, 4)
        figures[f"uncached PriceStats ({first.count:,} rows of {args.rows:,})"] = uncached

        conn = await asyncpg.connect(pg.dsn)
        try:
            async def price_queries() -> int:
                return int(await conn.fetchval(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%' || $1 || '%'", PRICE_SQL))

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

        big = await stub_a.PopularProperties(cache_pb2.PopularPropertiesRequest(city=HOT_CITY, limit=100))
        assembly = {name: assembly_costs(message) for name, message in (("PriceStats", first), ("PopularProperties(100)", big))}

        print(f"\n{'RPC':<48} {'p50':>12} {'p99':>12} {'throughput':>14}")
        for name, f in figures.items():
            print(f"{name:<48} {fmt(f.p50)} {fmt(f.p99)} {f.rps:10.0f} rps")
        echo, near, redis_hit = (figures[n] for n in calls)
        print(f"\n(sequential calls: {len(echo.latencies)} per RPC; throughput: {args.concurrency} concurrent callers;"
              f" uncached: {args.uncached_calls} calls)")
        ratio_echo = near.p50 / echo.p50
        ratio_uncached = uncached.p50 / near.p50
        print(f"hit (near) / echo, p50:          {ratio_echo:6.2f}x   (goal <= 1.2x)  "
              f"{'MET' if ratio_echo <= 1.2 else 'NOT MET'}")
        print(f"hit (near) / echo, p99:          {near.p99 / echo.p99:6.2f}x")
        print(f"hit (near) / echo, throughput:   {near.rps / echo.rps:6.2f}x")
        print(f"hit (Redis) / echo, p50:         {redis_hit.p50 / echo.p50:6.2f}x")
        print(f"uncached / hit (near), p50:      {ratio_uncached:6.0f}x   (goal >= 20x)   "
              f"{'MET' if ratio_uncached >= 20 else 'NOT MET'}")
        print(f"uncached / hit (Redis), p50:     {uncached.p50 / redis_hit.p50:6.0f}x")
        print(f"200 concurrent cold requests:    {cold_queries} database quer{'y' if cold_queries == 1 else 'ies'} "
              f"in {cold_seconds * 1e3:.0f} ms, sources {cold_sources}   (goal: exactly 1)  "
              f"{'MET' if cold_queries == 1 else 'NOT MET'}")
        print("\nbuilding a hit's answer in the server (per call):")
        for name, (stored, reserialized, size) in assembly.items():
            print(f"  {name:<24} {size:>6} bytes: stored bytes + CacheInfo {stored * 1e6:6.1f} us, "
                  f"parse + set cache + serialize {reserialized * 1e6:6.1f} us ({reserialized / stored:.1f}x)")
        return 0
    finally:
        for s in servers:
            await s.close()
        redis.stop()
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="listings in the private PostgreSQL")
    parser.add_argument("--calls", type=int, default=2000, help="calls per cached RPC (split over rounds)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved measurement rounds")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent callers for throughput")
    parser.add_argument("--uncached-calls", type=int, default=20, help="calls of the uncached query")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--echo-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.echo_bytes)
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
