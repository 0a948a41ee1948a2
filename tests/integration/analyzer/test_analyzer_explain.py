"""AnalyzeQuery against the real PostgreSQL: figures parsed from real plans and each insight from a
crafted table and query (settings such as work_mem go into the server's DSN, so they apply inside
the very transaction that runs EXPLAIN)."""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest
from pglast.parser import fingerprint

from harness.analyzer import ADMIN, READER, SCHEMA, Client, client_for
from harness.dbstate import deadline_cancels_statement
from rentscout.analyzer.v1 import analyzer_pb2 as pb
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.common.v1 import common_pb2

K = pb.InsightKind


def req(sql: str, *params: pb.QueryParam, analyze: bool = True, buffers: bool = True) -> pb.AnalyzeQueryRequest:
    return pb.AnalyzeQueryRequest(sql=sql, params=list(params), analyze=analyze, buffers=buffers)


def insights_of(reply: pb.AnalyzeQueryResponse, kind: int) -> list[pb.Insight]:
    return [i for i in reply.insights if i.kind == kind]


def walk(reply: pb.AnalyzeQueryResponse) -> list[pb.PlanNode]:
    """Every node of the plan (the answer's flat, depth-first list)."""
    assert len(reply.nodes) == reply.node_count and not reply.truncated
    return list(reply.nodes)


async def test_timings_buffers_and_tree_come_from_the_real_plan(client: Client) -> None:
    sql = "SELECT city, count(*) FROM properties WHERE price > $1 GROUP BY city ORDER BY 2 DESC"
    reply = await client("AnalyzeQuery", req(sql, pb.QueryParam(int_value=50_000)))
    raw = json.loads(reply.raw_json)[0]
    assert reply.planning_time_ms == pytest.approx(raw["Planning Time"])
    assert reply.execution_time_ms == pytest.approx(raw["Execution Time"]) and reply.execution_time_ms > 0
    assert reply.total_cost == pytest.approx(raw["Plan"]["Total Cost"])
    assert reply.estimated_rows == raw["Plan"]["Plan Rows"] and reply.actual_rows == raw["Plan"]["Actual Rows"]
    assert (
        reply.buffers.shared_hit + reply.buffers.shared_read
        == (raw["Plan"]["Shared Hit Blocks"] + raw["Plan"]["Shared Read Blocks"])
        > 0
    )
    assert reply.planning_buffers.shared_hit == raw.get("Planning", {}).get("Shared Hit Blocks", 0)
    nodes = list(walk(reply))
    scan = next(n for n in nodes if n.relation_name == "properties")
    assert scan.actual_loops >= 1 and scan.rows_removed_by_filter > 0 and "price" in scan.filter
    assert scan.buffers.shared_hit + scan.buffers.shared_read > 0
    for n in nodes:
        assert 0 <= n.exclusive_time_ms <= n.inclusive_time_ms + 1e-9 and 0 <= n.percent_of_total <= 100
        assert n.row_estimate_factor >= 1
    assert sum(n.exclusive_time_ms for n in nodes) == pytest.approx(reply.plan.inclusive_time_ms, rel=0.05, abs=0.05)
    assert reply.fingerprint == fingerprint(sql)
    assert "Settings" in raw  # EXPLAIN (SETTINGS) shows non-default planner settings


async def test_plain_explain_does_not_execute(client: Client) -> None:
    reply = await client("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.events WHERE c = 1", analyze=False, buffers=False))
    assert reply.execution_time_ms == 0 and reply.actual_rows == 0 and reply.plan.actual_loops == 0
    assert reply.total_cost > 0 and reply.plan.node_type == "Seq Scan" and reply.plan.row_estimate_factor == 0


async def test_row_misestimate_on_correlated_columns(client: Client) -> None:
    reply = await client("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.events WHERE a = 1 AND b = 1"))
    found = insights_of(reply, K.INSIGHT_KIND_ROW_MISESTIMATE)
    assert found, [i.message for i in reply.insights]
    assert found[0].severity >= common_pb2.SEVERITY_WARNING  # 3 estimated, 300 found
    assert float(found[0].evidence["factor"]) >= 50 and found[0].evidence["actual_rows"] == "300"


