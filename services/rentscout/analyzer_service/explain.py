"""AnalyzeQuery: EXPLAIN one vetted SELECT in a rolled-back read-only transaction and explain the plan."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from rentscout.analyzer_service import catalog_policy, filter_counts, limits, metrics, session
from rentscout.analyzer_service.insights import Insight, TableHealth, analyze_plan
from rentscout.analyzer_service.params import ParamError, bind, field_of
from rentscout.analyzer_service.pgerrors import (
    argument_number,
    bound_parameter,
    condition_name,
    log_withheld,
    map_statement_error,
)
from rentscout.analyzer_service.plan import ExplainResult, Node, parse_explain
from rentscout.analyzer_service.safety import ParsedQuery, Rejected, parse_select
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.analyzer_service.sqltext import TAG, quote_ident
from rentscout.runtime import deadline, logs
from rentscout.runtime.context import annotate
from rentscout.runtime.database import Database, Releases
from rentscout.runtime.errors import InvalidArgument, ServiceError
from rentscout.runtime.replicas import FLUSHED_LSN_SQL, PRIMARY, ReadRouter, parse_lsn

_log = logging.getLogger(__name__)


@dataclass
class Analysis:
    result: ExplainResult
    insights: list[Insight]
    fingerprint: str
    node: str = PRIMARY  # the node that ran the statement


# Statements analyzed again (a dashboard's, the slow-query list's) are parsed once: parse_select is a pure
# function of the text, and what AnalyzeQuery reads of its result is never changed. Refusals are not
# kept (each is counted again); texts over VET_CACHE_MAX_CHARS are not kept, so the cache stays small.
VET_CACHE_SIZE, VET_CACHE_MAX_CHARS = 256, 8192
_parse_cached = functools.lru_cache(maxsize=VET_CACHE_SIZE)(parse_select)


def vet(sql: str, field: str = "sql") -> ParsedQuery:
    """Parse and statically check a statement; INVALID_ARGUMENT (and a metric) when refused."""
    try:
        return _parse_cached(sql) if len(sql) <= VET_CACHE_MAX_CHARS else parse_select(sql)
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


def plan_tables(result: ExplainResult, tables: dict[str, TableHealth]) -> dict[str, TableHealth]:
    """The statistics state of the relations the plan scans (by the name EXPLAIN prints)."""
    names = {n.relation_name for n in result.nodes() if n.relation_name and n.node_type != "CTE Scan"}
    return {name: health for name, health in tables.items() if name in names}


def parameter_types(stmt: asyncpg.prepared_stmt.PreparedStatement) -> list[str]:
    """The placeholders' types as SQL type names (an array type as its element type's name and `[]`:
    asyncpg names int4's array `int4[]`, which is no type name)."""
    out = []
    for t in stmt.get_parameters():
        array = t.kind == "array" and t.name.endswith("[]")
        name = f"{quote_ident(t.schema)}.{quote_ident(t.name[:-2] if array else t.name)}"
        out.append(name + "[]" if array else name)
    return out


