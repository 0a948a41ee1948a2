"""The `properties` table as both sides of the wire know it: column names, PostgreSQL types, and the kind of
value each type is (which decides how an export spells it and how a client parses it back).

The export server reads the live catalog (a new migration's column is exportable without a code change) and
classifies each type with `kind_of`; clients and tests use `PROPERTIES`, which a test checks against the
migrated table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

TABLE = "properties"
KEY = "id"

Kind = Literal["int", "float", "bool", "time", "text"]

# pg_type.typname -> kind: numbers and booleans are JSON numbers/booleans, times ISO 8601 strings, anything
# else the string of its text representation.
KINDS: Mapping[str, Kind] = {
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "oid": "int",
    "float4": "float",
    "float8": "float",
    "numeric": "float",
    "bool": "bool",
    "timestamptz": "time",
    "timestamp": "time",
    "date": "time",
}


def kind_of(typname: str) -> Kind:
    return KINDS.get(typname, "text")


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    not_null: bool = False
    typname: str = ""  # pg_type.typname ('' when unknown: formats then go by `kind`)


def _column(name: str, typname: str, not_null: bool) -> Column:
    return Column(name, kind_of(typname), not_null, typname)


# (name, pg_type.typname, NOT NULL) in table order, as migration 0001 creates them.
PROPERTY_TYPES: tuple[tuple[str, str, bool], ...] = (
    ("id", "int8", True),
    ("source", "text", True),
    ("external_id", "text", True),
    ("title", "text", True),
    ("city", "text", True),
    ("district", "text", False),
    ("address", "text", False),
    ("property_type", "text", True),
    ("price", "int8", True),
    ("currency", "bpchar", True),
    ("rooms", "int2", False),
    ("area", "float8", False),
    ("floor", "int2", False),
    ("lat", "float8", False),
    ("lon", "float8", False),
    ("url", "text", False),
    ("views", "int8", True),
    ("is_active", "bool", True),
    ("created_at", "timestamptz", True),
    ("updated_at", "timestamptz", True),
)
PROPERTIES: tuple[Column, ...] = tuple(_column(*spec) for spec in PROPERTY_TYPES)
BY_NAME: Mapping[str, Column] = {c.name: c for c in PROPERTIES}
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in PROPERTIES)
