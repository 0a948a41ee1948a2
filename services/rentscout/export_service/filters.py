"""PropertyFilter -> a SQL predicate of literals (COPY takes no bind parameters).

Every value is validated first: enums against their known names, numbers rendered by int(), strings as
standard-conforming literals (the stream's session forces standard_conforming_strings = on), city names by
the shared rule (rentscout.wire.validation: length, no control characters such as NUL), timestamps as ISO
literals. Problems are collected as field violations, all at once.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from rentscout.common.v1 import common_pb2
from rentscout.runtime.errors import Violations
from rentscout.runtime.timestamps import to_datetime
from rentscout.wire.enums import LISTING_SOURCE, PROPERTY_TYPE, short_names
from rentscout.wire.sql import ident, literal
from rentscout.wire.validation import city_problem

MAX_LIST = 1000

PROPERTY_TYPES = short_names(PROPERTY_TYPE)
SOURCES = short_names(LISTING_SOURCE)


def timestamp_literal(ts: Timestamp, field: str, v: Violations) -> str | None:
    """The instant rounded *up* to PostgreSQL's microseconds, so `>=` keeps its meaning."""
    try:
        when = to_datetime(ts, round_up=True)
    except ValueError as exc:
        v.add(field, str(exc))
        return None
    return literal(when.isoformat()) + "::timestamptz"


def _in_list(column: str, values: list[str]) -> str:
    return f"{ident(column)} IN ({', '.join(literal(x) for x in values)})"


def _enums(values: list[int], names: dict[int, str], field: str, column: str, v: Violations) -> str | None:
    if len(values) > MAX_LIST:
        v.add(field, f"at most {MAX_LIST} values")
        return None
    out = []
    for i, value in enumerate(values):
        if value not in names:
            v.add(f"{field}[{i}]", f"unknown or unspecified value {value}")
        else:
            out.append(names[value])
    return _in_list(column, sorted(set(out))) if out and len(out) == len(values) else None


def _range(
    f: common_pb2.PropertyFilter, lo: str, hi: str, column: str, prefix: str, v: Violations, top: int | None = None
) -> list[str]:
    parts = []
    lo_set, hi_set = f.HasField(lo), f.HasField(hi)
    lo_val, hi_val = getattr(f, lo), getattr(f, hi)
    for name, is_set, val, op in ((lo, lo_set, lo_val, ">="), (hi, hi_set, hi_val, "<=")):
        if not is_set:
            continue
        if val < 0:
            v.add(f"{prefix}{name}", "must not be negative")
        elif top is not None and val > top:
            v.add(f"{prefix}{name}", f"must be at most {top}")
        else:
            parts.append(f"{ident(column)} {op} {int(val)}")
    if lo_set and hi_set and lo_val > hi_val:
        v.add(f"{prefix}{lo}", f"must not exceed {prefix}{hi} ({lo_val} > {hi_val})")
    return parts


def filter_sql(f: common_pb2.PropertyFilter, v: Violations, prefix: str = "filter.") -> str:
    """The predicate (empty string when the filter is empty); violations are added to `v`."""
    parts: list[str] = []
    if f.cities:
        cities = list(f.cities)
        if len(cities) > MAX_LIST:
            v.add(f"{prefix}cities", f"at most {MAX_LIST} values")
        else:
            ok = True
            for i, city in enumerate(cities):  # exact names: not trimmed
                if (problem := city_problem(city)) is not None:
                    v.add(f"{prefix}cities[{i}]", problem)
                    ok = False
            if ok:
                parts.append(_in_list("city", sorted(set(cities))))
    if f.property_types and (
        sql := _enums(list(f.property_types), PROPERTY_TYPES, f"{prefix}property_types", "property_type", v)
    ):
        parts.append(sql)
    if f.sources and (sql := _enums(list(f.sources), SOURCES, f"{prefix}sources", "source", v)):
        parts.append(sql)
    parts += _range(f, "min_price", "max_price", "price", prefix, v)
    parts += _range(f, "min_rooms", "max_rooms", "rooms", prefix, v, top=32767)
    if f.active_only:
        parts.append(f"{ident('is_active')}")
    if f.HasField("updated_since"):
        lit = timestamp_literal(f.updated_since, f"{prefix}updated_since", v)
        if lit:
            parts.append(f"{ident('updated_at')} >= {lit}")
    return " AND ".join(parts)
