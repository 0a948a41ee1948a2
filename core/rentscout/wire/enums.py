"""Enum names, one way for everyone: 'apartment', 'PROPERTY_TYPE_APARTMENT' or the number all mean the same.

An enum is named by a spec, `EnumSpec(enum, prefix)`, one of the constants at the end of this module. The short
name of a value is its proto name without the prefix, in lower case (what PostgreSQL stores, what
the CLI prints and accepts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from rentscout.analyzer.v1 import analyzer_pb2
from rentscout.cache.v1 import cache_pb2
from rentscout.common.v1 import common_pb2

E = TypeVar("E", bound=int)


@dataclass(frozen=True)
class EnumSpec(Generic[E]):
    """A generated enum (`E`, e.g. common_pb2.PropertyType) and the prefix of its value names."""

    enum: EnumTypeWrapper
    prefix: str


def _typed(spec: EnumSpec[E], number: int) -> E:
    # Generated enum values are plain ints at run time; the .pyi files type message fields as the
    # enum class `E`, so a number checked against the enum is an `E`.
    return cast(E, number)


def enum_value(spec: EnumSpec[E], value: str | int | None) -> E:
    """The number of `value` in an enum (`spec` is one of the constants below); 0 (UNSPECIFIED) for None or ''."""
    enum, prefix = spec.enum, spec.prefix
    if value is None or value == "":
        return _typed(spec, 0)
    if isinstance(value, int):
        if value not in enum.values():
            raise ValueError(f"{value} is not a valid {enum.DESCRIPTOR.name}")
        return _typed(spec, value)
    name = value.strip().upper().replace("-", "_")
    names = enum.DESCRIPTOR.values_by_name
    for candidate in (name, prefix + name):
        if candidate in names:
            return _typed(spec, names[candidate].number)
    choices = ", ".join(short_name(k, prefix) for k in names if not k.endswith("UNSPECIFIED"))
    raise ValueError(f"unknown {enum.DESCRIPTOR.name} {value!r} (expected one of {choices})")


def short_name(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


def short_names(spec: EnumSpec[E]) -> dict[int, str]:
    """{number: short name} of every value but UNSPECIFIED (0)."""
    return {v.number: short_name(v.name, spec.prefix) for v in spec.enum.DESCRIPTOR.values if v.number != 0}


def name_of(spec: EnumSpec[E], number: int) -> str:
    """'apartment' for PROPERTY_TYPE_APARTMENT; the number itself when unknown (a newer server)."""
    try:
        return short_name(spec.enum.Name(number), spec.prefix)
    except ValueError:
        return str(number)


PROPERTY_TYPE: EnumSpec[common_pb2.PropertyType] = EnumSpec(common_pb2.PropertyType, "PROPERTY_TYPE_")
LISTING_SOURCE: EnumSpec[common_pb2.ListingSource] = EnumSpec(common_pb2.ListingSource, "LISTING_SOURCE_")
SEVERITY: EnumSpec[common_pb2.Severity] = EnumSpec(common_pb2.Severity, "SEVERITY_")
ENTITY_TYPE: EnumSpec[cache_pb2.EntityType] = EnumSpec(cache_pb2.EntityType, "ENTITY_TYPE_")
CACHE_SOURCE: EnumSpec[cache_pb2.CacheSource] = EnumSpec(cache_pb2.CacheSource, "CACHE_SOURCE_")
BREAKER_STATE: EnumSpec[cache_pb2.BreakerState] = EnumSpec(cache_pb2.BreakerState, "BREAKER_STATE_")
SLOW_QUERY_ORDER: EnumSpec[analyzer_pb2.SlowQueryOrder] = EnumSpec(analyzer_pb2.SlowQueryOrder, "SLOW_QUERY_ORDER_")
INSIGHT_KIND: EnumSpec[analyzer_pb2.InsightKind] = EnumSpec(analyzer_pb2.InsightKind, "INSIGHT_KIND_")
INDEX_ISSUE_KIND: EnumSpec[analyzer_pb2.IndexIssueKind] = EnumSpec(analyzer_pb2.IndexIssueKind, "INDEX_ISSUE_KIND_")
RECOMMENDATION_ACTION: EnumSpec[analyzer_pb2.RecommendationAction] = EnumSpec(
    analyzer_pb2.RecommendationAction, "RECOMMENDATION_ACTION_"
)
BLOAT_METHOD: EnumSpec[analyzer_pb2.BloatMethod] = EnumSpec(analyzer_pb2.BloatMethod, "BLOAT_METHOD_")
