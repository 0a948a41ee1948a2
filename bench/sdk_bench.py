"""SDK overhead: the circuit-breaker check, and the whole resilience stack on a successful call.

    .venv/bin/python bench/sdk_bench.py [--calls 3000] [--rounds 5] [--concurrency 16] [--block 200] [--target HOST:PORT]

1. Breaker: ns per state check of a CLOSED breaker, and per full cycle (check + recording the
   outcome, with its Prometheus counters); goal under 5 us.
2. Stack: the same cache-hit RPC, CacheQueryService/Cities, served by the real cache-query service
   (`rentscout serve cache-query` over a private PostgreSQL and Redis; the warm-up fills the cache,
   so every measured call is a near-cache hit) or, with --server echo, by an in-memory echo on the
   same runtime; access log at warning so the RPC is as cheap as possible, which makes the
   overhead ratio stricter. It is called
   - bare:      the generated stub on a grpc.aio channel,
   - bare+md:   the same, sending one `x-correlation-id` header (grpc's per-header cost, which
                any correlated call pays),
   - sdk-plain: CacheQueryClient with resilience=False (metadata, typed errors, client span),
   - sdk:       CacheQueryClient with the whole stack (deadline, retry with budget, breaker, metadata).
   The variants run in small interleaved blocks so that the machine's noise hits all of them
   alike; the report gives p50/p99 latency, throughput and client CPU per call, with the ratios to
   bare (goal: sdk / bare p50 under 1.05), sequentially and with N concurrent callers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

    from rentscout.runtime.resources import Resources

ROOT = Path(__file__).resolve().parent.parent


# -- the server (child process) ----------------------------------------------------------------------


def serve(port_file: str) -> None:
    from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
    from rentscout.runtime import logs
    from rentscout.runtime.config import RuntimeSettings, load
    from rentscout.runtime.server import ServiceHost, ServiceSpec

    reply = cache_pb2.CitiesResponse(
        cities=[cache_pb2.CityCount(city=f"City {i}", count=1000 + i) for i in range(20)],
        cache=cache_pb2.CacheInfo(hit=True, key="bench:cities", source=cache_pb2.CACHE_SOURCE_NEAR),
    )

    class Echo(cache_pb2_grpc.CacheQueryServiceServicer):
        # only Cities is served: the generated servicer's own methods answer UNIMPLEMENTED (named, so Echo is concrete)
        Base = cache_pb2_grpc.CacheQueryServiceServicer
        PopularProperties, PriceStats, PropertyTypes = Base.PopularProperties, Base.PriceStats, Base.PropertyTypes
        Invalidate, InvalidateRelated, GetCacheStats = Base.Invalidate, Base.InvalidateRelated, Base.GetCacheStats

        async def Cities(
            self,
            request: cache_pb2.CitiesRequest,
            context: grpc.aio.ServicerContext[cache_pb2.CitiesRequest, cache_pb2.CitiesResponse],
        ) -> cache_pb2.CitiesResponse:
            return reply

    def create(resources: Resources) -> ServiceSpec:
        return ServiceSpec(
            name="rentscout.cache.v1.CacheQueryService",
            register=lambda s: cache_pb2_grpc.add_CacheQueryServiceServicer_to_server(Echo(), s),
        )

    async def main() -> None:
        settings = load(RuntimeSettings)
        logs.configure("sdk-bench-echo", "0", settings.log_level)
        host = ServiceHost([create], settings, label="bench", host="127.0.0.1", port=0, metrics_port=None)
        port = await host.start()
        await asyncio.to_thread(Path(port_file).write_text, str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


# -- breaker micro-benchmark -------------------------------------------------------------------------


def bench_breaker(n: int = 1_000_000) -> None:
    from rentscout.sdk.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError

    b = CircuitBreaker("bench-breaker", BreakerConfig())
    acquire, on_success = b.acquire, b.on_success
    started = time.perf_counter()
    for _ in range(n):
        acquire()
    check = (time.perf_counter() - started) / n
    cycles = n // 5
    started = time.perf_counter()
    for _ in range(cycles):
        on_success(acquire(), 0.001)
    cycle = (time.perf_counter() - started) / cycles
    empty_started = time.perf_counter()
    for _ in range(n):
        pass
    loop = (time.perf_counter() - empty_started) / n
    opened = CircuitBreaker("bench-breaker-open", BreakerConfig(consecutive_failures=1))
    opened.on_error(opened.acquire(), RuntimeError("down"))
    rejections = 20_000
    started = time.perf_counter()
    for _ in range(rejections):
        try:
            opened.acquire()
        except CircuitOpenError:
            pass
    rejected = (time.perf_counter() - started) / rejections
    print("breaker")
    print(f"  state check (CLOSED)            {max(check - loop, 0) * 1e9:8.0f} ns   (goal < 5000 ns)")
    print(f"  check + record outcome          {max(cycle - loop, 0) * 1e9:8.0f} ns   (with Prometheus counters)")
    print(f"  fail fast (OPEN, raises)        {rejected * 1e9:8.0f} ns")


# -- RPC overhead --------------------------------------------------------------------------------------


async def run_block(
    call: Callable[[], Awaitable[object]], calls: int, concurrency: int, latencies: list[float]
) -> tuple[float, float]:
    """Run `calls` calls with `concurrency` callers; returns (wall seconds, client CPU seconds)."""

    async def worker(count: int) -> None:
        for _ in range(count):
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu


async def bench_stack(target: str, calls: int, rounds: int, concurrency: int, block: int) -> None:
    from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
    from rentscout.sdk import CacheQueryClient
    from rentscout.sdk.channel import ChannelConfig, create_channel
    from rentscout.wire.correlation import new_correlation_id

    channel = create_channel(target, ChannelConfig())
    stub = cache_pb2_grpc.CacheQueryServiceStub(channel)
    request = cache_pb2.CitiesRequest()
    sdk = CacheQueryClient(target, timeout=5.0)
    plain = CacheQueryClient(target, timeout=5.0, resilience=False)
    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "bare": lambda: stub.Cities(request, timeout=5.0),
        "bare+md": lambda: stub.Cities(request, timeout=5.0, metadata=(("x-correlation-id", new_correlation_id()),)),
        "sdk-plain": plain.cities,
        "sdk": sdk.cities,
    }
    for call in variants.values():  # connect and warm up
        for _ in range(300):
            await call()
    for label, conc in (("sequential", 1), (f"{concurrency} concurrent callers", concurrency)):
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        wall = dict.fromkeys(variants, 0.0)
        cpu = dict.fromkeys(variants, 0.0)
        done = dict.fromkeys(variants, 0)
        names = list(variants)
        for b in range(rounds * max(1, calls // block)):  # small interleaved blocks: drift hits every variant alike
            for name in names[b % len(names) :] + names[: b % len(names)]:
                w, c = await run_block(variants[name], block, conc, latencies[name])
                wall[name] += w
                cpu[name] += c
                done[name] += block - block % conc
        stats = {}
        for name in names:
            lat = sorted(latencies[name])
            stats[name] = (
                statistics.median(lat) * 1e6,
                lat[int(len(lat) * 0.99) - 1] * 1e6,
                done[name] / wall[name],
                cpu[name] / done[name] * 1e6,
            )
        base = stats["bare"]
        print(f"\nCities cache-hit RPC, {label}: {done['bare']} calls per variant in interleaved blocks of {block}")
        print(
            f"  {'variant':10s} {'p50 us':>8s} {'p99 us':>8s} {'calls/s':>8s} {'client CPU us/call':>19s}"
            f" {'p50 vs bare':>12s} {'calls/s vs bare':>16s}"
        )
        for name, (p50, p99, rate, cpu_us) in stats.items():
            print(f"  {name:10s} {p50:8.0f} {p99:8.0f} {rate:8.0f} {cpu_us:19.1f} {p50 / base[0]:11.3f}x {rate / base[2]:15.3f}x")
        extra_cpu = stats["sdk"][3] - base[3]
        print(
            f"  sdk vs bare: +{extra_cpu:.1f} us client CPU per call ({extra_cpu / base[0]:.1%} of the bare p50); "
            f"p50 {stats['sdk'][0] / base[0]:.3f}x"
        )
        print(
            f"  sdk vs bare+md (the same call carrying the same correlation-id header): "
            f"p50 {stats['sdk'][0] / stats['bare+md'][0]:.3f}x, calls/s {stats['sdk'][2] / stats['bare+md'][2]:.3f}x, "
            f"+{stats['sdk'][3] - stats['bare+md'][3]:.1f} us client CPU"
        )
    print("\n  goal: sdk p50 / bare p50 < 1.05 (the whole resilience stack adds under 5%)")
    await sdk.close()
    await plain.close()
    await channel.close()


@contextlib.contextmanager
def echo_server() -> Iterator[str]:
    """This file in --serve mode: the in-memory Cities echo on the shared runtime."""
    port_file = Path(f"/tmp/sdk-bench-{os.getpid()}.port")
    env = {
        **os.environ,
        "RENTSCOUT_LOG_LEVEL": "warning",
        "RENTSCOUT_HEALTH_CHECK_INTERVAL_SECONDS": "600",
        "RENTSCOUT_DB_CONNECT_TIMEOUT_SECONDS": "0.2",
    }
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the echo server did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port_file.read_text()}"
    finally:
        server.terminate()
        server.wait(10)
        port_file.unlink(missing_ok=True)


@contextlib.contextmanager
def cache_service(
    rows: int, service: str = "cache-query", extra_env: dict[str, str] | None = None, pid: list[int] | None = None
) -> Iterator[str]:
    """A real service process (`rentscout serve <service>`, cache-query by default) over a private PostgreSQL
    and Redis; its pid is appended to `pid` when given (for memory sampling)."""
    from rentscout.db.migrate import migrate
    from rentscout.db.seed import seed
    from rentscout.devstack.instances import PostgresInstance, RedisInstance, free_port

    with tempfile.TemporaryDirectory(prefix="sdk-bench-") as tmp, contextlib.ExitStack() as stack:
        pg = PostgresInstance(Path(tmp) / "pg")
        pg.start()
        stack.callback(pg.destroy)
        redis = RedisInstance(Path(tmp) / "redis")
        redis.start()
        stack.callback(redis.stop)

        async def prepare() -> None:
            await migrate(pg.dsn)
            await seed(pg.dsn, rows)

        asyncio.run(prepare())
        port = free_port()
        env = {
            **os.environ,
            "RENTSCOUT_DATABASE_URL": pg.dsn,
            "RENTSCOUT_REDIS_URL": redis.url,
            "RENTSCOUT_LOG_LEVEL": "warning",
            **(extra_env or {}),
        }
        log = stack.enter_context((Path(tmp) / "cache.log").open("ab"))
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rentscout.main",
                "serve",
                service,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--metrics-port",
                "0",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            server.terminate()
            server.wait(30)

        stack.callback(stop)
        if pid is not None:
            pid.append(server.pid)
        from rentscout.wire.health import check_health as check

        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(Exception):
                if check(f"127.0.0.1:{port}", "rentscout.cache.v1.CacheQueryService", 1.0) == "SERVING":
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cache-query did not become SERVING (log {tmp}/cache.log)")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--block", type=int, default=200, help="calls per interleaved block")
    parser.add_argument("--rows", type=int, default=20_000, help="listings seeded for the real cache-query service")
    parser.add_argument(
        "--server",
        choices=["cache", "echo"],
        default="cache",
        help="the real cache-query service over private PostgreSQL/Redis (default), or the in-memory echo",
    )
    parser.add_argument("--target", help="instead, a running cache-query service (e.g. `rentscout stack up`: 127.0.0.1:50052)")
    parser.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    bench_breaker()
    if args.target:
        server: contextlib.AbstractContextManager[str] = contextlib.nullcontext(args.target)
    else:
        server = cache_service(args.rows) if args.server == "cache" else echo_server()
    with server as target:
        print(
            f"\nserver: {'cache-query at ' + target if args.server == 'cache' or args.target else 'in-memory echo'}"
            " (Cities: the first call fills the cache, warm-up and every measured call are hits)"
        )
        asyncio.run(bench_stack(target, args.calls, args.rounds, args.concurrency, args.block))
    return 0


if __name__ == "__main__":
    sys.exit(main())
