"""The popular read queries, each declared once with its key parameters, tags and SQL.

Adding a fifth is one `@cached_query` function (plus its RPC in cache.proto); the cache, single
flight, invalidation, metrics and the RPC handler come with the declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import asyncpg

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.keys import CITIES_TAG, TYPES_TAG, city_tag, popular_tag
from rentscout.cache_service.registry import REGISTRY, CachedQuery, Params, cached_query
from rentscout.cache_service.requests import check_city
from rentscout.common.v1 import common_pb2
from rentscout.runtime.errors import Violations
from rentscout.runtime.replicas import Reads
from rentscout.wire import schema, times
from rentscout.wire.enums import LISTING_SOURCE, PROPERTY_TYPE, enum_value, name_of

DEFAULT_LIMIT, MAX_LIMIT = 10, 100


# -- input checks -----------------------------------------------------------------------------


def property_type_name(value: int) -> str | None:
    """`PROPERTY_TYPE_STUDIO` -> 'studio'; None for unspecified; raises ValueError for unknown numbers."""
    if value == common_pb2.PROPERTY_TYPE_UNSPECIFIED:
        return None
    return name_of(PROPERTY_TYPE, enum_value(PROPERTY_TYPE, value))


def popular_params(req: cache_pb2.PopularPropertiesRequest) -> Params:
    v = Violations()
    city = check_city(v, "city", req.city)
    limit = req.limit or DEFAULT_LIMIT
    v.check(1 <= limit <= MAX_LIMIT, "limit", f"must be from 1 to {MAX_LIMIT} (0 means {DEFAULT_LIMIT}), got {req.limit}")
    v.raise_if_any()
    return {"city": city, "limit": limit}


def price_stats_params(req: cache_pb2.PriceStatsRequest) -> Params:
    v = Violations()
    city = check_city(v, "city", req.city)
    kind = None
    try:
        kind = property_type_name(req.property_type)
    except ValueError:
        v.add("property_type", f"unknown property type {req.property_type}")
    v.raise_if_any()
    return {"city": city, "property_type": kind}


def no_params(_req: Any) -> Params:
    return {}


# -- rows to messages -------------------------------------------------------------------------

# Timestamps are read as exact numeric epochs (see rentscout.wire.times): a BC date or an infinity
# is a value to send, not a datetime to fail on.
TIME_COLUMNS = ("created_at", "updated_at")
PROPERTY_COLUMNS = ", ".join(
    f"{times.epoch_sql(c.name)} AS {c.name}" if c.name in TIME_COLUMNS else c.name for c in schema.PROPERTIES
)
# NULL-able columns are `optional` fields: a NULL stays absent (never "" or 0).
VALUE_FIELDS = (
    "id",
    "external_id",
    "title",
    "city",
    "district",
    "address",
    "price",
    "currency",
    "rooms",
    "area",
    "floor",
    "lat",
    "lon",
    "url",
    "views",
    "is_active",
)


def to_property(row: asyncpg.Record) -> common_pb2.Property:
    fields = {k: row[k] for k in VALUE_FIELDS if row[k] is not None}
    prop = common_pb2.Property(
        source=enum_value(LISTING_SOURCE, row["source"]), property_type=enum_value(PROPERTY_TYPE, row["property_type"]), **fields
    )
    for name in TIME_COLUMNS:
        times.set_time(prop, name, row[name])
    return prop


# -- the queries ------------------------------------------------------------------------------


@cached_query(
    "popular_properties",
    rpc="PopularProperties",
    request=cache_pb2.PopularPropertiesRequest,
    params=popular_params,
    tags=lambda p: [city_tag(p["city"]), popular_tag(p["city"])],
    version=2,
)
async def popular_properties(db: Reads, *, city: str, limit: int) -> cache_pb2.PopularPropertiesResponse:
    """Most viewed active listings of a city (index properties_city_views_active_idx)."""
    rows = await db.fetch(
        f"SELECT {PROPERTY_COLUMNS} FROM properties WHERE is_active AND city = $1 ORDER BY views DESC, id LIMIT $2", city, limit
    )
    return cache_pb2.PopularPropertiesResponse(properties=[to_property(r) for r in rows])


@cached_query(
    "price_stats",
    rpc="PriceStats",
    request=cache_pb2.PriceStatsRequest,
    params=price_stats_params,
    tags=lambda p: [city_tag(p["city"])],
    version=2,
)
async def price_stats(db: Reads, *, city: str, property_type: str | None) -> cache_pb2.PriceStatsResponse:
    """Price distribution of a city's active listings; price per m2 is the mean of each listing's price/area.

    price/area is computed in numeric: in double precision a denormal area overflows (an error in
    PostgreSQL); in numeric it is a huge number, which becomes Infinity as a double. NaN stays NaN."""
    row = await db.fetchrow(
        """SELECT count(*) AS n, min(price) AS lo, max(price) AS hi, avg(price)::float8 AS mean,
                  percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY price) AS q,
                  avg(price::numeric / area::numeric) FILTER (WHERE area > 0) AS per_sqm
             FROM properties
            WHERE is_active AND city = $1 AND ($2::text IS NULL OR property_type = $2)""",
        city,
        property_type,
    )
    if row is None or not row["n"]:
        return cache_pb2.PriceStatsResponse()
    p25, median, p75 = row["q"]
    out = cache_pb2.PriceStatsResponse(
        count=row["n"], min=row["lo"], max=row["hi"], mean=row["mean"], median=median, p25=p25, p75=p75
    )
    if row["per_sqm"] is not None:  # absent when no listing has an area
        out.mean_price_per_sqm = float(row["per_sqm"])  # a Decimal: beyond double's range it is +-Infinity
    return out


@cached_query("cities", rpc="Cities", request=cache_pb2.CitiesRequest, params=no_params, tags=lambda p: [CITIES_TAG])
async def cities(db: Reads) -> cache_pb2.CitiesResponse:
    rows = await db.fetch("SELECT city, count(*) AS n FROM properties WHERE is_active GROUP BY city ORDER BY n DESC, city")
    return cache_pb2.CitiesResponse(cities=[cache_pb2.CityCount(city=r["city"], count=r["n"]) for r in rows])


@cached_query(
    "property_types", rpc="PropertyTypes", request=cache_pb2.PropertyTypesRequest, params=no_params, tags=lambda p: [TYPES_TAG]
)
async def property_types(db: Reads) -> cache_pb2.PropertyTypesResponse:
    rows = await db.fetch(
        "SELECT property_type, count(*) AS n FROM properties WHERE is_active "
        "GROUP BY property_type ORDER BY n DESC, property_type"
    )
    return cache_pb2.PropertyTypesResponse(
        property_types=[
            cache_pb2.PropertyTypeCount(property_type=enum_value(PROPERTY_TYPE, r["property_type"]), count=r["n"]) for r in rows
        ]
    )


QUERIES: Mapping[str, CachedQuery] = MappingProxyType(REGISTRY)  # what the service serves (read-only view)
