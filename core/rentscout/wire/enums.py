"""Enum names, one way for everyone: 'apartment', 'PROPERTY_TYPE_APARTMENT' or the number all mean the same.

An enum is named by a spec, `(enum, prefix)`, one of the tuples at the end of this module. The short
name of a value is its proto name without the prefix, in lower case (what PostgreSQL stores, what
the CLI prints and accepts).
"""

from __future__ import annotations

from typing import Any

from rentscout.analyzer.v1 import analyzer_pb2
from rentscout.cache.v1 import cache_pb2
from rentscout.common.v1 import common_pb2


def enum_value(spec: tuple[Any, str], value: str | int | None) -> int:
    """The number of `value` in an enum (`spec` is one of the tuples below); 0 (UNSPECIFIED) for None or ''."""
    enum, prefix = spec
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        if value not in enum.values():
            raise ValueError(f"{value} is not a valid {enum.DESCRIPTOR.name}")
        return value
    name = value.strip().upper().replace("-", "_")
    names = enum.DESCRIPTOR.values_by_name
    for candidate in (name, prefix + name):
        if candidate in names:
            return int(names[candidate].number)
    choices = ", ".join(short_name(k, prefix) for k in names if not k.endswith("UNSPECIFIED"))
    raise ValueError(f"unknown {enum.DESCRIPTOR.name} {value!r} (expected one of {choices})")


def short_name(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


def short_names(spec: tuple[Any, str]) -> dict[int, str]:
    """{number: short name} of every value but UNSPECIFIED (0)."""
    enum, prefix = spec
    return {v.number: short_name(v.name, prefix) for v in enum.DESCRIPTOR.values if v.number != 0}


def name_of(spec: tuple[Any, str], number: int) -> str:
    """'apartment' for PROPERTY_TYPE_APARTMENT; the number itself when unknown (a newer server)."""
    enum, prefix = spec
    try:
        return short_name(enum.Name(number), prefix)
    except ValueError:
        return str(number)


PROPERTY_TYPE = (common_pb2.PropertyType, "PROPERTY_TYPE_")
LISTING_SOURCE = (common_pb2.ListingSource, "LISTING_SOURCE_")
SEVERITY = (common_pb2.Severity, "SEVERITY_")
ENTITY_TYPE = (cache_pb2.EntityType, "ENTITY_TYPE_")
CACHE_SOURCE = (cache_pb2.CacheSource, "CACHE_SOURCE_")
BREAKER_STATE = (cache_pb2.BreakerState, "BREAKER_STATE_")
SLOW_QUERY_ORDER = (analyzer_pb2.SlowQueryOrder, "SLOW_QUERY_ORDER_")
INSIGHT_KIND = (analyzer_pb2.InsightKind, "INSIGHT_KIND_")
INDEX_ISSUE_KIND = (analyzer_pb2.IndexIssueKind, "INDEX_ISSUE_KIND_")
RECOMMENDATION_ACTION = (analyzer_pb2.RecommendationAction, "RECOMMENDATION_ACTION_")
BLOAT_METHOD = (analyzer_pb2.BloatMethod, "BLOAT_METHOD_")
