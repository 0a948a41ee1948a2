"""SuggestIndexes: candidates from a query (or a table's statistics, or the slowest statements),
checked with HypoPG hypothetical indexes when the extension is installed, plus index hygiene.

HypoPG indexes live in the memory of one backend and survive ROLLBACK, so validation runs on a
dedicated connection that starts and ends with hypopg_reset() and is closed afterwards: a pooled
connection never sees a hypothetical index. Caller-written and recorded statements are checked
(`catalog_policy`) and planned as the analyzer role; HypoPG and the statistics are the service's own
reads. Table mode builds candidates from the workload: the recorded statements (pg_stat_statements,
and pg_qualstats where installed) that filter that table, validated against those statements and
ranked by the planner cost they save in total (cost x calls); statistics-only candidates appear only
when no recorded statement touches the table, unvalidated and last.

Statements with placeholders ($1, or pg_stat_statements' normalised constants) are costed as
generic plans (PREPARE + plan_cache_mode = force_generic_plan), which estimate `col = $1` from the
column's statistics just as Dexter does. Statements are only planned, never executed, but planning
can evaluate functions, so the same safety policy applies as for AnalyzeQuery, and planning runs
in a read-only transaction.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from rentscout.analyzer_service import catalog_policy, jsontext, limits, metrics, session, slow_queries
from rentscout.analyzer_service.explain import parameter_types, vet
from rentscout.analyzer_service.index_candidates import (
    Candidate,
    ColumnStats,
    IndexInfo,
    IndexIssue,
    Relation,
    build_candidates,
    column_uses,
    covered_by,
    estimate_index_bytes,
    heuristic_keep,
    index_issues,
)
from rentscout.analyzer_service.pgerrors import map_statement_error
from rentscout.analyzer_service.safety import ParsedQuery, Rejected, parse_select
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.analyzer_service.sqltext import TAG, quote_ident, redact_constants, tagged
from rentscout.analyzer_service.tables import resolve_table
from rentscout.runtime import deadline
from rentscout.runtime.config import RuntimeSettings
from rentscout.runtime.database import Database
from rentscout.runtime.errors import InvalidArgument, Unavailable
from rentscout.runtime.logs import fingerprint as statement_fingerprint

_log = logging.getLogger(__name__)
_names = itertools.count(1)
TABLE_MODE_MAX_SELECTIVITY = 0.01  # table mode: a column must single out at most 1% of the rows
TABLE_MODE_MAX_WIDTH = 256
TABLE_MODE_WORKLOAD = 200  # recorded statements table mode reads (the costliest first)
T = TypeVar("T")

_INDEXES_SQL = tagged("""
SELECT i.indexrelid::oid AS oid, n.nspname AS schema, ic.relname AS name, tn.nspname || '.' || t.relname AS table_name,
       i.indrelid::oid AS table_oid,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       i.indnkeyatts::int AS key_count, i.indisunique AS is_unique, i.indisprimary AS is_primary,
       i.indisvalid AS is_valid,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid) AS is_constraint,
       am.amname AS am, pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_catalog.pg_get_expr(i.indexprs, i.indrelid) AS expressions,
       pg_catalog.pg_get_indexdef(i.indexrelid) AS definition, pg_catalog.pg_relation_size(i.indexrelid) AS size_bytes,
       coalesce(s.idx_scan, 0) AS idx_scan
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_catalog.pg_am am ON am.oid = ic.relam
LEFT JOIN pg_catalog.pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
WHERE CASE WHEN $1::oid[] IS NULL
           THEN tn.nspname NOT IN ('pg_catalog', 'information_schema') AND tn.nspname !~ '^pg_(toast|temp)'
           ELSE i.indrelid = ANY ($1::oid[]) END
ORDER BY 4, 3
""")

_RELATIONS_SQL = tagged("""
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.reltuples::float8 AS reltuples,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY ($1::oid[]) AND c.relkind IN ('r', 'p', 'm')
""")

_STATS_SQL = tagged("""
SELECT c.oid, a.attname::text AS column_name, s.null_frac::float8 AS null_frac, s.n_distinct::float8 AS n_distinct,
       s.correlation::float8 AS correlation, s.avg_width,
       (t.typcategory IN ('S', 'E') OR EXISTS (
            SELECT 1 FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod
            WHERE am.amname = 'btree' AND oc.opcdefault AND oc.opcintype = a.atttypid)) AS btree_ok
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
     AND NOT s.inherited