async def test_seq_scan_whose_filter_discards_most_rows(client: Client) -> None:
    reply = await client("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.events WHERE c = 42"))
    found = insights_of(reply, K.INSIGHT_KIND_SEQ_SCAN_FILTER)
    assert found and found[0].node == "Seq Scan on events"
    assert found[0].evidence["rows_removed_by_filter"] == "29970" and found[0].evidence["rows_returned"] == "30"


async def test_sort_and_hash_spilling_to_disk(analyzer_server) -> None:
    async with analyzer_server(work_mem="64kB", enable_nestloop="off", enable_mergejoin="off") as host, client_for(host) as c:
        sort = await c("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.events ORDER BY payload"))
        hashed = await c(
            "AnalyzeQuery", req(f"SELECT e1.payload, e2.kind FROM {SCHEMA}.events e1 JOIN {SCHEMA}.events e2 ON e1.c = e2.id")
        )
    spill = insights_of(sort, K.INSIGHT_KIND_DISK_SPILL)
    assert spill and spill[0].evidence["work_mem"] == "64kB" and spill[0].evidence["sort_method"].startswith("external")
    assert next(n for n in walk(sort) if n.node_type == "Sort").sort_space_type == "Disk"
    assert sort.buffers.temp_written > 0
    assert insights_of(hashed, K.INSIGHT_KIND_DISK_SPILL), json.loads(hashed.raw_json)


async def test_lossy_bitmap_heap_scan(analyzer_server) -> None:
    async with analyzer_server(work_mem="64kB", enable_seqscan="off", enable_indexscan="off") as host, client_for(host) as c:
        reply = await c("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.wide WHERE k < 49"))
    found = insights_of(reply, K.INSIGHT_KIND_LOSSY_BITMAP)
    assert found and int(found[0].evidence["lossy_heap_blocks"]) > 0
    heap = next(n for n in walk(reply) if n.node_type == "Bitmap Heap Scan")
    assert heap.lossy_heap_blocks > 0 and heap.exact_heap_blocks > 0


async def test_dominant_node(client: Client) -> None:
    reply = await client("AnalyzeQuery", req("SELECT count(*) FROM generate_series(1, 300000) AS g"))
    found = insights_of(reply, K.INSIGHT_KIND_DOMINANT_NODE)
    assert found and found[0].node.startswith("Function Scan")
    assert float(found[0].evidence["percent_of_total"]) >= 50


async def test_large_offset_bound_as_a_parameter(client: Client) -> None:
    reply = await client(
        "AnalyzeQuery", req(f"SELECT id FROM {SCHEMA}.events ORDER BY id OFFSET $1 LIMIT 10", pb.QueryParam(int_value=5000))
    )
    found = insights_of(reply, K.INSIGHT_KIND_LARGE_OFFSET)
    assert found and found[0].evidence["offset"] == "5000" and found[0].evidence["rows_discarded"] == "5000"


async def test_stale_statistics(client: Client) -> None:
    reply = await client("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.stale WHERE v = 7"))
    found = insights_of(reply, K.INSIGHT_KIND_STALE_STATISTICS)
    assert found, [i.message for i in reply.insights]
    assert found[0].severity == common_pb2.SEVERITY_CRITICAL and found[0].evidence["table"] == f"{SCHEMA}.stale"
    assert int(found[0].evidence["n_mod_since_analyze"]) >= 20000 and found[0].evidence["reltuples"] == "1000"
    assert insights_of(reply, K.INSIGHT_KIND_ROW_MISESTIMATE)  # the consequence, seen in the same plan