async def analyze_query(
    db: Database,
    settings: AnalyzerSettings,
    sql: str,
    params: Sequence[Any],
    *,
    analyze: bool,
    buffers: bool,
    reads: ReadRouter | None = None,
) -> Analysis:
    """With `reads` (a router with standbys): checked on the primary, run on a standby that has replayed
    the primary's position at the check (`on_standby`), else checked and run on the primary (`on_primary`).
    Counted in the analyzer's metrics and logged by its fingerprint, never by its text."""
    mode = "analyze" if analyze else "plan"
    started = time.perf_counter()
    prefix = f"EXPLAIN {TAG} ({explain_options(analyze, buffers)}) "
    try:
        parsed = vet(sql)
        if parsed.param_count != len(params):
            raise InvalidArgument(
                "params",
                f"the statement uses {parsed.param_count} placeholder(s) ($1..$n) but {len(params)} parameter(s) were given",
            )
        for attempt in (1, 2):  # again once when the placeholder types remembered for the text are outdated
            try:
                if reads is not None and reads.standbys:
                    analysis = await on_standby(db, reads, settings, parsed, prefix, params)
                else:
                    analysis = await on_primary(db, settings, parsed, prefix, params)
                break
            except TypesChanged:
                if attempt == 2:
                    raise
    except InvalidArgument:
        metrics.ANALYSES.labels(mode, "rejected").inc()
        raise
    except BaseException:
        metrics.ANALYSES.labels(mode, "error").inc()
        raise
    elapsed = time.perf_counter() - started
    result, insights = analysis.result, analysis.insights
    metrics.ANALYSES.labels(mode, "ok").inc()
    metrics.ANALYSIS_DURATION.labels(mode).observe(elapsed)
    for insight in insights:
        metrics.INSIGHTS.labels(insight.kind, insight.severity).inc()
    annotate(
        **{
            "db.statement.fingerprint": parsed.fingerprint,
            "analyzer.insights": len(insights),
            "analyzer.execution_time_ms": result.execution_time_ms,
        }
    )
    _log.info(
        "statement analyzed",
        extra={
            "fields": {
                "db.statement.fingerprint": parsed.fingerprint,
                "analyzer.mode": mode,
                "analyzer.execution_time_ms": result.execution_time_ms,
                "analyzer.total_cost": result.root.total_cost,
                "analyzer.insights": len(insights),
                "analyzer.insight_kinds": [i.kind for i in insights],
                "db.node": analysis.node,
                "event.duration": logs.ns(elapsed),
            }
        },
    )
    return analysis


class TypesChanged(InvalidArgument):
    """The statement's placeholder types differ from those its check used."""


# The placeholder types PostgreSQL inferred for a text, remembered in this process (never in a database
# session): a statement analyzed again skips the round trip that asks for them. They only declare the
# check's probe; the statement is prepared again before it runs, and must show the same types.
TYPE_CACHE_SIZE = 256
_types_seen: collections.OrderedDict[str, list[str]] = collections.OrderedDict()


async def _types(conn: asyncpg.Connection, prefix: str, parsed: ParsedQuery, stmt_timeout_ms: int) -> tuple[list[str], bool]:
    """(the placeholder types, whether they were remembered rather than asked for now)."""
    known = _types_seen.get(parsed.sql)
    if known is not None:
        _types_seen.move_to_end(parsed.sql)
        return known, True
    types = parameter_types(await _describe(conn, prefix, parsed.sql, stmt_timeout_ms))
    if len(parsed.sql) <= VET_CACHE_MAX_CHARS:
        _types_seen[parsed.sql] = types
        if len(_types_seen) > TYPE_CACHE_SIZE:
            _types_seen.popitem(last=False)
    return types, False


async def _checked(
    conn: asyncpg.Connection,
    parsed: ParsedQuery,
    prefix: str,
    settings: AnalyzerSettings,
    stmt_timeout_ms: int,
    *,
    then_read_only: bool,
    at_lsn: bool = False,
) -> tuple[list[str], catalog_policy.Resolution, int]:
    """(types, the check's resolution, the primary's flushed position when `at_lsn`). A check refused with
    remembered types is TypesChanged: the caller tries again with the types of now."""
    types, remembered = await _types(conn, prefix, parsed, stmt_timeout_ms)
    checked_at = parse_lsn(await conn.fetchval(FLUSHED_LSN_SQL, timeout=deadline.remaining())) if at_lsn else 0
    try:
        resolution = await _check(conn, parsed, types, settings, stmt_timeout_ms, then_read_only=then_read_only)
    except InvalidArgument:
        if not remembered:
            raise
        _forget_types(parsed.sql)
        raise TypesChanged("sql", "was checked with outdated placeholder types") from None
    return types, resolution, checked_at


def _forget_types(sql: str) -> None:
    _types_seen.pop(sql, None)