WHERE c.oid = ANY ($1::oid[])
""")


@dataclass
class Suggestion:
    candidate: Candidate
    cost_before: float = 0.0
    cost_after: float = 0.0
    size_bytes: int = 0
    validated: bool = False
    queries: list[str] = field(default_factory=list)
    reason: str = ""
    saved_cost: float = 0.0  # table mode: planner cost saved over the workload (per-call saving x calls)

    @property
    def reduction(self) -> float:
        return 1.0 - self.cost_after / self.cost_before if self.validated and self.cost_before > 0 else 0.0


@dataclass
class Advice:
    suggestions: list[Suggestion]
    hypopg_available: bool
    method: str
    issues: list[IndexIssue]


@dataclass
class _Context:
    conn: asyncpg.Connection
    settings: AnalyzerSettings
    hypopg_schema: str | None


# -- catalog reads -------------------------------------------------------------------------------


async def load_indexes(conn: asyncpg.Connection, table_oids: Sequence[int] | None) -> list[IndexInfo]:
    rows = await conn.fetch(_INDEXES_SQL, None if table_oids is None else list(table_oids), timeout=deadline.remaining())
    return [
        IndexInfo(
            oid=r["oid"],
            schema=r["schema"],
            name=r["name"],
            table=r["table_name"],
            table_oid=r["table_oid"],
            columns=tuple(r["columns"]),
            key_count=r["key_count"],
            unique=r["is_unique"],
            primary=r["is_primary"],
            valid=r["is_valid"],
            constraint=r["is_constraint"],
            am=r["am"],
            predicate=r["predicate"],
            expressions=r["expressions"],
            definition=redact_constants(r["definition"]),
            size_bytes=r["size_bytes"],
            idx_scan=r["idx_scan"],
        )
        for r in rows
    ]


async def load_relations(
    conn: asyncpg.Connection, oids: Sequence[int]
) -> tuple[dict[int, Relation], dict[int, frozenset[str]], dict[int, float]]:
    rows = await conn.fetch(_RELATIONS_SQL, list(oids), timeout=deadline.remaining())
    return (
        {r["oid"]: Relation(r["oid"], r["schema"], r["name"]) for r in rows},
        {r["oid"]: frozenset(r["columns"]) for r in rows},
        {r["oid"]: max(r["reltuples"], 0.0) for r in rows},
    )


ColumnKey = tuple[int, str]


async def load_stats(conn: asyncpg.Connection, oids: Sequence[int]) -> tuple[dict[ColumnKey, ColumnStats], set[ColumnKey]]:
    """Column statistics, and the columns whose type a B-tree can index."""
    rows = await conn.fetch(_STATS_SQL, list(oids), timeout=deadline.remaining())
    stats = {
        (r["oid"], r["column_name"]): ColumnStats(
            r["null_frac"] or 0.0, r["n_distinct"] or 0.0, r["correlation"], r["avg_width"] or 0
        )
        for r in rows
        if r["null_frac"] is not None
    }
    return stats, {(r["oid"], r["column_name"]) for r in rows if r["btree_ok"]}


async def hypopg_schema(conn: asyncpg.Connection) -> tuple[str | None, bool]:
    """(schema HypoPG is installed in or None, whether the server could install it)."""
    row = await conn.fetchrow(
        tagged(
            "SELECT n.nspname AS schema FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
            "ON n.oid = e.extnamespace WHERE e.extname = 'hypopg'"
        ),
        timeout=deadline.remaining(),
    )
    if row is not None:
        return row["schema"], True
    available = await conn.fetchval(
        tagged("SELECT count(*) > 0 FROM pg_catalog.pg_available_extensions WHERE name = 'hypopg'"), timeout=deadline.remaining()
    )
    return None, bool(available)


async def stats_reset(conn: asyncpg.Connection) -> str | None:
    value = await conn.fetchval(
        tagged("SELECT stats_reset FROM pg_catalog.pg_stat_database WHERE datname = pg_catalog.current_database()"),
        timeout=deadline.remaining(),
    )
    return value.isoformat() if value is not None else None


# -- costing -------------------------------------------------------------------------------------


async def plan_cost(conn: asyncpg.Connection, sql: str, param_count: int, field: str | None = None) -> tuple[float, str]:
    """(total cost, raw plan) of `sql` as the planner sees it now (generic plan when it has placeholders).

    With `field`, errors of the statement are the caller's: INVALID_ARGUMENT on that field.
    """
    name = f"rentscout_advice_{next(_names)}"
    prefix = f"EXPLAIN {TAG} (FORMAT JSON) " if param_count == 0 else f"PREPARE {name} {TAG} AS "
    try:
        if param_count == 0:
            raw = await conn.fetchval(prefix + sql, timeout=deadline.remaining())
        else:
            # fetch(), not execute(): the extended protocol refuses a second statement whatever the text holds
            await conn.fetch(prefix + sql, timeout=deadline.remaining())
            raw = await conn.fetchval(
                f"EXPLAIN {TAG} (FORMAT JSON) EXECUTE {name}({', '.join(['NULL'] * param_count)})", timeout=deadline.remaining()
            )
            await conn.execute(f"DEALLOCATE {TAG} {name}", timeout=deadline.remaining())
    except asyncpg.PostgresError as exc:
        if field is None:
            raise
        raise map_statement_error(exc, field, offset=len(prefix), sql=sql) from None
    doc = jsontext.loads(raw)  # a deep plan nests beyond any recursion limit
    return float(doc[0]["Plan"]["Total Cost"]), str(raw)


async def _measure(ctx: _Context, sql: str, param_count: int, candidate: Candidate) -> tuple[float, int, bool]:
    """(cost with the hypothetical index, its size, whether the plan used it); the index is dropped after."""
    schema = quote_ident(ctx.hypopg_schema or "public")
    row = await ctx.conn.fetchrow(
        f"SELECT {TAG} indexrelid FROM {schema}.hypopg_create_index($1)",
        candidate.hypothetical_statement(),
        timeout=deadline.remaining(),
    )
    assert row is not None  # hypopg_create_index returns one row per index created, and this creates one
    oid = row["indexrelid"]
    try:
        cost, raw = await plan_as_role(ctx, sql, param_count)
        size = await ctx.conn.fetchval(f"SELECT {TAG} {schema}.hypopg_relation_size($1)", oid, timeout=deadline.remaining())
    finally:
        with contextlib.suppress(asyncpg.InFailedSQLTransactionError):
            await ctx.conn.fetchval(f"SELECT {TAG} {schema}.hypopg_drop_index($1)", oid, timeout=deadline.remaining())
    return cost, int(size or 0), f"<{oid}>" in raw


async def plan_as_role(ctx: _Context, sql: str, param_count: int, field: str | None = None) -> tuple[float, str]:
    """plan_cost of a caller-written or recorded statement, planned as the analyzer role."""
    async with session.as_statement_role(ctx.conn, ctx.settings):
        return await plan_cost(ctx.conn, sql, param_count, field)


async def check_statement(ctx: _Context, parsed: ParsedQuery, field: str | None = None) -> catalog_policy.Resolution:
    """Layer 2 for one statement, in a savepoint as the analyzer role (the probe and the role go with it).

    With `field`, its problems are the caller's (INVALID_ARGUMENT on that field); without, they
    propagate as Rejected / PostgresError for the caller to skip the statement.
    """
    await session.switch_role(ctx.conn, session.statement_role(ctx.settings), before=f"SAVEPOINT {TAG} probe; ")
    try:
        stmt = await session.prepare(ctx.conn, parsed.sql)
        return await catalog_policy.check(
            ctx.conn,
            parsed,
            parameter_types(stmt),
            ctx.settings.trusted_schemas,
            then_read_only=False,
            statement_timeout_ms=limits.statement_timeout_ms(ctx.settings.statement_timeout_ms),
        )
    except Rejected as exc:
        metrics.REJECTED.labels(exc.reason).inc()
        if field is None:
            raise
        raise InvalidArgument(field, exc.message) from None
    except asyncpg.PostgresError as exc:
        if field is None:
            raise
        raise map_statement_error(exc, field, sql=parsed.sql) from None
    finally:
        await ctx.conn.execute(f"ROLLBACK {TAG} TO SAVEPOINT probe", timeout=deadline.remaining())


async def read_only(ctx: _Context) -> None:
    """Every statement is checked: from here on nothing in this transaction may write."""
    await ctx.conn.execute(f"SET LOCAL {TAG} transaction_read_only = on", timeout=deadline.remaining())


async def _reset_hypopg(ctx: _Context) -> None:
    if ctx.hypopg_schema is not None:
        await ctx.conn.execute(f"SELECT {TAG} {quote_ident(ctx.hypopg_schema)}.hypopg_reset()", timeout=5)


async def evaluate(
    ctx: _Context,
    sql: str,
    param_count: int,
    candidates: Sequence[Candidate],
    stats: dict[tuple[int, str], ColumnStats],
    reltuples: dict[int, float],
    cost_before: float,
) -> list[Suggestion]:
    """Cost each candidate; with HypoPG keep the best per table that cuts the cost enough."""
    if ctx.hypopg_schema is None:
        return [
            Suggestion(
                c,
                cost_before=cost_before,
                queries=[sql],
                size_bytes=estimate_index_bytes(c, stats, reltuples.get(c.relation.oid, 0.0)),
                reason=f"{c.reason}; not validated (statistics heuristic)",
            )
            for c in candidates
            if heuristic_keep(c, reltuples.get(c.relation.oid, 0.0))
        ]
    best: dict[int, Suggestion] = {}
    threshold = ctx.settings.hypopg_min_cost_reduction
    for c in candidates:
        cost_after, size, used = await _measure(ctx, sql, param_count, c)
        cut = 1.0 - cost_after / cost_before if cost_before > 0 else 0.0
        if not used or cut < threshold:
            continue
        s = Suggestion(
            c,
            cost_before,
            cost_after,
            size,
            True,
            [sql],
            f"{c.reason}; HypoPG: planner cost {cost_before:.1f} -> {cost_after:.1f} ({100 * cut:.0f}% lower)",
        )
        current = best.get(c.relation.oid)
        if (
            current is None
            or s.cost_after < current.cost_after
            or (s.cost_after == current.cost_after and len(c.columns) < len(current.candidate.columns))
        ):
            best[c.relation.oid] = s
    return list(best.values())


# -- one statement -------------------------------------------------------------------------------


async def candidates_for(
    ctx: _Context, parsed: ParsedQuery, resolution: catalog_policy.Resolution
) -> tuple[list[Candidate], dict[tuple[int, str], ColumnStats], dict[int, float], list[int]]:
    relations, columns_of, reltuples = await load_relations(ctx.conn, list(set(resolution.relation_oids.values())))
    resolve = {key: relations[oid] for key, oid in resolution.relation_oids.items() if oid in relations}
    uses = column_uses(parsed.statement, resolve, columns_of, parsed.cte_names)
    oids = sorted(relations)
    stats, indexable = await load_stats(ctx.conn, oids)
    indexes = await load_indexes(ctx.conn, oids)
    candidates = [
        c
        for c in build_candidates(uses, stats, reltuples)
        if covered_by(c, indexes) is None and all((c.relation.oid, col) in indexable for col in c.columns)
    ]
    return candidates, stats, reltuples, oids


async def advise_statement(
    ctx: _Context, parsed: ParsedQuery, resolution: catalog_policy.Resolution, field: str | None = None
) -> tuple[list[Suggestion], list[int]]:
    """Suggestions for one checked statement (see check_statement for `field`)."""
    cost_before, _ = await plan_as_role(ctx, parsed.sql, parsed.param_count, field)
    candidates, stats, reltuples, oids = await candidates_for(ctx, parsed, resolution)
    if not candidates:
        return [], oids
    return await evaluate(ctx, parsed.sql, parsed.param_count, candidates, stats, reltuples, cost_before), oids


# -- the three sources ---------------------------------------------------------------------------


async def from_sql(ctx: _Context, sql: str) -> tuple[list[Suggestion], list[int]]:
    parsed = vet(sql)
    resolution = await check_statement(ctx, parsed, field="sql")
    await read_only(ctx)
    return await advise_statement(ctx, parsed, resolution, field="sql")


async def checked_statements(
    ctx: _Context, statements: Sequence[slow_queries.SlowQuery]
) -> list[tuple[slow_queries.SlowQuery, ParsedQuery, catalog_policy.Resolution]]:
    """The recorded statements that pass both policy layers (the others are skipped, and logged)."""
    out = []
    for stmt in statements:
        try:
            parsed = parse_select(stmt.query)
            out.append((stmt, parsed, await check_statement(ctx, parsed)))
        except (Rejected, asyncpg.PostgresError) as exc:
            _log.info(
                "recorded statement skipped",
                extra={
                    "fields": {"db.statement.fingerprint": statement_fingerprint(stmt.query), "error.type": type(exc).__name__}
                },
            )
    return out


async def _savepoint(ctx: _Context, step: Callable[[], Awaitable[T]]) -> T | None:
    """Run one statement's step in a savepoint: a failure skips that statement, nothing else."""
    await ctx.conn.execute(f"SAVEPOINT {TAG} advice", timeout=deadline.remaining())
    try:
        result = await step()
    except (Rejected, asyncpg.PostgresError) as exc:
        _log.info("recorded statement skipped", extra={"fields": {"error.type": type(exc).__name__}})
        await ctx.conn.execute(f"ROLLBACK {TAG} TO SAVEPOINT advice", timeout=deadline.remaining())
        await _reset_hypopg(ctx)
        return None
    await ctx.conn.execute(f"RELEASE {TAG} SAVEPOINT advice", timeout=deadline.remaining())
    return result


