"""ListSlowQueries: the costliest statements of this database from pg_stat_statements.

Column names depend on the extension's version (1.8, PostgreSQL 13, split `total_time` into
planning and execution: `total_exec_time` ...), so the query is built from the installed version.
The analyzer's own statements carry the `rentscout-analyzer` tag and are left out, as is the one
untaggable statement HypoPG runs internally.

pg_stat_statements keeps utility statements verbatim (`CREATE ROLE ... PASSWORD '...'`) and every
text is read with the service's privileges, so a text leaves only as `sqltext.shown_statement` allows
(`SlowQuery.shown`): plannable statements without comments or quoted constants, others withheld.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from rentscout.analyzer_service.sqltext import TAG_TEXT, Shown, quote_ident, shown_statement, tagged
from rentscout.runtime import deadline
from rentscout.runtime.errors import FailedPrecondition

MAX_QUERY_CHARS = 8000  # of a shown text
MAX_SCANNED_CHARS = 100_000  # longer recorded texts are withheld (only this much is read and scanned)
ORDERS = ("total_time", "mean_time", "calls", "max_time", "temp_blocks")
HYPOPG_INTERNAL = "SELECT max(oid) FROM pg_catalog.pg_class WHERE oid < $1"
PRELOAD_FIX = (
    "add pg_stat_statements to shared_preload_libraries in postgresql.conf and restart PostgreSQL (compute_query_id = on or auto)"
)


@dataclass(frozen=True)
class Extension:
    schema: str
    version: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split(".") if p.isdigit())

    @property
    def relation(self) -> str:
        return f"{quote_ident(self.schema)}.pg_stat_statements"


@dataclass
class SlowQuery:
    query_id: str
    query: str  # as recorded: for the analyzer's own use (planning), never returned as such
    calls: int
    total_time_ms: float
    mean_time_ms: float
    max_time_ms: float
    stddev_time_ms: float
    rows: int
    cache_hit_ratio: float
    temp_blks_read: int
    temp_blks_written: int
    shown: Shown = field(default_factory=lambda: Shown(""))  # what a caller may see of `query`


def shown(text: str, length: int) -> Shown:
    if length > MAX_SCANNED_CHARS:
        return Shown("", f"statement of {length} characters (longer than {MAX_SCANNED_CHARS})")
    found = shown_statement(text)
    if len(found.text) > MAX_QUERY_CHARS:
        return Shown(found.text[:MAX_QUERY_CHARS] + "…")
    return found


def time_columns(version: tuple[int, ...]) -> dict[str, str]:
    """The execution-time columns of this pg_stat_statements version."""
    suffix = "exec_time" if version >= (1, 8) else "time"
    return {name: f"{name}_{suffix}" for name in ("total", "mean", "max", "stddev")}


SELECTS_ONLY = r"AND query ~* '^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*\(?\s*(select|with|table|values)\M'"


def build_query(ext: Extension, order: str, selects_only: bool = False, by_id: bool = False) -> str:
    cols = time_columns(ext.version_tuple)
    order_expr = {
        "total_time": cols["total"],
        "mean_time": cols["mean"],
        "calls": "calls",
        "max_time": cols["max"],
        "temp_blocks": "(temp_blks_read + temp_blks_written)",
    }[order]
    return tagged(f"""
SELECT queryid::text AS query_id, pg_catalog.left(query, {MAX_SCANNED_CHARS}) AS query,
       pg_catalog.length(query) AS query_length, calls, {cols["total"]} AS total_ms, {cols["mean"]} AS mean_ms,
       {cols["max"]} AS max_ms, {cols["stddev"]} AS stddev_ms, rows, shared_blks_hit, shared_blks_read,
       temp_blks_read, temp_blks_written
FROM {ext.relation}
WHERE dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  AND strpos(query, '{TAG_TEXT}') = 0
  AND query <> '{HYPOPG_INTERNAL}'
  AND calls >= $1 AND {cols["mean"]} >= $2 {SELECTS_ONLY if selects_only else ""}
  {"AND queryid = ANY ($4::int8[])" if by_id else ""}
ORDER BY {order_expr} DESC NULLS LAST, queryid
LIMIT $3""")


async def extension(conn: asyncpg.Connection) -> Extension:
    """Where pg_stat_statements is installed; FAILED_PRECONDITION (with the fix) when it is not."""
    row = await conn.fetchrow(
        tagged(
            "SELECT n.nspname AS schema, e.extversion AS version FROM pg_catalog.pg_extension e "
            "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'"
        ),
        timeout=deadline.remaining(),
    )
    if row is not None:
        return Extension(row["schema"], row["version"])
    available = await conn.fetchval(
        tagged("SELECT count(*) > 0 FROM pg_catalog.pg_available_extensions WHERE name = 'pg_stat_statements'"),
        timeout=deadline.remaining(),
    )
    if available:
        raise FailedPrecondition(
            "pg_stat_statements is not installed in this database: run "
            "CREATE EXTENSION pg_stat_statements (rentscout db migrate does it when permitted) and "
            f"{PRELOAD_FIX}"
        )
    raise FailedPrecondition(
        "pg_stat_statements is not available on this server: install the PostgreSQL contrib "
        f"package, then CREATE EXTENSION pg_stat_statements and {PRELOAD_FIX}"
    )


def _hit_ratio(hit: int, read: int) -> float:
    """Shared-buffer hit ratio; 1.0 when the statement read no blocks at all (nothing missed)."""
    return hit / (hit + read) if hit + read > 0 else 1.0


async def fetch(
    conn: asyncpg.Connection,
    ext: Extension,
    *,
    min_calls: int,
    min_mean_ms: float,
    order: str,
    limit: int,
    selects_only: bool = False,
    query_ids: list[int] | None = None,
) -> list[SlowQuery]:
    """The top `limit` statements by `order`; with `query_ids`, only those statements."""
    args: list[object] = [min_calls, min_mean_ms, limit] + ([query_ids] if query_ids is not None else [])
    try:
        rows = await conn.fetch(build_query(ext, order, selects_only, query_ids is not None), *args, timeout=deadline.remaining())
    except asyncpg.ObjectNotInPrerequisiteStateError:
        raise FailedPrecondition(f"pg_stat_statements is installed but not loaded: {PRELOAD_FIX}") from None
    except asyncpg.InsufficientPrivilegeError:
        raise FailedPrecondition(
            "the service's database user may not read pg_stat_statements: GRANT pg_read_all_stats TO it"
        ) from None
    out = []
    for r in rows:
        text = r["query"] or ""
        out.append(
            SlowQuery(
                query_id=r["query_id"] or "",
                query=text,
                shown=shown(text, r["query_length"] or 0),
                calls=r["calls"],
                total_time_ms=r["total_ms"] or 0.0,
                mean_time_ms=r["mean_ms"] or 0.0,
                max_time_ms=r["max_ms"] or 0.0,
                stddev_time_ms=r["stddev_ms"] or 0.0,
                rows=r["rows"],
                cache_hit_ratio=_hit_ratio(r["shared_blks_hit"], r["shared_blks_read"]),
                temp_blks_read=r["temp_blks_read"],
                temp_blks_written=r["temp_blks_written"],
            )
        )
    return out


async def list_slow_queries(
    conn: asyncpg.Connection, *, min_calls: int, min_mean_ms: float, order: str, limit: int
) -> tuple[Extension, list[SlowQuery]]:
    ext = await extension(conn)
    return ext, await fetch(conn, ext, min_calls=min_calls, min_mean_ms=min_mean_ms, order=order, limit=limit)
