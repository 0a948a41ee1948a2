"""Reads from a real streaming standby: exports, PlanExport and cache fills go there, writes and LISTEN
stay on the primary; paused replay never lets a stale value into the cache; a killed standby degrades
reads to the primary, and they fail back when it returns; resume tokens stay exact across nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY

from harness.cache_server import OwnRows, cache_server, settings, unique_city
from harness.export_server import TEST_SETTINGS, collect, parse_csv, serve
from harness.logcapture import capture_logs
from harness.polling import eventually
from harness.replication import replayed
from harness.servers import in_process
from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.analyzer_service.service import create as analyzer_create
from rentscout.cache.v1 import cache_pb2
from rentscout.devstack.instances import PostgresInstance
from rentscout.export.v1 import export_pb2
from rentscout.runtime.replicas import node_name
from rentscout.wire.health import health_stub

Req = export_pb2.ExportPropertiesRequest
CSV = export_pb2.EXPORT_FORMAT_CSV


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("rentscout_db_read_fallbacks_total", {"reason": reason}) or 0.0


def replica_up(replica: PostgresInstance) -> float | None:
    return REGISTRY.get_sample_value("rentscout_db_replica_up", {"node": node_name(replica.dsn)})


def env_with(service_env: dict[str, str], replica: PostgresInstance, **extra: str) -> dict[str, str]:
    """A service reading from `replica`. A paused standby's lag is the age of its last replayed commit, which the
    rest of the suite can make older than the default limit (10 s): tests that pause replay to tell the nodes
    apart must not trip the lag limit, so it is an hour here unless a test sets its own (the lag test does)."""
    return {**service_env, "RENTSCOUT_DATABASE_READ_URL": replica.dsn, "RENTSCOUT_DATABASE_MAX_REPLICA_LAG": "3600", **extra}


@contextlib.asynccontextmanager
async def paused(replica: PostgresInstance) -> AsyncIterator[None]:
    replica.pause_replay()
    try:
        yield
    finally:
        replica.resume_replay()


async def table_ids(conn: asyncpg.Connection) -> set[int]:
    """Every id of the shared table, as the node behind `conn` sees it now."""
    return {r["id"] for r in await conn.fetch("SELECT id FROM properties")}


def node_of_queries(records: list[dict[str, object]]) -> list[object]:
    """The node (`db.node`) of each routed read logged in `records` (the read router logs every one)."""
    return [r["db.node"] for r in records if r.get("message") == "database query" and "db.node" in r]


def ids_of(data: bytes) -> list[int]:
    """The ids in CSV bytes of the `id` column (a header line, where there is one, is skipped)."""
    return [int(r[0]) for r in parse_csv(data) if r and r[0] and r[0].isdigit()]


async def test_export_streams_from_the_standby(service_env: dict[str, str], standby: PostgresInstance, database: str) -> None:
    primary = await asyncpg.connect(database)
    rows = OwnRows(primary)
    try:
        await replayed(primary, standby)
        async with paused(standby):
            await rows.add(unique_city("Replicagrad"), 1)  # on the primary only, while replay is paused
            before = fallbacks("no_healthy_standby"), fallbacks("replay_behind")
            async with serve(env_with(service_env, standby), TEST_SETTINGS) as srv:
                stream = await collect(srv.stub, Req(format=CSV, columns=["id"]))
            on_primary = await table_ids(primary)
        exported = ids_of(stream.data)
        assert rows.ids[0] in on_primary and rows.ids[0] not in exported  # the standby served it: not replayed yet
        assert len(exported) == len(set(exported)) and set(exported) == on_primary - {rows.ids[0]}  # the rest, once
        assert (fallbacks("no_healthy_standby"), fallbacks("replay_behind")) == before
    finally:
        await rows.delete_all()
        await primary.close()


async def test_plan_export_partitions_on_the_standby_cover_the_table_once(
    service_env: dict[str, str], standby: PostgresInstance, database: str
) -> None:
    primary = await asyncpg.connect(database)
    rows = OwnRows(primary)
    try:
        await replayed(primary, standby)
        async with paused(standby):  # a row only the primary has tells which node served the partitions
            await rows.add(unique_city("Partitiongrad"), 1)
            before = fallbacks("no_healthy_standby"), fallbacks("replay_behind")
            async with serve(env_with(service_env, standby), TEST_SETTINGS) as srv:
                plan = await srv.stub.PlanExport(
                    export_pb2.PlanExportRequest(export=Req(format=CSV, columns=["id"]), partitions=3)
                )
                seen: list[int] = []
                for part in plan.partitions:
                    stream = await collect(srv.stub, Req(format=CSV, columns=["id"], resume_token=part.resume_token))
                    seen += ids_of(stream.data)
            on_primary = await table_ids(primary)
        assert len(plan.partitions) == 3 and len(seen) == len(set(seen))  # each row once
        assert set(seen) == on_primary - {rows.ids[0]}  # every row the standby had, none it had not replayed
        assert (fallbacks("no_healthy_standby"), fallbacks("replay_behind")) == before
    finally:
        await rows.delete_all()
        await primary.close()


async def test_a_fill_after_an_invalidation_never_caches_what_a_paused_standby_still_shows(
    service_env: dict[str, str], standby: PostgresInstance, database: str
) -> None:
    primary = await asyncpg.connect(database)
    rows = OwnRows(primary)
    city = unique_city("Lagburg")
    request = cache_pb2.PriceStatsRequest(city=city)
    try:
        await rows.add(city, 10_000)
        await replayed(primary, standby)
        async with cache_server(env_with(service_env, standby), settings(), database_replica_wait_ms=100) as srv:
            with capture_logs(logging.DEBUG) as logs:
                first = await srv.stub.PriceStats(request)
            assert first.count == 1 and first.max == 10_000
            assert srv.database_queries["price_stats"] == 1
            assert node_of_queries(logs.records()) == [node_name(standby.dsn)]  # the first fill: the standby
            async with paused(standby):
                behind = fallbacks("replay_behind")
                await rows.add(city, 90_000)  # NOTIFY -> invalidation carrying the primary's position
                with capture_logs(logging.DEBUG) as logs:
                    fresh = await eventually(lambda: srv.stub.PriceStats(request), lambda r: r.count == 2)
                assert fresh.max == 90_000  # read from the primary: the paused standby still has one row
                assert node_of_queries(logs.records())[-1] == "primary"
                assert fallbacks("replay_behind") > behind
                again = await srv.stub.PriceStats(request)
                assert again.cache.hit and again.count == 2  # what was cached is the fresh value
            await replayed(primary, standby)
            replica = await asyncpg.connect(standby.dsn)
            try:  # the standby itself shows the change once replay resumed
                assert await replica.fetchval("SELECT count(*) FROM properties WHERE city = $1", city) == 2
            finally:
                await replica.close()
    finally:
        await rows.delete_all()
        await primary.close()


async def test_resume_tokens_stay_exact_when_the_stream_moves_between_nodes(
    service_env: dict[str, str], standby: PostgresInstance, database: str
) -> None:
    primary = await asyncpg.connect(database)
    rows = OwnRows(primary)
    try:
        await replayed(primary, standby)
        total = await primary.fetchval("SELECT count(*) FROM properties")
        req = Req(format=CSV, columns=["id"], rows_per_chunk=500)
        # a stream begun on the primary after a change the standby has not replayed, resumed on a server that
        # reads from the standby: it must not read the standby, which lacks what the first stream saw
        async with paused(standby):
            await rows.add(unique_city("Behind"), 1)
            total += 1
            async with serve(service_env, TEST_SETTINGS) as on_primary:
                head = await collect(on_primary.stub, req, stop_after_chunks=3)
            before = fallbacks("replay_behind")
            async with serve(
                env_with(service_env, standby, RENTSCOUT_DATABASE_REPLICA_WAIT_MS="100"), TEST_SETTINGS
            ) as on_standby:
                tail = await collect(
                    on_standby.stub,
                    Req(format=CSV, columns=["id"], rows_per_chunk=500, resume_token=head.chunks[-1].resume_token),
                )
            assert fallbacks("replay_behind") > before
        ids = ids_of(head.data) + ids_of(tail.data)
        assert len(ids) == len(set(ids)) == total and set(ids) == await table_ids(primary)  # each row once
        # and the other way: begun on the standby (caught up), resumed on the primary
        await replayed(primary, standby)
        async with serve(env_with(service_env, standby), TEST_SETTINGS) as on_standby:
            head = await collect(on_standby.stub, req, stop_after_chunks=2)
        async with serve(service_env, TEST_SETTINGS) as on_primary:
            tail = await collect(
                on_primary.stub, Req(format=CSV, columns=["id"], rows_per_chunk=500, resume_token=head.chunks[-1].resume_token)
            )
        ids = ids_of(head.data) + ids_of(tail.data)
        assert len(ids) == len(set(ids)) == total and set(ids) == await table_ids(primary)
    finally:
        await rows.delete_all()
        await primary.close()


async def test_a_killed_standby_degrades_reads_to_the_primary_and_they_fail_back(
    service_env: dict[str, str], standby: PostgresInstance, database: str
) -> None:
    primary = await asyncpg.connect(database)
    try:
        await replayed(primary, standby)
        every = await table_ids(primary)
        async with serve(env_with(service_env, standby, RENTSCOUT_DB_CONNECT_TIMEOUT_SECONDS="1"), TEST_SETTINGS) as srv:
            assert replica_up(standby) == 1
            standby.kill()
            try:
                down = await eventually(lambda: asyncio.sleep(0, replica_up(standby)), lambda up: up == 0, timeout=20)
                assert down == 0, "the killed standby is still reported up"
                before = fallbacks("no_healthy_standby")
                stream = await collect(srv.stub, Req(format=CSV, columns=["id"]))
                ids = ids_of(stream.data)
                assert len(ids) == len(set(ids)) and set(ids) == every  # the primary served it, whole
                assert fallbacks("no_healthy_standby") > before
                health = health_stub(srv.channel)
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING  # the primary is up
            finally:
                standby.start()
            back = await eventually(lambda: asyncio.sleep(0, replica_up(standby)), lambda up: up == 1, timeout=30)
            assert back == 1, "the restarted standby is not used again"
            counted = fallbacks("no_healthy_standby"), fallbacks("replay_behind")
            stream = await collect(srv.stub, Req(format=CSV, columns=["id"]))
            ids = ids_of(stream.data)
            assert len(ids) == len(set(ids)) and set(ids) == every
            assert (fallbacks("no_healthy_standby"), fallbacks("replay_behind")) == counted  # the standby served it
    finally:
        await primary.close()


async def test_a_standby_lagging_beyond_the_limit_is_skipped(
    service_env: dict[str, str], standby: PostgresInstance, database: str
) -> None:
    primary = await asyncpg.connect(database)
    rows = OwnRows(primary)
    try:
        await replayed(primary, standby)
        async with serve(env_with(service_env, standby, RENTSCOUT_DATABASE_MAX_REPLICA_LAG="0.5"), TEST_SETTINGS) as srv:
            assert replica_up(standby) == 1
            async with paused(standby):
                await rows.add(unique_city("Slowtown"), 1)
                await asyncio.sleep(1.0)
                await rows.add(unique_city("Slowtown"), 2)  # received, not replayed: the lag grows
                skipped = await eventually(lambda: asyncio.sleep(0, replica_up(standby)), lambda up: up == 0, timeout=20)
                assert skipped == 0, "a standby lagging beyond the limit is still used"
                stream = await collect(srv.stub, Req(format=CSV, columns=["id"]))
                ids = ids_of(stream.data)
                assert len(ids) == len(set(ids)) and set(ids) == await table_ids(primary)  # the primary served it
            await replayed(primary, standby)
            recovered = await eventually(lambda: asyncio.sleep(0, replica_up(standby)), lambda up: up == 1, timeout=20)
            assert recovered == 1, "the standby is not used again once it caught up"
            before = fallbacks("no_healthy_standby"), fallbacks("replay_behind")
            stream = await collect(srv.stub, Req(format=CSV, columns=["id"]))  # and it serves again, caught up
            assert set(ids_of(stream.data)) == await table_ids(primary)
            assert (fallbacks("no_healthy_standby"), fallbacks("replay_behind")) == before
    finally:
        await rows.delete_all()
        await primary.close()


async def test_the_analyzer_runs_on_a_standby_only_when_asked_and_says_which_node(
    service_env: dict[str, str], standby: PostgresInstance, database: str
) -> None:
    primary = await asyncpg.connect(database)
    try:
        await replayed(primary, standby)
        # a standby that has replayed the check's position answers: waiting up to 3 s for it, not the
        # default 200 ms, so a machine loaded by the rest of the suite cannot make the primary answer instead
        env = {
            **env_with(service_env, standby, RENTSCOUT_DATABASE_REPLICA_WAIT_MS="3000"),
            "RENTSCOUT_AUTH_TOKENS": "an-admin:admin",
        }
        meta = [("authorization", "Bearer an-admin")]
        async with (
            in_process([analyzer_create], env, label="analyzer-replica") as host,
            grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
        ):
            stub = analyzer_pb2_grpc.AnalyzerServiceStub(channel)
            marker = "SELECT count(*) FROM properties WHERE views > 123456"
            default = await stub.AnalyzeQuery(analyzer_pb2.AnalyzeQueryRequest(sql=marker, analyze=True), metadata=meta)
            there = await stub.AnalyzeQuery(
                analyzer_pb2.AnalyzeQueryRequest(sql=marker, analyze=True, on_standby=True), metadata=meta
            )
            assert default.node == "primary" and there.node == node_name(standby.dsn)
            assert there.actual_rows == default.actual_rows and there.plan.node_type
            # the catalog check still applies (it ran on the primary)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AnalyzeQuery(
                    analyzer_pb2.AnalyzeQueryRequest(sql="SELECT pg_terminate_backend(1)", on_standby=True), metadata=meta
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            replica = await asyncpg.connect(standby.dsn)
            try:  # a statement only the standby has run
                await replica.fetchval(
                    "SELECT count(*) FROM properties WHERE views > $1 AND rooms = 77 AND lat IS NULL AND floor < -3", 1
                )
            finally:
                await replica.close()
            slow = await stub.ListSlowQueries(analyzer_pb2.ListSlowQueriesRequest(on_standby=True, limit=500), metadata=meta)
            assert slow.node == node_name(standby.dsn)
            assert any("lat IS NULL AND floor <" in q.query for q in slow.queries)  # the standby's own pg_stat_statements
            mine = await stub.ListSlowQueries(analyzer_pb2.ListSlowQueriesRequest(limit=500), metadata=meta)
            assert not any("lat IS NULL AND floor <" in q.query for q in mine.queries)
            assert mine.node == "primary"
            async with paused(standby):  # behind the primary: the primary answers, and says so
                await primary.execute("SET synchronous_commit = on")  # flushed at commit: a standby could have it
                await primary.execute("CREATE TABLE rs_replica_probe (); DROP TABLE rs_replica_probe")
                behind = await stub.AnalyzeQuery(analyzer_pb2.AnalyzeQueryRequest(sql=marker, on_standby=True), metadata=meta)
            assert behind.node == "primary"
    finally:
        await primary.close()