def _statistics_candidates(
    rel: Relation, rows: float, stats: dict[ColumnKey, ColumnStats], indexable: set[ColumnKey], indexes: list[IndexInfo]
) -> list[Candidate]:
    candidates = []
    for (oid, column), st in stats.items():
        selectivity = st.eq_selectivity(rows)
        if oid != rel.oid or (oid, column) not in indexable or st.null_frac >= 0.5 or st.avg_width > TABLE_MODE_MAX_WIDTH:
            continue
        if selectivity > TABLE_MODE_MAX_SELECTIVITY:
            continue
        correlation = f", correlation {st.correlation:.2f}" if st.correlation is not None else ""
        c = Candidate(
            rel,
            (column,),
            (),
            selectivity,
            f"column statistics: {column} has ~{st.distinct(rows):.0f} distinct values{correlation}, so an "
            f"equality lookup keeps about {100 * selectivity:.2g}% of {rows:.0f} rows",
        )
        if covered_by(c, indexes) is None:
            candidates.append(c)
    candidates.sort(key=lambda c: (c.selectivity, c.columns))
    return candidates


async def _qualstats_query_ids(ctx: _Context, rel: Relation) -> list[int]:
    """The statements pg_qualstats saw filter `rel` (none when it is not installed)."""
    schema = await ctx.conn.fetchval(
        tagged(
            "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_qualstats'"
        ),
        timeout=deadline.remaining(),
    )
    if schema is None:
        return []
    ids = await ctx.conn.fetchval(
        tagged(
            f"SELECT array_agg(DISTINCT queryid) FROM {quote_ident(schema)}.pg_qualstats "
            "WHERE (lrelid = $1 OR rrelid = $1) AND queryid IS NOT NULL"
        ),
        rel.oid,
        timeout=deadline.remaining(),
    )
    return list(ids or [])


