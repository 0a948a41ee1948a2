"""ListSlowQueries over the real pg_stat_statements, and its FAILED_PRECONDITION paths."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest

from harness.analyzer import SCHEMA, Client, client_for
from rentscout.analyzer.v1 import analyzer_pb2 as pb
from rentscout.analyzer_service.slow_queries import HYPOPG_INTERNAL
from rentscout.devstack.instances import PostgresInstance
from rentscout.wire.badrequest import bad_request_violations


async def test_a_slow_statement_is_listed_and_the_analyzer_is_not(client: Client, pg_conn: asyncpg.Connection) -> None:
    marker = f"slow_marker_{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        await pg_conn.fetch(f"SELECT count(*) AS {marker} FROM {SCHEMA}.events, pg_sleep(0.03)")
    await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=f"SELECT count(*) FROM {SCHEMA}.events", analyze=True))
    await client("SuggestIndexes", pb.SuggestIndexesRequest(sql=f"SELECT * FROM {SCHEMA}.events WHERE d = $1"))
    reply = await client(
        "ListSlowQueries",
        pb.ListSlowQueriesRequest(min_mean_ms=20, min_calls=3, order_by=pb.SLOW_QUERY_ORDER_MEAN_TIME, limit=500),
    )
    assert reply.extension_version
    mine = [q for q in reply.queries if marker in q.query]
    assert len(mine) == 1, [q.query for q in reply.queries]
    q = mine[0]
    assert q.calls >= 3 and q.mean_time_ms >= 30 and q.total_time_ms >= 90 and q.max_time_ms >= q.mean_time_ms
    assert q.rows == 3 and q.query_id and 0 <= q.cache_hit_ratio <= 1 and q.stddev_time_ms >= 0
    assert [r.mean_time_ms for r in reply.queries] == sorted((r.mean_time_ms for r in reply.queries), reverse=True)
    everything = await client("ListSlowQueries", pb.ListSlowQueriesRequest(limit=500))
    assert everything.queries
    own = [
        x.query
        for x in everything.queries
        if "rentscout-analyzer" in x.query
        or x.query == HYPOPG_INTERNAL
        or (x.query.startswith("SELECT") and "hypopg_create_index" in x.query)
    ]
    assert not own


async def test_orders_and_limits(client: Client) -> None:
    by_calls = await client("ListSlowQueries", pb.ListSlowQueriesRequest(order_by=pb.SLOW_QUERY_ORDER_CALLS, limit=5))
    assert 0 < len(by_calls.queries) <= 5
    assert [q.calls for q in by_calls.queries] == sorted((q.calls for q in by_calls.queries), reverse=True)
    default = await client("ListSlowQueries", pb.ListSlowQueriesRequest())
    assert len(default.queries) <= 20
    by_temp = await client("ListSlowQueries", pb.ListSlowQueriesRequest(order_by=pb.SLOW_QUERY_ORDER_TEMP_BLOCKS))
    temp = [q.temp_blks_read + q.temp_blks_written for q in by_temp.queries]
    assert temp == sorted(temp, reverse=True)


async def test_bad_requests_name_every_field(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client("ListSlowQueries", pb.ListSlowQueriesRequest(limit=501, min_calls=-1, min_mean_ms=-1, order_by=99))  # type: ignore[arg-type]  # unknown, on purpose
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in bad_request_violations(err.value.trailing_metadata())} == {
        "limit",
        "min_calls",
        "min_mean_ms",
        "order_by",
    }


async def test_extension_not_installed(analyzer_server, pg_conn: asyncpg.Connection, database: str) -> None:
    name = f"analyzer_bare_{uuid.uuid4().hex[:6]}"
    await pg_conn.execute(f"CREATE DATABASE {name}")
    try:
        async with analyzer_server(database=database.rsplit("/", 1)[0] + f"/{name}") as host, client_for(host) as c:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await c("ListSlowQueries", pb.ListSlowQueriesRequest())
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "CREATE EXTENSION pg_stat_statements" in (err.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await c("SuggestIndexes", pb.SuggestIndexesRequest(from_slow_queries=True))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await pg_conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def test_extension_not_preloaded(analyzer_server, tmp_path: Path) -> None:
    """A server without pg_stat_statements in shared_preload_libraries: a plain answer, never a crash."""
    pg = PostgresInstance(tmp_path / "nopreload", preload=())
    pg.start()  # creates the extension, which works without preloading; reading it does not
    try:
        async with analyzer_server(database=pg.dsn) as host, client_for(host) as c:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await c("ListSlowQueries", pb.ListSlowQueriesRequest())
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "shared_preload_libraries" in (err.value.details() or "")
    finally:
        pg.destroy()
