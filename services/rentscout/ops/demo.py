"""The sample job of `rentscout stack demo`: one export and a few cached queries, end to end.

It calls the services like any client: with the stack's reader token (the analyzer: admin), when
auth is on. Each step says what it does before it starts, so nothing is silent for long."""

from __future__ import annotations

import time
from typing import Any

import grpc


def run_demo(stack: Any) -> int:
    from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
    from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
    from rentscout.common.v1 import common_pb2
    from rentscout.export.v1 import export_pb2, export_pb2_grpc

    out = stack.root / "demo-export.jsonl"
    reader, admin = stack.metadata("reader"), stack.metadata("admin")
    try:
        stack.say("demo: exporting up to 20,000 Moscow listings as JSONL ...")
        with grpc.insecure_channel(stack.target("export")) as ch:
            request = export_pb2.ExportPropertiesRequest(
                format=export_pb2.EXPORT_FORMAT_JSONL, filter=common_pb2.PropertyFilter(cities=["Moscow"]), limit=20_000
            )
            started, rows = time.perf_counter(), 0
            with out.open("wb") as f:
                for msg in export_pb2_grpc.ExportServiceStub(ch).ExportProperties(request, timeout=120, metadata=reader):
                    if msg.HasField("chunk"):
                        f.write(msg.chunk.data)
                        rows = msg.chunk.rows_sent
            stack.say(
                f"exported {rows:,} Moscow listings (active and inactive) as JSONL to {out} in "
                f"{time.perf_counter() - started:.2f}s"
            )
        stack.say("demo: the most viewed Moscow listings, twice (the second call is a cache hit) ...")
        with grpc.insecure_channel(stack.target("cache-query")) as ch:
            cache = cache_pb2_grpc.CacheQueryServiceStub(ch)
            for attempt in ("first", "second"):
                started = time.perf_counter()
                reply = cache.PopularProperties(
                    cache_pb2.PopularPropertiesRequest(city="Moscow", limit=5), timeout=10, metadata=reader
                )
                stack.say(
                    f"popular properties in Moscow, {attempt} call: cache {'hit' if reply.cache.hit else 'miss'}, "
                    f"{(time.perf_counter() - started) * 1000:.1f} ms, {len(reply.properties):,} listings"
                )
            stack.say(f"the {len(reply.properties):,} most viewed active Moscow listings:")
            for p in reply.properties:
                stack.say(f"  #{p.id:<8} {p.views:>8,} views  {p.price:>11,} {p.currency}  {p.title}")
            stats = cache.PriceStats(cache_pb2.PriceStatsRequest(city="Moscow"), timeout=10, metadata=reader)
            stack.say(
                f"Moscow prices: {stats.count:,} active listings, median {stats.median:,.0f}, "
                f"p25 {stats.p25:,.0f}, p75 {stats.p75:,.0f}, {stats.mean_price_per_sqm:,.0f}/m²"
            )
        stack.say("demo: table statistics and EXPLAIN ANALYZE of the popular query (admin) ...")
        with grpc.insecure_channel(stack.target("analyzer")) as ch:
            analyzer = analyzer_pb2_grpc.AnalyzerServiceStub(ch)
            table = analyzer.GetTableStats(analyzer_pb2.GetTableStatsRequest(table="properties"), timeout=30, metadata=admin)
            stack.say(
                f"table properties: {table.live_rows:,} live rows, {table.total_bytes / 2**20:.1f} MiB, "
                f"{len(table.recommendations)} recommendation(s)"
            )
            plan = analyzer.AnalyzeQuery(
                analyzer_pb2.AnalyzeQueryRequest(
                    sql="SELECT id, price FROM properties WHERE city = $1 AND is_active ORDER BY views DESC LIMIT 10",
                    params=[analyzer_pb2.QueryParam(string_value="Moscow")],
                    analyze=True,
                    buffers=True,
                ),
                timeout=30,
                metadata=admin,
            )
            stack.say(
                f"EXPLAIN ANALYZE popular query: {plan.execution_time_ms:.2f} ms, top node {plan.plan.node_type}, "
                f"{len(plan.insights)} insight(s)"
            )
    except grpc.RpcError as exc:
        stack.say(f"demo call failed: {exc.code().name}: {exc.details()}")
        return 1
    stack.say("demo finished")
    return 0