async def on_primary(
    db: Database, settings: AnalyzerSettings, parsed: ParsedQuery, prefix: str, params: Sequence[Any]
) -> Analysis:
    """Check and run on the primary, in one transaction: the check makes it READ ONLY in its own round trip,
    then the statement runs and its scans are counted (`filter_counts`)."""
    async with Releases() as later:  # the connection is reset while the plan is read
        async with (
            db.connection(later) as conn,
            dropped_when_stuck(conn),
            session.transaction(conn, settings, released=True) as stmt_timeout_ms,
        ):
            types, resolution, _ = await _checked(conn, parsed, prefix, settings, stmt_timeout_ms, then_read_only=True)
            stmt = await _describe(conn, prefix, parsed.sql, stmt_timeout_ms, expected=types)
            raw = await _run_explain(stmt, prefix, parsed.sql, params, stmt_timeout_ms)
            countable = resolution.countable_tables()
            counted = parse_explain(raw) if countable and filter_counts.may_count(raw) else None
            if counted is not None:
                await filter_counts.fill(conn, counted, countable)
        # without counts, the plan is parsed while the connection's reset makes its round trip
        await later.sent()
        result = counted if counted is not None else parse_explain(raw)
        # the check restored the session's work_mem: the value the statement ran with
        return _finish(result, parsed, params, resolution, resolution.work_mem, PRIMARY)


async def on_standby(
    db: Database, reads: ReadRouter, settings: AnalyzerSettings, parsed: ParsedQuery, prefix: str, params: Sequence[Any]
) -> Analysis:
    """Check on the primary (the committed catalog at its flush position: aborted probes of earlier requests
    may sit unflushed past it, and no standby would ever wait for them), then run on a standby that has
    replayed that position (the catalog is the same there), else on the primary."""
    async with Releases() as later:
        async with (
            db.connection(later) as conn,
            dropped_when_stuck(conn),
            session.transaction(conn, settings, released=True) as stmt_timeout_ms,
        ):
            types, resolution, checked_at = await _checked(
                conn, parsed, prefix, settings, stmt_timeout_ms, then_read_only=False, at_lsn=True
            )
        async with (
            reads.connection(checked_at) as (replica, node),
            dropped_when_stuck(replica),
            session.transaction(replica, settings, read_only=True, checking=False, released=True) as stmt_timeout_ms,
        ):
            stmt = await _describe(replica, prefix, parsed.sql, stmt_timeout_ms, expected=types)
            result = parse_explain(await _run_explain(stmt, prefix, parsed.sql, params, stmt_timeout_ms))
            work_mem = await _work_mem(replica, result)
            await filter_counts.fill(replica, result, resolution.countable_tables())
        return _finish(result, parsed, params, resolution, work_mem, node)