async def table_workload(ctx: _Context, rel: Relation) -> list[slow_queries.SlowQuery]:
    """Recorded SELECTs that may touch `rel`: the costliest ones, plus those pg_qualstats saw filter it."""
    ext = await slow_queries.extension(ctx.conn)
    found = await slow_queries.fetch(
        ctx.conn, ext, min_calls=1, min_mean_ms=0.0, order="total_time", limit=TABLE_MODE_WORKLOAD, selects_only=True
    )
    ids = await _savepoint(ctx, functools.partial(_qualstats_query_ids, ctx, rel))  # may be installed, not loaded
    known = {q.query_id for q in found}
    if ids:
        found += [
            q
            for q in await slow_queries.fetch(
                ctx.conn,
                ext,
                min_calls=1,
                min_mean_ms=0.0,
                order="total_time",
                limit=TABLE_MODE_WORKLOAD,
                selects_only=True,
                query_ids=ids,
            )
            if q.query_id not in known
        ]
    return found


async def _plan_for_table(
    ctx: _Context, parsed: ParsedQuery, res: catalog_policy.Resolution, rel: Relation
) -> tuple[float, list[Candidate]]:
    """(cost now, the statement's candidates on `rel`)."""
    cost_before, _ = await plan_as_role(ctx, parsed.sql, parsed.param_count)
    candidates, _, _, _ = await candidates_for(ctx, parsed, res)
    return cost_before, [c for c in candidates if c.relation.oid == rel.oid]


