"""Layer 2 of the safety policy (see `safety`): what a statement would run, as PostgreSQL resolved it.

Runs on the analyzing connection inside the statement's own transaction, as the role the statement
runs as and before anything executes, so the resolution sees the same search_path and catalog.
Layer 1 (the privilege of that role) is the boundary; this refuses what privilege alone allows but
the analyzer does not want: volatile functions, functions that run SQL text, SECURITY DEFINER ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from rentscout.analyzer_service import session
from rentscout.analyzer_service.insights import TableHealth
from rentscout.analyzer_service.safety import FunctionInfo, ParsedQuery, Rejected, function_verdict
from rentscout.analyzer_service.session import RESTORE_SETTINGS_SQL
from rentscout.analyzer_service.sqltext import TAG, quote_ident, tagged
from rentscout.runtime import deadline
from rentscout.runtime.errors import FailedPrecondition

# An aggregate runs its support functions (transition, final ...), which are checked in its stead:
# a user-defined aggregate itself looks like an immutable internal function.
_AGGREGATE_SUPPORT = """
    SELECT s.fn FROM pg_catalog.pg_aggregate g
    CROSS JOIN LATERAL unnest(ARRAY[g.aggtransfn, g.aggfinalfn, g.aggcombinefn, g.aggserialfn, g.aggdeserialfn,
                                    g.aggmtransfn, g.aggminvtransfn, g.aggmfinalfn]::oid[]) AS s(fn)
    WHERE g.aggfnoid = {fn} AND s.fn <> 0"""

PROBE = "rentscout_probe"

# Everything a statement runs, as PostgreSQL resolved it. The probe is a SQL-standard function whose
# body is the caller's statement (created in pg_temp inside the rolled-back transaction):
# pg_proc.prosqlbody then holds the statement's analysed query tree, in which every call is a node
# naming the OID PostgreSQL bound, whatever the syntax (calls, attribute notation t.f, operators,
# implicit and explicit casts, coercions to domains, aggregates, window functions). The closure
# reads those trees and follows what the objects they name run in turn: a function's default
# arguments and SQL body, an operator's function, an aggregate's support functions, a domain's
# CHECK constraints and base type, a user type's I/O functions, a view's rewrite rules (so views
# of views) and the row-security policies of the tables read. Node trees print OIDs as
# `:funcid 1234`; identifiers in them are escaped (a space becomes `\ `), so no text the caller
# wrote can forge or hide a field. Column defaults are not followed: a SELECT never evaluates them.
FUNCTION_FIELDS = ("funcid", "opfuncid", "aggfnoid", "winfnoid", "hashfuncid", "negfuncid")
OPERATOR_FIELDS = ("opno", "eqop", "sortop")
TYPE_FIELDS = ("resulttype", "minmaxtype", "refcontainertype", "consttype", "paramtype")
_FN = ", ".join(f"'{f}'" for f in FUNCTION_FIELDS)
_OP = ", ".join(f"'{f}'" for f in OPERATOR_FIELDS)
_TY = ", ".join(f"'{f}'" for f in TYPE_FIELDS)

# One pass over a node tree: (field, oid) rows. The text is cut at every colon, so each field starts a
# piece (`funcid 1234 ...`): its first word is the field's name, its second the OID; RowCompareExpr
# lists `opnos (o 96 97)`; a piece whose name is not followed by a number names nothing. A colon in an
# identifier cannot forge a field: the identifier's spaces are escaped (`x\ :funcid\ 1`), so its piece
# never starts with a field name, one space and a number.
# (A regular expression over the whole text did the same at about five times the cost.)
_REFS = (
    f"SELECT CASE WHEN t.f = 'opnos' THEN 'opno' ELSE t.f END AS field, "
    f"pg_catalog.unnest(pg_catalog.string_to_array(CASE WHEN t.f = 'opnos' "
    f"THEN pg_catalog.btrim(pg_catalog.substring(t.piece, '^opnos \\(o ([0-9 ]+)\\)')) "
    f"ELSE pg_catalog.substring(t.piece, '^[a-z]+ ([0-9]+)') END, ' '))::oid AS oid "
    f"FROM (SELECT pg_catalog.split_part(x.piece, ' ', 1) AS f, x.piece "
    f"FROM pg_catalog.unnest(pg_catalog.string_to_array({{body}}, ':')) AS x(piece)) AS t "
    f"WHERE t.f IN ({_FN}, {_OP}, {_TY}, 'relid', 'opnos')"
)

_CLOSURE_SQL = tagged(f"""
WITH RECURSIVE refs(field, oid) AS (
    SELECT r.field, r.oid
    FROM pg_catalog.pg_proc p CROSS JOIN LATERAL ({_REFS.format(body="p.prosqlbody::text")}) AS r
    WHERE p.proname = '{PROBE}' AND p.pronamespace = pg_catalog.pg_my_temp_schema()
  UNION
    SELECT more.field, more.oid
    FROM refs r
    CROSS JOIN LATERAL (
        SELECT p.proargdefaults::text AS body FROM pg_catalog.pg_proc p WHERE r.field IN ({_FN}) AND p.oid = r.oid
      UNION ALL
        SELECT p.prosqlbody::text FROM pg_catalog.pg_proc p WHERE r.field IN ({_FN}) AND p.oid = r.oid
      UNION ALL
        SELECT ':funcid ' || s.fn FROM ({_AGGREGATE_SUPPORT.format(fn="r.oid")}) AS s WHERE r.field IN ({_FN})
      UNION ALL
        SELECT ':funcid ' || o.oprcode::oid FROM pg_catalog.pg_operator o WHERE r.field IN ({_OP}) AND o.oid = r.oid
      UNION ALL
        SELECT w.ev_action::text FROM pg_catalog.pg_rewrite w WHERE r.field = 'relid' AND w.ev_class = r.oid
      UNION ALL
        SELECT pg_catalog.concat(pol.polqual::text, ' ', pol.polwithcheck::text)
        FROM pg_catalog.pg_policy pol JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
        WHERE r.field = 'relid' AND pol.polrelid = r.oid AND c.relrowsecurity
      UNION ALL
        SELECT k.conbin::text FROM pg_catalog.pg_constraint k WHERE r.field IN ({_TY}) AND k.contypid = r.oid
      UNION ALL
        SELECT pg_catalog.concat(':resulttype ', ty.typbasetype, ' :funcid ', ty.typinput::oid,
                                 ' :funcid ', ty.typoutput::oid)
        FROM pg_catalog.pg_type ty
        WHERE r.field IN ({_TY}) AND ty.oid = r.oid AND ty.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace
    ) AS nxt
    CROSS JOIN LATERAL ({_REFS.format(body="nxt.body")}) AS more
    WHERE nxt.body IS NOT NULL
)
SELECT {{read_only}} AS read_only,
       pg_catalog.set_config('statement_timeout', $2, true) AS statement_timeout,
       {RESTORE_SETTINGS_SQL},
       (SELECT count(*) > 0 FROM pg_catalog.pg_proc p
        WHERE p.proname = '{PROBE}' AND p.pronamespace = pg_catalog.pg_my_temp_schema()) AS probed,
       (SELECT pg_catalog.array_agg(DISTINCT oid) FROM refs WHERE field IN ({_FN}) AND oid <> 0) AS function_oids,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(
                   p.oid::int8, n.nspname, p.proname, p.provolatile, l.lanname, p.prosecdef))
        FROM (SELECT DISTINCT oid FROM refs WHERE field IN ({_FN}) AND oid <> 0) AS f
        JOIN pg_catalog.pg_proc p ON p.oid = f.oid
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_catalog.pg_language l ON l.oid = p.prolang) AS functions,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(
                   n.nspname, c.relname, c.reltuples::float8, c.relpages::int8,
                   pg_catalog.pg_stat_get_live_tuples(c.oid), pg_catalog.pg_stat_get_mod_since_analyze(c.oid),
                   pg_catalog.pg_stat_get_last_analyze_time(c.oid), pg_catalog.pg_stat_get_last_autoanalyze_time(c.oid),
                   c.relrowsecurity))
        FROM (SELECT DISTINCT oid FROM refs WHERE field = 'relid') AS t
        JOIN pg_catalog.pg_class c ON c.oid = t.oid AND c.relkind IN ('r', 'm', 'p')
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace) AS tables,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(r.i, c.oid::int8))
        FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS r(name, i)
        JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(r.name)) AS relations