@contextlib.asynccontextmanager
async def dropped_when_stuck(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A wait that outlasted the call's deadline (`limits.budget` puts it after PostgreSQL's own
    statement_timeout): the connection is terminated, since resetting it would wait on the same server."""
    try:
        yield
    except TimeoutError:
        conn.terminate()
        raise


def _finish(
    result: ExplainResult,
    parsed: ParsedQuery,
    params: Sequence[Any],
    resolution: catalog_policy.Resolution,
    work_mem: str,
    node: str,
) -> Analysis:
    tables = plan_tables(result, resolution.tables)
    insights = analyze_plan(result, offsets=parsed.offsets, params=params, tables=tables, work_mem=work_mem)
    return Analysis(result=result, insights=insights, fingerprint=parsed.fingerprint, node=node)


def _memory_bound(node: Node, analyzed: bool) -> bool:
    if not analyzed:  # a plan only: an estimated sort may not fit
        return node.node_type in ("Sort", "Incremental Sort")
    return (
        node.sort_space_type == "Disk"
        or node.hash_batches > 1
        or node.hashagg_batches > 1
        or node.disk_usage_kb > 0
        or node.lossy_heap_blocks > 0
    )


async def _check(
    conn: asyncpg.Connection,
    parsed: ParsedQuery,
    types: list[str],
    settings: AnalyzerSettings,
    stmt_timeout_ms: int,
    *,
    then_read_only: bool,
) -> catalog_policy.Resolution:
    """Layer 2 (catalog_policy) with its refusals as INVALID_ARGUMENT on `sql`."""
    try:
        return await catalog_policy.check(
            conn,
            parsed,
            types,
            settings.trusted_schemas,
            then_read_only=then_read_only,
            statement_timeout_ms=limits.statement_timeout_ms(settings.statement_timeout_ms),
        )
    except Rejected as exc:
        metrics.REJECTED.labels(exc.reason).inc()
        raise InvalidArgument("sql", exc.message) from None
    except asyncpg.PostgresError as exc:  # the statement's own errors, found in the probe: positions in its text
        raise map_statement_error(exc, "sql", stmt_timeout_ms, catalog_policy.probe_offset(parsed, types), parsed.sql) from None


async def _work_mem(conn: asyncpg.Connection, result: ExplainResult) -> str:
    """work_mem, when a node of the plan makes an insight quote it (one more round trip only then)."""
    if any(_memory_bound(n, result.analyzed) for n in result.nodes()):
        return str(await conn.fetchval(f"SHOW {TAG} work_mem", timeout=deadline.remaining()))
    return ""


async def _describe(
    conn: asyncpg.Connection, prefix: str, sql: str, stmt_timeout_ms: int, expected: list[str] | None = None
) -> asyncpg.prepared_stmt.PreparedStatement:
    """Parse and describe (nothing runs) as the unnamed statement (`session.prepare`): the parameter types
    PostgreSQL inferred, errors without row data. With `expected`, the types the check saw: a statement
    whose placeholders PostgreSQL now reads otherwise (a concurrent change of the catalog) is refused."""
    try:
        stmt = await session.prepare(conn, prefix + sql)
    except asyncpg.PostgresError as exc:
        raise map_statement_error(exc, "sql", stmt_timeout_ms, len(prefix), sql) from None
    if expected is not None and parameter_types(stmt) != expected:
        _forget_types(sql)
        raise TypesChanged(
            "sql", "its parameter types changed while it was being checked (a concurrent change of the catalog); retry"
        )
    return stmt


async def _run_explain(
    stmt: asyncpg.prepared_stmt.PreparedStatement, prefix: str, sql: str, params: Sequence[Any], stmt_timeout_ms: int
) -> str:
    """Bind the parameters to the types PostgreSQL inferred and run; errors mapped without row data."""
    types = [(t.name, t.kind, t.schema) for t in stmt.get_parameters()]
    try:
        args = bind(params, types)
    except ParamError as exc:
        raise InvalidArgument(exc.field, str(exc)) from None
    try:
        started = time.perf_counter()
        raw = await stmt.fetchval(*args, timeout=deadline.remaining())
        logs.log_db_query(prefix + sql, time.perf_counter() - started, 1)
        return str(raw)
    except asyncpg.exceptions.DataError as exc:
        if (number := argument_number(exc)) is not None:  # asyncpg's encoder refused our own value
            raise InvalidArgument(
                field_of(number - 1), f"${number} ({types[number - 1][0]}) cannot be encoded for its placeholder"
            ) from None
        raise _statement_or_parameter_error(exc, prefix, sql, stmt_timeout_ms, types) from None
    except asyncpg.PostgresError as exc:
        raise _statement_or_parameter_error(exc, prefix, sql, stmt_timeout_ms, types) from None


def _statement_or_parameter_error(
    exc: asyncpg.PostgresError, prefix: str, sql: str, stmt_timeout_ms: int, types: Sequence[tuple[str, str, str]]
) -> ServiceError:
    """A parameter PostgreSQL could not read (input of its type, at bind) names params[i]; the rest `sql`."""
    number = bound_parameter(exc)
    if number is not None and 0 < number <= len(types):
        log_withheld(exc)
        return InvalidArgument(
            field_of(number - 1),
            f"${number} ({types[number - 1][0]}) is not a valid value of its "
            f"type: {condition_name(exc)} (SQLSTATE {exc.sqlstate})",
        )
    return map_statement_error(exc, "sql", stmt_timeout_ms, len(prefix), sql)
