"""GetTableStats: sizes, dead rows, bloat, scans, maintenance history and what to do about them.

Bloat is estimated from pg_stats the way the well-known ioguix / PgExperts query does (expected
pages from average row width, fill factor and reltuples, against the pages the table occupies);
with `exact_bloat` and pgstattuple installed, pgstattuple_approx measures it instead (it reads the
pages not marked all-visible). Recommendations have floors (minimum dead rows, minimum bloat bytes,
minimum modifications) so that small tables never raise alarms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from rentscout.analyzer_service.insights import CRITICAL, INFO, WARNING, TableHealth, staleness
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.analyzer_service.sqltext import quote_ident, tagged
from rentscout.analyzer_service.tables import resolve_table
from rentscout.runtime import deadline
from rentscout.runtime.database import Database

ESTIMATE, PGSTATTUPLE_APPROX = "ESTIMATE", "PGSTATTUPLE_APPROX"

_STATS_SQL = tagged("""
SELECT c.reltuples::float8 AS reltuples, c.relpages::int8 AS relpages,
       coalesce(s.n_live_tup, 0) AS n_live_tup, coalesce(s.n_dead_tup, 0) AS n_dead_tup,
       coalesce(s.seq_scan, 0) AS seq_scan, coalesce(s.idx_scan, 0) AS idx_scan,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       coalesce(s.n_mod_since_analyze, 0) AS n_mod_since_analyze,
       pg_catalog.pg_relation_size(c.oid) AS table_bytes, pg_catalog.pg_indexes_size(c.oid) AS index_bytes,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_catalog.pg_total_relation_size(c.reltoastrelid) ELSE 0 END AS toast_bytes,
       pg_catalog.pg_total_relation_size(c.oid) AS total_bytes,
       coalesce(substring(array_to_string(c.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::int, 100) AS fillfactor
FROM pg_catalog.pg_class c
LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
WHERE c.oid = $1
""")

# The ioguix table-bloat estimate, for one table (MAXALIGN 8, 64-bit servers).
_BLOAT_ESTIMATE_SQL = tagged("""
WITH t AS (
    SELECT tbl.reltuples::numeric AS reltuples, tbl.relpages::numeric AS heappages,
           coalesce(toast.relpages, 0)::numeric AS toastpages, coalesce(toast.reltuples, 0)::numeric AS toasttuples,
           coalesce(substring(array_to_string(tbl.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::int, 100) AS fillfactor,
           current_setting('block_size')::numeric AS bs, 24 AS page_hdr, 8 AS ma,
           23 + CASE WHEN max(coalesce(s.null_frac, 0)) > 0 THEN (7 + count(s.attname)::int) / 8 ELSE 0 END AS tpl_hdr_size,
           sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0)) AS tpl_data_size,
           count(*) <> count(s.attname) AS missing_stats
    FROM pg_catalog.pg_attribute att
    JOIN pg_catalog.pg_class tbl ON tbl.oid = att.attrelid
    JOIN pg_catalog.pg_namespace ns ON ns.oid = tbl.relnamespace
    LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = ns.nspname AND s.tablename = tbl.relname
         AND s.attname = att.attname AND NOT s.inherited
    LEFT JOIN pg_catalog.pg_class toast ON toast.oid = tbl.reltoastrelid
    WHERE tbl.oid = $1 AND att.attnum > 0 AND NOT att.attisdropped
    GROUP BY tbl.reltuples, tbl.relpages, toast.relpages, toast.reltuples, tbl.reloptions
), sized AS (
    SELECT t.*, (4 + tpl_hdr_size + tpl_data_size + (2 * ma)
                 - CASE WHEN tpl_hdr_size % ma = 0 THEN ma ELSE tpl_hdr_size % ma END
                 - CASE WHEN ceil(tpl_data_size)::int % ma = 0 THEN ma ELSE ceil(tpl_data_size)::int % ma END
                ) AS tpl_size
    FROM t
)
SELECT (heappages + toastpages) * bs AS real_bytes,
       (ceil(reltuples / ((bs - page_hdr) * fillfactor / (tpl_size * 100))) + ceil(toasttuples / 4)) * bs AS expected_bytes,
       missing_stats OR reltuples < 0 OR tpl_data_size IS NULL AS unknown
FROM sized
""")


@dataclass
class Recommendation:
    action: str  # VACUUM, ANALYZE, REWRITE
    severity: str
    reason: str
    statement: str


@dataclass
class TableStats:
    table: str
    live_rows: int = 0
    dead_rows: int = 0
    table_bytes: int = 0
    index_bytes: int = 0
    toast_bytes: int = 0
    total_bytes: int = 0
    bloat_bytes: int = 0
    bloat_ratio: float = 0.0
    bloat_method: str = ESTIMATE
    bloat_known: bool = True
    seq_scans: int = 0
    idx_scans: int = 0
    last_vacuum: datetime | None = None
    last_autovacuum: datetime | None = None
    last_analyze: datetime | None = None
    last_autoanalyze: datetime | None = None
    modifications_since_analyze: int = 0
    reltuples: float = -1.0
    recommendations: list[Recommendation] = field(default_factory=list)

    @property
    def dead_ratio(self) -> float:
        total = self.live_rows + self.dead_rows
        return self.dead_rows / total if total else 0.0


def _mib(n: float) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def recommend(s: TableStats, schema: str, name: str, settings: AnalyzerSettings) -> list[Recommendation]:
    """VACUUM / ANALYZE / REWRITE advice, each above its floor."""
    target = f"{quote_ident(schema)}.{quote_ident(name)}"
    out: list[Recommendation] = []
    vacuum_due = s.dead_rows >= max(settings.vacuum_min_dead_rows, 1) and s.dead_ratio >= settings.vacuum_dead_ratio
    if vacuum_due:
        last = max(filter(None, (s.last_vacuum, s.last_autovacuum)), default=None)
        severity = CRITICAL if s.dead_ratio >= 0.5 else WARNING
        out.append(
            Recommendation(
                "VACUUM",
                severity,
                (
                    f"{s.dead_rows} dead rows ({100 * s.dead_ratio:.0f}% of the table) waste space and slow scans; last vacuum: "
                    f"{last.isoformat() if last else 'never'} (is autovacuum keeping up, or disabled for this table?)"
                ),
                f"VACUUM (ANALYZE) {target};",
            )
        )
    health = TableHealth(
        schema, name, s.reltuples, 0, s.live_rows, s.modifications_since_analyze, s.last_analyze, s.last_autoanalyze
    )
    verdict = staleness(health, min_modifications=settings.analyze_min_modifications)
    if verdict is not None:
        severity, reason = verdict
        out.append(
            Recommendation(
                "ANALYZE",
                severity,
                f"{reason}: the planner works from outdated row counts and value distributions",
                f"ANALYZE {target};",
            )
        )
    if s.bloat_known and s.bloat_bytes >= settings.rewrite_min_bloat_bytes and s.bloat_ratio >= settings.rewrite_bloat_ratio:
        how = "measured by pgstattuple_approx" if s.bloat_method == PGSTATTUPLE_APPROX else "estimated from pg_stats"
        if vacuum_due:
            severity, advice = INFO, "VACUUM first; if the space is still not returned to the operating system, rewrite"
        else:
            severity = CRITICAL if s.bloat_ratio >= 0.6 else WARNING
            advice = "VACUUM only makes this space reusable inside the table; a rewrite returns it"
        out.append(
            Recommendation(
                "REWRITE",
                severity,
                (
                    f"about {_mib(s.bloat_bytes)} ({100 * s.bloat_ratio:.0f}%) of the table is free space ({how}); {advice}. "
                    f"VACUUM FULL locks the table (ACCESS EXCLUSIVE) while it runs; pg_repack rewrites it online"
                ),
                f"VACUUM (FULL, ANALYZE) {target};",
            )
        )
    return out


async def _estimate(conn: asyncpg.Connection, oid: int) -> tuple[int, float, bool]:
    row = await conn.fetchrow(_BLOAT_ESTIMATE_SQL, oid, timeout=deadline.remaining())
    if row is None or row["unknown"] or row["real_bytes"] is None or row["expected_bytes"] is None:
        return 0, 0.0, False
    real, expected = float(row["real_bytes"]), float(row["expected_bytes"])
    bloat = max(0.0, real - expected)
    return int(bloat), (bloat / real if real > 0 else 0.0), True


async def _pgstattuple_schema(conn: asyncpg.Connection) -> str | None:
    schema: str | None = await conn.fetchval(
        tagged(
            "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pgstattuple'"
        ),
        timeout=deadline.remaining(),
    )
    return schema


async def _exact(conn: asyncpg.Connection, oid: int, fillfactor: int) -> tuple[int, float] | None:
    """Bloat from pgstattuple_approx: dead tuples + free space beyond what the fill factor reserves."""
    schema = await _pgstattuple_schema(conn)
    if schema is None:
        return None
    try:
        async with conn.transaction():  # a savepoint when nested: a refusal must not abort the caller's work
            row = await conn.fetchrow(
                f"SELECT * FROM {quote_ident(schema)}.pgstattuple_approx($1::oid::regclass)", oid, timeout=deadline.remaining()
            )
    except (asyncpg.InsufficientPrivilegeError, asyncpg.FeatureNotSupportedError, asyncpg.WrongObjectTypeError):
        return None
    assert row is not None  # pgstattuple_approx returns exactly one row
    table_len = float(row["table_len"])
    reserved = table_len * (100 - fillfactor) / 100.0
    bloat = max(0.0, float(row["dead_tuple_len"]) + float(row["approx_free_space"]) - reserved)
    return int(bloat), (bloat / table_len if table_len > 0 else 0.0)


async def get_table_stats(db: Database, settings: AnalyzerSettings, raw_table: str, exact_bloat: bool) -> TableStats:
    async with db.connection() as conn:
        rel, relkind = await resolve_table(conn, raw_table)
        row = await conn.fetchrow(_STATS_SQL, rel.oid, timeout=deadline.remaining())
        assert row is not None  # resolve_table just found this oid in pg_class (only a concurrent DROP loses it)
        stats = TableStats(
            table=rel.display,
            live_rows=row["n_live_tup"],
            dead_rows=row["n_dead_tup"],
            table_bytes=row["table_bytes"],
            index_bytes=row["index_bytes"],
            toast_bytes=row["toast_bytes"],
            total_bytes=row["total_bytes"],
            seq_scans=row["seq_scan"],
            idx_scans=row["idx_scan"],
            last_vacuum=row["last_vacuum"],
            last_autovacuum=row["last_autovacuum"],
            last_analyze=row["last_analyze"],
            last_autoanalyze=row["last_autoanalyze"],
            modifications_since_analyze=row["n_mod_since_analyze"],
            reltuples=row["reltuples"],
        )
        measured = await _exact(conn, rel.oid, row["fillfactor"]) if exact_bloat and relkind != "p" else None
        if measured is not None:
            stats.bloat_bytes, stats.bloat_ratio = measured
            stats.bloat_method = PGSTATTUPLE_APPROX
        else:
            stats.bloat_bytes, stats.bloat_ratio, stats.bloat_known = await _estimate(conn, rel.oid)
    stats.bloat_ratio = 0.0 if math.isnan(stats.bloat_ratio) else stats.bloat_ratio
    stats.recommendations = recommend(stats, rel.schema, rel.name, settings)
    return stats