""")


_CLOSURE_READ_ONLY = _CLOSURE_SQL.format(read_only="pg_catalog.set_config('transaction_read_only', 'on', true)")
_CLOSURE = _CLOSURE_SQL.format(read_only="NULL")


@dataclass
class Resolution:
    """What the catalog check learned: the relations the statement names (by OID, as written) and
    the statistics state of every table it reads, keyed by the relation name EXPLAIN prints."""

    relation_oids: dict[tuple[str | None, str], int] = field(default_factory=dict)
    tables: dict[str, TableHealth] = field(default_factory=dict)
    work_mem: str = ""  # the session's work_mem, which the statement runs with (restored by the check)
    shared_names: frozenset[str] = frozenset()  # names of tables read in more than one schema
    row_security_names: frozenset[str] = frozenset()  # names of tables read under row security

    def countable_tables(self) -> dict[str, TableHealth]:
        """`tables` a count can stand in for a scan of (`filter_counts`): not the names EXPLAIN prints for
        more than one table (it prints no schema), nor tables whose row security hides rows from a count
        that the scan counted as removed."""
        excluded = self.shared_names | self.row_security_names
        return {name: health for name, health in self.tables.items() if name not in excluded}


def relation_names(parsed: ParsedQuery) -> tuple[list[tuple[str | None, str]], list[str]]:
    """The relations the statement names, as written: (schema or None, name) keys and their quoted texts
    (the closure resolves them with to_regclass, so a name it cannot see resolves to nothing)."""
    keys = sorted({(r.schema, r.name) for r in parsed.relations}, key=lambda k: (k[0] or "", k[1]))
    return keys, [f"{quote_ident(s)}.{quote_ident(n)}" if s else quote_ident(n) for s, n in keys]


def probe_head(parameter_types: Sequence[str]) -> str:
    return (
        f"CREATE FUNCTION {TAG} pg_temp.{PROBE}({', '.join(parameter_types)}) RETURNS SETOF pg_catalog.record "
        f"LANGUAGE sql BEGIN ATOMIC\n"
    )


def probe_sql(parsed: ParsedQuery, parameter_types: Sequence[str]) -> str:
    """CREATE FUNCTION pg_temp.rentscout_probe(<the statement's parameter types>) whose body is the
    statement. Sent over the extended protocol, so the server refuses a second command whatever the
    text holds; the newline ends a trailing line comment."""
    return f"{probe_head(parameter_types)}{parsed.body}\n; END"


def probe_offset(parsed: ParsedQuery, parameter_types: Sequence[str]) -> int:
    """What to subtract from a position in the probe's text to get the position in the caller's."""
    return len(probe_head(parameter_types)) - parsed.body_offset


def _health(row: list[Any]) -> TableHealth:
    schema, name, reltuples, relpages, live, modified, analyzed, autoanalyzed = row
    return TableHealth(
        schema=schema,
        name=name,
        reltuples=reltuples,
        relpages=relpages,
        n_live_tup=live,
        n_mod_since_analyze=modified,
        last_analyze=_timestamp(analyzed),
        last_autoanalyze=_timestamp(autoanalyzed),
    )


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def check(
    conn: asyncpg.Connection,
    parsed: ParsedQuery,
    parameter_types: Sequence[str],
    trusted_schemas: frozenset[str],
    *,
    then_read_only: bool,
    statement_timeout_ms: int,
) -> Resolution:
    """Raise Rejected when the statement would run a function the policy does not allow.

    Runs inside the caller's transaction, as the role the statement will run as (same search_path,
    same catalog snapshot). The probe function stays until that transaction rolls back, or the caller's
    savepoint. With `then_read_only`, the same round trip makes the transaction READ ONLY. The same round
    trip sets statement_timeout to `statement_timeout_ms` (what is left of the call's budget) for the
    statements after it.
    """
    try:
        probe = await session.prepare(conn, probe_sql(parsed, parameter_types))
        await probe.fetch(timeout=deadline.remaining())
    except asyncpg.InsufficientPrivilegeError:
        raise FailedPrecondition(
            "the analyzer role cannot create the temporary probe function of the catalog check: "
            "GRANT TEMPORARY ON DATABASE <database> TO rentscout_explain (PUBLIC has it by default)"
        ) from None
    # two texts, prepared once per connection (asyncpg's statement cache); $1: the relations as written
    keys, names = relation_names(parsed)
    row = await conn.fetchrow(
        _CLOSURE_READ_ONLY if then_read_only else _CLOSURE, names, str(statement_timeout_ms), timeout=deadline.remaining()
    )
    if row is None or not row["probed"]:
        raise Rejected("function:catalog", "could not be resolved in the catalog")
    if then_read_only and row["read_only"] != "on":
        raise Rejected("read_only", "could not be run in a read-only transaction")
    found = orjson.loads(row["functions"] or "[]")
    if set(row["function_oids"] or ()) - {oid for oid, *_ in found}:
        raise Rejected("function:catalog", "would call a function that is not in the catalog")
    infos = {FunctionInfo(*info) for _, *info in found}
    for info in sorted(infos, key=lambda i: (i.schema, i.name)):
        if (problem := function_verdict(info, trusted_schemas)) is not None:
            raise Rejected("function:catalog", f"would call {problem}")
    tables: dict[str, TableHealth] = {}
    shared: set[str] = set()
    row_security: set[str] = set()
    for *statistics, secured in orjson.loads(row["tables"] or "[]"):
        health = _health(statistics)
        if secured:
            row_security.add(health.name)
        if tables.setdefault(health.name, health) is not health:
            shared.add(health.name)
    relation_oids = {keys[i - 1]: oid for i, oid in orjson.loads(row["relations"] or "[]")}
    return Resolution(
        relation_oids=relation_oids,
        tables=tables,
        work_mem=str(row["restored_work_mem"]),
        shared_names=frozenset(shared),
        row_security_names=frozenset(row_security),
    )