async def from_table(ctx: _Context, raw_table: str) -> tuple[list[Suggestion], list[int]]:
    rel, _ = await resolve_table(ctx.conn, raw_table)
    _, _, reltuples = await load_relations(ctx.conn, [rel.oid])
    rows = reltuples.get(rel.oid, 0.0)
    stats, indexable = await load_stats(ctx.conn, [rel.oid])
    indexes = await load_indexes(ctx.conn, [rel.oid])
    touching = [
        (stmt, parsed, res)
        for stmt, parsed, res in await checked_statements(ctx, await table_workload(ctx, rel))
        if rel.oid in res.relation_oids.values()
    ]
    await read_only(ctx)
    if not touching:
        return _statistics_only(rel, rows, stats, indexable, indexes), [rel.oid]
    merged: dict[tuple[int, tuple[str, ...]], Suggestion] = {}
    threshold = ctx.settings.hypopg_min_cost_reduction
    for stmt, parsed, res in touching:
        planned = await _savepoint(ctx, functools.partial(_plan_for_table, ctx, parsed, res, rel))
        if planned is None:
            continue
        cost_before, candidates = planned
        for c in candidates:
            if ctx.hypopg_schema is None:
                if heuristic_keep(c, rows):
                    merged.setdefault(c.key, Suggestion(c, size_bytes=estimate_index_bytes(c, stats, rows))).queries.append(
                        stmt.shown.text
                    )
                continue
            measured = await _savepoint(ctx, functools.partial(_measure, ctx, parsed.sql, parsed.param_count, c))
            if measured is None:
                continue
            cost_after, size, used = measured
            if not used or cost_before <= 0 or 1.0 - cost_after / cost_before < threshold:
                continue
            s = merged.setdefault(c.key, Suggestion(c, size_bytes=size, validated=True))
            s.cost_before += cost_before * stmt.calls
            s.cost_after += cost_after * stmt.calls
            s.saved_cost += (cost_before - cost_after) * stmt.calls
            s.queries.append(stmt.shown.text)
    if ctx.hypopg_schema is None:
        for s in merged.values():
            s.reason = f"{s.candidate.reason}; used by {len(s.queries)} recorded statement(s); not validated (no HypoPG)"
        return sorted(merged.values(), key=lambda s: (-len(s.queries), s.candidate.columns)), [rel.oid]
    ranked = sorted(merged.values(), key=lambda s: (-s.saved_cost, len(s.candidate.columns), s.candidate.columns))
    for s in ranked:
        s.reason = (
            f"{s.candidate.reason}; HypoPG: {len(s.queries)} recorded statement(s) filtering "
            f"{rel.qualified} would save planner cost {s.saved_cost:.0f} in total (cost x calls, "
            f"{100 * s.reduction:.0f}% lower)"
        )
    return ranked, [rel.oid]


