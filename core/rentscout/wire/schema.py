"""The `properties` table as both sides see it: column names in table order and the kind of each value.

The migrations (services/rentscout/db/migrations) create the table; this is the one place the code knows
its columns. Kinds: `int`, `float`, `bool`, `time` (timestamptz) and `text`. The export server reads the
columns it streams from the catalog (so a new column is exportable without a code change) and maps
PostgreSQL types to the same kinds with `kind_of_pg_type`.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE = "properties"
KEY = "id"

@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # int | float | bool | time | text
    not_null: bool = False


PROPERTY_COLUMNS: tuple[Column, ...] = (
    Column("id", "int", True),
    Column("source", "text", True),
    Column("external_id", "text", True),
    Column("title", "text", True),
    Column("city", "text", True),
    Column("district", "text"),
    Column("address", "text"),
    Column("property_type", "text", True),
    Column("price", "int", True),
    Column("currency", "text", True),
    Column("rooms", "int"),
    Column("area", "float"),
    Column("floor", "int"),
    Column("lat", "float"),
    Column("lon", "float"),
    Column("url", "text"),
    Column("views", "int", True),
    Column("is_active", "bool", True),
    Column("created_at", "time", True),
    Column("updated_at", "time", True),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in PROPERTY_COLUMNS)


def columns_of_kind(kind: str) -> frozenset[str]:
    return frozenset(c.name for c in PROPERTY_COLUMNS if c.kind == kind)


# pg_type.typname -> kind: numbers and booleans are emitted bare in JSON, times as ISO strings,
# anything else as the string of its text representation.
_PG_KINDS = {
    "int2": "int", "int4": "int", "int8": "int", "oid": "int",
    "float4": "float", "float8": "float", "numeric": "float",
    "bool": "bool",
    "timestamptz": "time", "timestamp": "time", "date": "time",
}


def kind_of_pg_type(typname: str) -> str:
    return _PG_KINDS.get(typname, "text")
