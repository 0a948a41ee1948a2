"""AnalyzeQuery: EXPLAIN one vetted SELECT in a rolled-back read-only transaction and explain the plan."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from rentscout.analyzer_service import catalog_policy, metrics, session
from rentscout.analyzer_service.insights import Insight, TableHealth, analyze_plan
from rentscout.analyzer_service.params import ParamError, bind
from rentscout.analyzer_service.pgerrors import map_statement_error
from rentscout.analyzer_service.plan import ExplainResult, Node, parse_explain
from rentscout.analyzer_service.safety import ParsedQuery, Rejected, parse_select
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.analyzer_service.sqltext import TAG, quote_ident, tagged
from rentscout.runtime import deadline, logs
from rentscout.runtime.context import annotate
from rentscout.runtime.database import Database
from rentscout.runtime.errors import InvalidArgument

_log = logging.getLogger(__name__)

# The pg_stat_get_* functions directly: the pg_stat_all_tables view would compute every table's row.
_TABLE_HEALTH_SQL = tagged("""
SELECT n.nspname AS schema, c.relname AS name, c.reltuples::float8 AS reltuples, c.relpages::int8 AS relpages,
       pg_catalog.pg_stat_get_live_tuples(c.oid) AS n_live_tup,
       pg_catalog.pg_stat_get_mod_since_analyze(c.oid) AS n_mod_since_analyze,
       pg_catalog.pg_stat_get_last_analyze_time(c.oid) AS last_analyze,
       pg_catalog.pg_stat_get_last_autoanalyze_time(c.oid) AS last_autoanalyze
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p')
  AND c.oid = ANY ($1::oid[] || ARRAY(SELECT pg_catalog.to_regclass(x)::oid FROM unnest($2::text[]) AS x))