def _statistics_only(
    rel: Relation, rows: float, stats: dict[ColumnKey, ColumnStats], indexable: set[ColumnKey], indexes: list[IndexInfo]
) -> list[Suggestion]:
    """No recorded statement touches the table: candidates from its statistics, unvalidated and last."""
    return [
        Suggestion(
            c,
            size_bytes=estimate_index_bytes(c, stats, rows),
            reason=f"{c.reason}; not validated: no recorded statement filters {rel.qualified} "
            f"(pg_stat_statements), so this comes from column statistics alone",
        )
        for c in _statistics_candidates(rel, rows, stats, indexable, indexes)
    ]


async def from_slow_queries(ctx: _Context) -> tuple[list[Suggestion], list[int] | None]:
    ext = await slow_queries.extension(ctx.conn)
    statements = await slow_queries.fetch(
        ctx.conn, ext, min_calls=1, min_mean_ms=0.0, order="total_time", limit=ctx.settings.slow_query_sample, selects_only=True
    )
    checked = await checked_statements(ctx, statements)
    await read_only(ctx)
    merged: dict[tuple[int, tuple[str, ...]], Suggestion] = {}
    for stmt, parsed, resolution in checked:
        advised = await _savepoint(ctx, functools.partial(advise_statement, ctx, parsed, resolution))
        if advised is None:
            continue
        found, _ = advised
        for s in found:
            s.queries = [stmt.shown.text]
            current = merged.get(s.candidate.key)
            if current is None:
                merged[s.candidate.key] = s
            else:
                current.queries.append(stmt.shown.text)
                if s.reduction > current.reduction:
                    s.queries = current.queries
                    merged[s.candidate.key] = s
    return list(merged.values()), None