async def test_workers_planned_but_not_launched(analyzer_server) -> None:
    async with (
        analyzer_server(
            max_parallel_workers="0",
            parallel_setup_cost="0",
            parallel_tuple_cost="0",
            min_parallel_table_scan_size="0",
            max_parallel_workers_per_gather="2",
        ) as host,
        client_for(host) as c,
    ):
        reply = await c("AnalyzeQuery", req(f"SELECT count(*) FROM {SCHEMA}.events WHERE c = 5"))
    found = insights_of(reply, K.INSIGHT_KIND_WORKERS_NOT_LAUNCHED)
    assert found and found[0].evidence == {"workers_planned": "2", "workers_launched": "0"}
    gather = next(n for n in walk(reply) if n.node_type == "Gather")
    assert (gather.workers_planned, gather.workers_launched) == (2, 0)


async def test_parameters_are_bound_not_interpolated(client: Client) -> None:
    hostile = "'; DROP TABLE properties; --"
    reply = await client(
        "AnalyzeQuery",
        req(
            "SELECT count(*) FROM properties WHERE city = $1 AND price > $2",
            pb.QueryParam(string_value=hostile),
            pb.QueryParam(string_value="100"),
        ),
    )
    assert reply.actual_rows == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client("AnalyzeQuery", req("SELECT count(*) FROM properties WHERE price > $1"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "params" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client("AnalyzeQuery", req("SELECT count(*) FROM properties WHERE price > $1", pb.QueryParam(string_value="cheap")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "$1 (int8)" in (err.value.details() or "")


async def test_low_privilege_role(analyzer_server) -> None:
    async with analyzer_server(settings=AnalyzerSettings(explain_role="rentscout_explain")) as host, client_for(host) as c:
        reply = await c("AnalyzeQuery", req("SELECT count(*) FROM properties"))
        assert reply.actual_rows == 1
    async with analyzer_server(settings=AnalyzerSettings(explain_role="no_such_role")) as host, client_for(host) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c("AnalyzeQuery", req("SELECT 1"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no_such_role" in (err.value.details() or "")


async def test_statement_timeout_cancels_long_statements(analyzer_server) -> None:
    async with analyzer_server(settings=AnalyzerSettings(statement_timeout_ms=200)) as host, client_for(host) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c("AnalyzeQuery", req("SELECT count(*) FROM generate_series(1, 200000000)"))
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "200 ms" in (err.value.details() or "")
        assert (await c("AnalyzeQuery", req("SELECT 1"))).actual_rows == 1  # the connection is usable again


@pytest.mark.parametrize(
    "method, request_",
    [
        ("AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT 1")),
        ("ListSlowQueries", pb.ListSlowQueriesRequest()),
        ("SuggestIndexes", pb.SuggestIndexesRequest(table="properties")),
        ("GetTableStats", pb.GetTableStatsRequest(table="properties")),
    ],
)
async def test_every_rpc_needs_the_admin_role(client: Client, method: str, request_: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client(method, request_, token=READER)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "admin" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client(method, request_, token=None)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await client(method, request_, token=ADMIN) is not None


async def test_the_callers_deadline_bounds_the_statement(client: Client, pg_conn: asyncpg.Connection) -> None:
    sql = "SELECT count(*) FROM properties a, properties b WHERE a.title <> 'deadline_probe'"  # minutes of work
    # seen running first, then gone: the server-side statement_timeout was cut to the deadline
    err = await deadline_cancels_statement(client("AnalyzeQuery", req(sql), timeout=3), pg_conn, "deadline_probe")
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (await client("AnalyzeQuery", req("SELECT 1"))).actual_rows == 1


async def test_plan_only_insights_come_from_the_estimates(client: Client, analyzer_server) -> None:
    """Without `analyze`, the insights that need only estimates still appear, marked as estimated."""
    reply = await client("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.events WHERE c = 42", analyze=False))
    scan = insights_of(reply, K.INSIGHT_KIND_SEQ_SCAN_FILTER)
    assert scan and scan[0].evidence["estimated"] == "true" and scan[0].node == "Seq Scan on events"
    assert float(scan[0].evidence["removed_percent"]) > 99 and reply.execution_time_ms == 0
    async with analyzer_server(work_mem="64kB", enable_hashjoin="off", enable_mergejoin="off") as host, client_for(host) as c:
        joined = await c(
            "AnalyzeQuery",
            req(f"SELECT * FROM {SCHEMA}.events e JOIN {SCHEMA}.stale s ON s.v = e.c WHERE e.a < 50", analyze=False),
        )
        sorted_ = await c("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.events ORDER BY payload", analyze=False))
    join = insights_of(joined, K.INSIGHT_KIND_MISSING_JOIN_INDEX)
    assert join and join[0].evidence["estimated"] == "true" and "stale" in join[0].evidence["inner"], [
        (i.kind, i.message) for i in joined.insights
    ]
    spill = insights_of(sorted_, K.INSIGHT_KIND_DISK_SPILL)
    assert spill and spill[0].evidence["estimated"] == "true" and spill[0].evidence["work_mem"] == "64kB"
    assert float(spill[0].evidence["estimated_sort_kb"]) > 64
    # the same statements, analyzed, report what happened instead (no estimated evidence)
    analyzed = await client("AnalyzeQuery", req(f"SELECT * FROM {SCHEMA}.events WHERE c = 42"))
    assert all("estimated" not in i.evidence for i in analyzed.insights)


PARALLEL = dict(
    parallel_setup_cost="0", parallel_tuple_cost="0", min_parallel_table_scan_size="0", max_parallel_workers_per_gather="2"
)


async def test_a_parallel_scan_reports_the_true_filter_total(analyzer_server, analyzer_env) -> None:
    """PostgreSQL prints a parallel scan's 'Rows Removed by Filter' per process, rounded; the total is exact."""
    where = "c = 5 OR id = 1"  # 29,969 of 30,000 rows removed: not a multiple of 2 or 3 processes
    conn = await asyncpg.connect(analyzer_env["RENTSCOUT_DATABASE_URL"])
    try:
        true_removed = await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.events WHERE ({where}) IS NOT TRUE")
        true_kept = await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.events WHERE {where}")
        # the same rows under row security hiding one the filter keeps: to the scan it is a removed row, to a
        # count it is absent, which the rounding would not notice
        await conn.execute(f"""
            DROP TABLE IF EXISTS {SCHEMA}.guarded;
            CREATE TABLE {SCHEMA}.guarded AS SELECT * FROM {SCHEMA}.events;
            ALTER TABLE {SCHEMA}.guarded ENABLE ROW LEVEL SECURITY;
            CREATE POLICY all_but_one ON {SCHEMA}.guarded USING (id <> 5);
            ANALYZE {SCHEMA}.guarded""")
        async with analyzer_server(**PARALLEL) as host, client_for(host) as c:
            reply = await c("AnalyzeQuery", req(f"SELECT count(*) FROM {SCHEMA}.events WHERE {where}"))
            limited = await c("AnalyzeQuery", req(f"SELECT id FROM {SCHEMA}.events WHERE {where} LIMIT 3"))
            guarded = await c("AnalyzeQuery", req(f"SELECT count(*) FROM {SCHEMA}.guarded WHERE {where}"))
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.guarded")
        await conn.close()
    scan = next(n for n in walk(reply) if n.node_type == "Seq Scan")
    assert scan.actual_loops > 1, "no parallel worker launched"
    assert scan.rows_removed_by_filter * scan.actual_loops != true_removed  # what per loop x loops gives
    assert scan.filter_totals_exact and scan.rows_removed_by_filter_total == true_removed
    found = insights_of(reply, K.INSIGHT_KIND_SEQ_SCAN_FILTER)
    assert found and found[0].evidence["rows_removed_by_filter"] == str(true_removed)
    assert found[0].evidence["rows_returned"] == str(true_kept)
    # under a LIMIT the scan stops early: its totals are not the table's, and stay per loop x loops
    scan = next(n for n in walk(limited) if n.node_type == "Seq Scan")
    assert not scan.filter_totals_exact
    assert scan.rows_removed_by_filter_total == scan.rows_removed_by_filter * scan.actual_loops
    scan = next(n for n in walk(guarded) if n.node_type == "Seq Scan")
    assert scan.actual_loops > 1 and not scan.filter_totals_exact
