"""Layer 2 of the safety policy (see `safety`): resolve what a statement would call through the catalog.

Runs on the analyzing connection inside its read-only transaction, before EXPLAIN, so the
resolution sees the same search_path and the same catalog snapshot as the statement itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from rentscout.analyzer_service.safety import FunctionInfo, ParsedQuery, Rejected, function_verdict
from rentscout.analyzer_service.sqltext import quote_ident, tagged
from rentscout.runtime import deadline

_FUNCTIONS_SQL = tagged("""
SELECT n.nspname AS schema, p.proname AS name, p.provolatile::text AS volatility, l.lanname AS language
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
JOIN unnest($1::text[], $2::text[]) AS f(schema, name) ON p.proname = f.name
WHERE CASE WHEN f.schema = '' THEN n.nspname = ANY (pg_catalog.current_schemas(true)) ELSE n.nspname = f.schema END
UNION
SELECT pn.nspname, p.proname, p.provolatile::text, l.lanname
FROM pg_catalog.pg_operator o
JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
JOIN unnest($3::text[], $4::text[]) AS op(schema, name) ON o.oprname = op.name
WHERE CASE WHEN op.schema = '' THEN n.nspname = ANY (pg_catalog.current_schemas(true)) ELSE n.nspname = op.schema END
""")

_RELATIONS_SQL = tagged("""
SELECT r.i AS i, pg_catalog.to_regclass(r.name)::oid AS oid
FROM unnest($1::text[]) WITH ORDINALITY AS r(name, i)
""")

# Functions (directly or through operators) used by the rewrite rules of the views a statement
# reads, following views of views; materialized views are not expanded (they are not re-run).
_VIEW_FUNCTIONS_SQL = tagged("""
WITH RECURSIVE views(oid) AS (
    SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid = ANY ($1::oid[]) AND c.relkind = 'v'
  UNION
    SELECT c.oid
    FROM views v
    JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
    JOIN pg_catalog.pg_class c ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = d.refobjid
    WHERE c.relkind = 'v' AND c.oid <> v.oid
), used AS (
    SELECT CASE WHEN d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass THEN d.refobjid
                ELSE (SELECT o.oprcode::oid FROM pg_catalog.pg_operator o WHERE o.oid = d.refobjid) END AS fn
    FROM views v
    JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
    WHERE d.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_operator'::pg_catalog.regclass)
)
SELECT DISTINCT n.nspname AS schema, p.proname AS name, p.provolatile::text AS volatility, l.lanname AS language
FROM used u
JOIN pg_catalog.pg_proc p ON p.oid = u.fn
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
""")


@dataclass
class Resolution:
    """What the catalog check learned: the relations the statement names, by OID."""

    relation_oids: dict[tuple[str | None, str], int]


def _as_info(row: asyncpg.Record) -> FunctionInfo:
    return FunctionInfo(row["schema"], row["name"], row["volatility"], row["language"])


async def resolve_relations(conn: asyncpg.Connection, parsed: ParsedQuery) -> dict[tuple[str | None, str], int]:
    keys = sorted({(r.schema, r.name) for r in parsed.relations}, key=lambda k: (k[0] or "", k[1]))
    if not keys:
        return {}
    names = [f"{quote_ident(s)}.{quote_ident(n)}" if s else quote_ident(n) for s, n in keys]
    rows = await conn.fetch(_RELATIONS_SQL, names, timeout=deadline.remaining())
    return {keys[r["i"] - 1]: r["oid"] for r in rows if r["oid"] is not None}


async def enforce(conn: asyncpg.Connection, parsed: ParsedQuery, trusted_schemas: frozenset[str]) -> Resolution:
    """Raise Rejected when a function the statement could call is not allowed."""
    fn_schemas = [f.schema or "" for f in parsed.functions]
    fn_names = [f.name for f in parsed.functions]
    op_schemas = [o.schema or "" for o in parsed.operators]
    op_names = [o.name for o in parsed.operators]
    infos = [_as_info(r) for r in await conn.fetch(
        _FUNCTIONS_SQL, fn_schemas, fn_names, op_schemas, op_names, timeout=deadline.remaining())]
    oids = await resolve_relations(conn, parsed)
    if oids:
        infos += [_as_info(r) for r in await conn.fetch(_VIEW_FUNCTIONS_SQL, list(oids.values()),
                                                         timeout=deadline.remaining())]
    for info in sorted(set(infos), key=lambda i: (i.schema, i.name)):
        if (problem := function_verdict(info, trusted_schemas)) is not None:
            raise Rejected("function:catalog", f"would call {problem}")
    return Resolution(relation_oids=oids)