# -- entry point ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def dedicated_connection(runtime: RuntimeSettings) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own, closed afterwards, so hypothetical indexes cannot outlive the call."""
    try:
        conn = await asyncpg.connect(
            runtime.database_url,
            timeout=deadline.remaining(runtime.db_connect_timeout_seconds),
            server_settings={"application_name": "rentscout-analyzer-hypopg"},
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unavailable(f"cannot open a dedicated database connection for HypoPG ({type(exc).__name__})") from None
    try:
        yield conn
    finally:
        try:
            await conn.close(timeout=5)
        except (OSError, TimeoutError, asyncpg.InterfaceError):
            conn.terminate()


def _method(hypopg: str | None, installable: bool, threshold: float) -> str:
    if hypopg is not None:
        return f"hypopg (hypothetical indexes kept when they cut the planner's cost by at least {100 * threshold:.0f}%)"
    why = "HypoPG not installed: CREATE EXTENSION hypopg" if installable else "HypoPG not available on this server"
    return f"statistics heuristic ({why})"


async def suggest(
    db: Database,
    runtime: RuntimeSettings,
    settings: AnalyzerSettings,
    *,
    table: str | None = None,
    sql: str | None = None,
    from_slow: bool = False,
    limit: int = 10,
) -> Advice:
    """Always on a dedicated connection: neither hypothetical indexes nor the PREPAREd statements of
    generic plans can then be left behind on a pooled connection."""
    if sql is not None:
        vet(sql)  # refuse bad statements before opening any connection
    async with dedicated_connection(runtime) as conn:
        schema, installable = await hypopg_schema(conn)
        ctx = _Context(conn, settings, schema)
        async with session.transaction(conn, settings, as_role=False):
            await conn.execute(f"SET LOCAL {TAG} plan_cache_mode = force_generic_plan", timeout=deadline.remaining())
            await _reset_hypopg(ctx)  # starts with no hypothetical index, whatever the connection saw
            suggestions: list[Suggestion]
            scope: list[int] | None  # the tables whose indexes to review; None: every table
            try:
                if table is not None:
                    suggestions, scope = await from_table(ctx, table)
                elif sql is not None:
                    suggestions, scope = await from_sql(ctx, sql)
                else:
                    suggestions, scope = await from_slow_queries(ctx)
                issues = index_issues(await load_indexes(conn, scope), await stats_reset(conn))
            finally:
                with contextlib.suppress(asyncpg.InFailedSQLTransactionError):
                    await _reset_hypopg(ctx)
    if table is None:  # table mode comes ranked by the cost it saves over the workload
        suggestions.sort(key=lambda s: (not s.validated, -s.reduction, s.candidate.selectivity, s.candidate.columns))
    suggestions = suggestions[:limit]
    for s in suggestions:
        metrics.INDEX_SUGGESTIONS.labels(str(s.validated).lower()).inc()
    for issue in issues:
        metrics.INDEX_ISSUES.labels(issue.kind.lower()).inc()
    return Advice(suggestions, schema is not None, _method(schema, installable, settings.hypopg_min_cost_reduction), issues)
