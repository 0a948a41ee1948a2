"""Resolving a caller-supplied table name through the catalog (never by string concatenation)."""

from __future__ import annotations

import asyncpg

from rentscout.analyzer_service.index_candidates import Relation
from rentscout.analyzer_service.sqltext import check_table_name, tagged
from rentscout.runtime import deadline
from rentscout.runtime.errors import InvalidArgument

_RESOLVE_SQL = tagged("""
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass($1)
""")
TABLE_KINDS = {"r": "table", "p": "partitioned table", "m": "materialized view"}
OTHER_KINDS = {
    "v": "a view",
    "i": "an index",
    "I": "a partitioned index",
    "S": "a sequence",
    "c": "a composite type",
    "f": "a foreign table",
    "t": "a TOAST table",
}


async def resolve_table(conn: asyncpg.Connection, raw: str, field: str = "table") -> tuple[Relation, str]:
    """(relation, relkind) of `raw`; INVALID_ARGUMENT when it is not the name of an existing table."""
    if (problem := check_table_name(raw)) is not None:
        raise InvalidArgument(field, problem)
    try:
        row = await conn.fetchrow(_RESOLVE_SQL, raw.strip(), timeout=deadline.remaining())
    except (asyncpg.InvalidNameError, asyncpg.InvalidSchemaNameError, asyncpg.SyntaxOrAccessError):
        raise InvalidArgument(field, "is not a valid table name") from None
    if row is None:
        raise InvalidArgument(field, f"no table named {raw.strip()} is visible to the service (search_path)")
    if row["relkind"] not in TABLE_KINDS:
        raise InvalidArgument(field, f"{row['schema']}.{row['name']} is {OTHER_KINDS.get(row['relkind'], 'not a table')}")
    return Relation(row["oid"], row["schema"], row["name"]), row["relkind"]
