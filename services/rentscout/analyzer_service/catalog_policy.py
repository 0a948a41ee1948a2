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

# Candidates by name (index scans on proname / oprname); which of them the statement can reach
# (its search_path, or the schema it names) is decided in Python from `visible` and `ref_schema`.
# Operators in pg_catalog are all built-in and immutable, so only the others are looked at. An
# aggregate runs its support functions (transition, final ...), which are checked in its stead too:
# a user-defined aggregate itself looks like an immutable internal function.
_AGGREGATE_SUPPORT = """
    SELECT s.fn FROM pg_catalog.pg_aggregate g
    CROSS JOIN LATERAL unnest(ARRAY[g.aggtransfn, g.aggfinalfn, g.aggcombinefn, g.aggserialfn, g.aggdeserialfn,
                                    g.aggmtransfn, g.aggminvtransfn, g.aggmfinalfn]::oid[]) AS s(fn)
    WHERE g.aggfnoid = {fn} AND s.fn <> 0"""

_FUNCTIONS_SQL = tagged(f"""
WITH named AS (
    SELECT p.oid AS fn, n.nspname AS ref_schema, p.proname::text AS ref,
           n.nspname = ANY (pg_catalog.current_schemas(true)) AS visible
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE p.proname = ANY ($1::text[])
  UNION ALL
    SELECT o.oprcode::oid, n.nspname, '#' || o.oprname, n.nspname = ANY (pg_catalog.current_schemas(true))
    FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
    WHERE o.oprname = ANY ($2::text[]) AND o.oprnamespace <> 'pg_catalog'::pg_catalog.regnamespace
  UNION ALL
    -- explicit casts to types outside pg_catalog: their cast functions and their domains' CHECKs
    SELECT fn.oid, tn.nspname, '%' || t.typname, true
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
    CROSS JOIN LATERAL (
        SELECT c.castfunc::oid AS oid FROM pg_catalog.pg_cast c WHERE c.casttarget = t.oid AND c.castfunc <> 0
      UNION ALL
        SELECT d.refobjid FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid = k.oid
             AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
        WHERE k.contypid = t.oid) AS fn
    WHERE t.typname = ANY ($3::text[]) AND t.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace
), called AS (
    SELECT fn, ref_schema, ref, visible FROM named
  UNION ALL
    SELECT support.fn, named.ref_schema, named.ref, named.visible
    FROM named CROSS JOIN LATERAL ({_AGGREGATE_SUPPORT.format(fn="named.fn")}) AS support
)
SELECT f.schema, f.name, f.volatility, f.language, c.visible, c.ref, c.ref_schema
FROM called c
CROSS JOIN LATERAL (
    SELECT n.nspname AS schema, p.proname AS name, p.provolatile::text AS volatility, l.lanname AS language
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_catalog.pg_language l ON l.oid = p.prolang
    WHERE p.oid = c.fn) AS f
""")

_RELATIONS_SQL = tagged("""
SELECT r.i AS i, c.oid, c.relkind::text AS relkind
FROM unnest($1::text[]) WITH ORDINALITY AS r(name, i)
JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(r.name)
""")

# Functions (directly or through operators) used by the rewrite rules of the views a statement
# reads, following views of views; materialized views are not expanded (they are not re-run).
_VIEW_FUNCTIONS_SQL = tagged(f"""
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
), called AS (
    SELECT fn FROM used
  UNION
    SELECT support.fn FROM used CROSS JOIN LATERAL ({_AGGREGATE_SUPPORT.format(fn="used.fn")}) AS support
)
SELECT DISTINCT n.nspname AS schema, p.proname AS name, p.provolatile::text AS volatility, l.lanname AS language
FROM called u
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


async def resolve_relations(conn: asyncpg.Connection, parsed: ParsedQuery) -> dict[tuple[str | None, str], tuple[int, str]]:
    """(schema or None, name) as written -> (oid, relkind) of what it resolves to."""
    keys = sorted({(r.schema, r.name) for r in parsed.relations}, key=lambda k: (k[0] or "", k[1]))
    if not keys:
        return {}
    names = [f"{quote_ident(s)}.{quote_ident(n)}" if s else quote_ident(n) for s, n in keys]
    rows = await conn.fetch(_RELATIONS_SQL, names, timeout=deadline.remaining())
    return {keys[r["i"] - 1]: (r["oid"], r["relkind"]) for r in rows}


def reachable(row: asyncpg.Record, parsed: ParsedQuery) -> bool:
    """Whether a candidate function or operator row is one the statement could actually call."""
    ref: str = row["ref"]
    schema: str = row["ref_schema"]
    if ref.startswith("#"):  # an operator
        return any(o.name == ref[1:] and (o.schema == schema if o.schema else row["visible"]) for o in parsed.operators)
    if ref.startswith("%"):  # a cast target type (any schema when unqualified: conservative)
        return any(c.name == ref[1:] and (c.schema == schema if c.schema else True) for c in parsed.casts)
    return any(f.name == ref and (f.schema == schema if f.schema else row["visible"]) for f in parsed.functions)


async def enforce(conn: asyncpg.Connection, parsed: ParsedQuery, trusted_schemas: frozenset[str]) -> Resolution:
    """Raise Rejected when a function the statement could call is not allowed."""
    names = sorted({f.name for f in parsed.functions})
    operators = sorted({o.name for o in parsed.operators})
    casts = sorted({c.name for c in parsed.casts})
    rows = await conn.fetch(_FUNCTIONS_SQL, names, operators, casts, timeout=deadline.remaining())
    infos = [_as_info(r) for r in rows if reachable(r, parsed)]
    resolved = await resolve_relations(conn, parsed)
    views = [oid for oid, relkind in resolved.values() if relkind == "v"]
    if views:
        infos += [_as_info(r) for r in await conn.fetch(_VIEW_FUNCTIONS_SQL, views, timeout=deadline.remaining())]
    for info in sorted(set(infos), key=lambda i: (i.schema, i.name)):
        if (problem := function_verdict(info, trusted_schemas)) is not None:
            raise Rejected("function:catalog", f"would call {problem}")
    return Resolution(relation_oids={key: oid for key, (oid, _) in resolved.items()})