""")


@dataclass
class Analysis:
    result: ExplainResult
    insights: list[Insight]
    fingerprint: str


def vet(sql: str, field: str = "sql") -> ParsedQuery:
    """Parse and statically check a statement; INVALID_ARGUMENT (and a metric) when refused."""
    try:
        return parse_select(sql)
    except Rejected as exc:
        metrics.REJECTED.labels(exc.reason).inc()
        raise InvalidArgument(field, exc.message) from None


def explain_options(analyze: bool, buffers: bool) -> str:
    options = ["FORMAT JSON", "SETTINGS"]
    if analyze:
        options.append("ANALYZE")
    if buffers:
        options.append("BUFFERS")
    return ", ".join(options)


async def table_health(conn: asyncpg.Connection, result: ExplainResult,
                       known: dict[tuple[str | None, str], int]) -> dict[str, TableHealth]:
    """Statistics state of every relation the plan scans, keyed by the relation name EXPLAIN prints."""
    names = {n.relation_name for n in result.nodes() if n.relation_name and n.node_type != "CTE Scan"}
    if not names:
        return {}
    oids = [oid for (_, name), oid in known.items() if name in names]
    unresolved = sorted(name for name in names if not any(key[1] == name for key in known))
    rows = await conn.fetch(_TABLE_HEALTH_SQL, oids, [quote_ident(n) for n in unresolved], timeout=deadline.remaining())
    out: dict[str, TableHealth] = {}
    for r in rows:
        out.setdefault(r["name"], TableHealth(
            schema=r["schema"], name=r["name"], reltuples=r["reltuples"], relpages=r["relpages"],
            n_live_tup=r["n_live_tup"], n_mod_since_analyze=r["n_mod_since_analyze"],
            last_analyze=r["last_analyze"], last_autoanalyze=r["last_autoanalyze"]))
    return out


async def analyze_query(db: Database, settings: AnalyzerSettings, sql: str, params: Sequence[Any], *,
                        analyze: bool, buffers: bool) -> Analysis:
    mode = "analyze" if analyze else "plan"
    started = time.perf_counter()
    try:
        parsed = vet(sql)
        if parsed.param_count != len(params):
            raise InvalidArgument("params", f"the statement uses {parsed.param_count} placeholder(s) ($1..$n) "
                                            f"but {len(params)} parameter(s) were given")
        async with db.connection() as conn, session.read_only(
                conn, statement_timeout_ms=settings.statement_timeout_ms,
                lock_timeout_ms=settings.lock_timeout_ms) as stmt_timeout_ms:
            try:
                resolution = await catalog_policy.enforce(conn, parsed, settings.trusted_schemas)
            except Rejected as exc:
                metrics.REJECTED.labels(exc.reason).inc()
                raise InvalidArgument("sql", exc.message) from None
            await session.set_role(conn, settings.explain_role)
            raw = await _run_explain(conn, f"EXPLAIN {TAG} ({explain_options(analyze, buffers)}) ", sql, params,
                                     stmt_timeout_ms)
            result = parse_explain(raw)
            tables = await table_health(conn, result, resolution.relation_oids)
            work_mem = ""
            if any(_memory_bound(n) for n in result.nodes()):  # only spill and lossy insights quote it
                work_mem = await conn.fetchval(f"SHOW {TAG} work_mem", timeout=deadline.remaining())
    except InvalidArgument:
        metrics.ANALYSES.labels(mode, "rejected").inc()
        raise
    except BaseException:
        metrics.ANALYSES.labels(mode, "error").inc()
        raise
    insights = analyze_plan(result, offsets=parsed.offsets, params=params, tables=tables, work_mem=work_mem or "")
    elapsed = time.perf_counter() - started
    metrics.ANALYSES.labels(mode, "ok").inc()
    metrics.ANALYSIS_DURATION.labels(mode).observe(elapsed)
    for insight in insights:
        metrics.INSIGHTS.labels(insight.kind, insight.severity).inc()
    annotate(**{"db.statement.fingerprint": parsed.fingerprint, "analyzer.insights": len(insights),
                "analyzer.execution_time_ms": result.execution_time_ms})
    _log.info("statement analyzed", extra={"fields": {
        "db.statement.fingerprint": parsed.fingerprint, "analyzer.mode": mode,
        "analyzer.execution_time_ms": result.execution_time_ms, "analyzer.total_cost": result.root.total_cost,
        "analyzer.insights": [i.kind for i in insights], "event.duration": logs.ns(elapsed)}})
    return Analysis(result=result, insights=insights, fingerprint=parsed.fingerprint)


def _memory_bound(node: Node) -> bool:
    return (node.sort_space_type == "Disk" or node.hash_batches > 1 or node.hashagg_batches > 1
            or node.disk_usage_kb > 0 or node.lossy_heap_blocks > 0)


async def _run_explain(conn: asyncpg.Connection, prefix: str, sql: str, params: Sequence[Any],
                       stmt_timeout_ms: int) -> str:
    """Prepare, bind the parameters to the types PostgreSQL inferred, run; errors mapped without row data."""
    explain_sql = prefix + sql
    try:
        stmt = await conn.prepare(explain_sql, timeout=deadline.remaining())
        types = [(t.name, t.kind, t.schema) for t in stmt.get_parameters()]
        try:
            args = bind(params, types)
        except ParamError as exc:
            raise InvalidArgument("params", str(exc)) from None
        started = time.perf_counter()
        raw = await stmt.fetchval(*args, timeout=deadline.remaining())
        logs.log_db_query(explain_sql, time.perf_counter() - started, 1)
        return str(raw)
    except asyncpg.exceptions.DataError as exc:
        if "invalid input for query argument" in str(exc):  # raised by asyncpg's encoder, about our own value
            raise InvalidArgument("params", str(exc).split(" (")[0]) from None
        raise map_statement_error(exc, "sql", stmt_timeout_ms, len(prefix)) from None
    except asyncpg.PostgresError as exc:
        raise map_statement_error(exc, "sql", stmt_timeout_ms, len(prefix)) from None
