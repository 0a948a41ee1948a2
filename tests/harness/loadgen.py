"""Bounded mixed load from a separate process: many concurrent clients calling cache-query and export.

    python tests/harness/loadgen.py --target 127.0.0.1:50050 --seconds 20 --clients 32 --token T

Prints one JSON object: requests, errors by status code, latency percentiles by RPC, rows exported.
Request loops are bounded by time and count and stop by themselves; only loopback targets are used.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, defaultdict

import grpc
import orjson

from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2, export_pb2_grpc

CITIES = ["Moscow", "Saint Petersburg", "Kazan", "Sochi", "Omsk", "Perm", "Nowhere"]
MAX_REQUESTS_PER_CLIENT = 100_000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def client(
    n: int,
    channel: grpc.aio.Channel,
    until: float,
    md: list[tuple[str, str]],
    latencies: dict[str, list[float]],
    codes: Counter[str],
    rows: list[int],
) -> None:
    rng = random.Random(n)
    cache = cache_pb2_grpc.CacheQueryServiceStub(channel)
    export = export_pb2_grpc.ExportServiceStub(channel)
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= until:
            return
        kind = rng.choices(["popular", "price", "cities", "export"], [45, 30, 15, 10])[0]
        started = time.perf_counter()
        try:
            if kind == "popular":
                await cache.PopularProperties(
                    cache_pb2.PopularPropertiesRequest(city=rng.choice(CITIES), limit=10), metadata=md, timeout=10
                )
            elif kind == "price":
                await cache.PriceStats(cache_pb2.PriceStatsRequest(city=rng.choice(CITIES)), metadata=md, timeout=10)
            elif kind == "cities":
                await cache.Cities(cache_pb2.CitiesRequest(), metadata=md, timeout=10)
            else:
                request = export_pb2.ExportPropertiesRequest(
                    format=export_pb2.EXPORT_FORMAT_JSONL,
                    limit=300,
                    filter=common_pb2.PropertyFilter(cities=[rng.choice(CITIES)]),
                )
                async for message in export.ExportProperties(request, metadata=md, timeout=30):
                    if message.HasField("summary"):
                        rows.append(message.summary.rows)
            codes["OK"] += 1
        except grpc.aio.AioRpcError as exc:
            codes[exc.code().name] += 1
        latencies[kind].append(time.perf_counter() - started)


async def run(target: str, seconds: float, clients: int, token: str | None) -> dict[str, object]:
    md = [("authorization", f"Bearer {token}")] if token else []
    latencies: dict[str, list[float]] = defaultdict(list)
    codes: Counter[str] = Counter()
    rows: list[int] = []
    until = time.monotonic() + seconds
    channels = [grpc.aio.insecure_channel(target) for _ in range(min(clients, 8))]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(i, channels[i % len(channels)], until, md, latencies, codes, rows) for i in range(clients)))
    finally:
        for ch in channels:
            await ch.close()
    elapsed = time.perf_counter() - started
    everything = [v for vs in latencies.values() for v in vs]
    return {
        "requests": sum(codes.values()),
        "seconds": round(elapsed, 2),
        "rps": round(sum(codes.values()) / elapsed, 1),
        "codes": dict(codes),
        "errors": sum(v for k, v in codes.items() if k != "OK"),
        "p50_ms": round(percentile(everything, 0.50) * 1000, 2),
        "p99_ms": round(percentile(everything, 0.99) * 1000, 2),
        "by_rpc": {
            k: {"n": len(v), "p50_ms": round(percentile(v, 0.5) * 1000, 2), "p99_ms": round(percentile(v, 0.99) * 1000, 2)}
            for k, v in latencies.items()
        },
        "rows_exported": sum(rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--token")
    args = parser.parse_args()
    host = args.target.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        print("loadgen only targets loopback addresses", file=sys.stderr)
        return 2
    print(orjson.dumps(asyncio.run(run(args.target, args.seconds, args.clients, args.token))).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
