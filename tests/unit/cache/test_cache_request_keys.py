"""RequestKeys: a query RPC's request bytes to (parameters, entry key), decoded once per distinct request."""

from __future__ import annotations

from typing import Any

import pytest

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service import requests
from rentscout.cache_service.keys import KeySpace
from rentscout.cache_service.queries import price_stats_params
from rentscout.cache_service.registry import CachedQuery
from rentscout.cache_service.requests import RequestKeys
from rentscout.common.v1 import common_pb2
from rentscout.runtime.errors import InvalidArgument
from rentscout.wire.protowire import varint

KEYS = KeySpace("rs")
METHOD = "/rentscout.cache.v1.CacheQueryService/PriceStats"


def counting_query() -> tuple[CachedQuery, list[Any]]:
    seen: list[Any] = []

    def params(request: cache_pb2.PriceStatsRequest) -> dict[str, Any]:
        seen.append(request)
        return price_stats_params(request)

    async def fetch(db: Any, **params: Any) -> cache_pb2.PriceStatsResponse:
        return cache_pb2.PriceStatsResponse()

    return CachedQuery("price_stats", "PriceStats", cache_pb2.PriceStatsRequest, params, lambda p: [], fetch), seen


def wire(city: str, kind: int = 0) -> bytes:
    return cache_pb2.PriceStatsRequest(city=city, property_type=kind).SerializeToString()  # type: ignore[arg-type]


def test_the_same_bytes_are_decoded_once_and_name_the_entry_the_parameters_name() -> None:
    query, seen = counting_query()
    keys = RequestKeys(query, KEYS, METHOD)
    first = keys.resolve(wire(" Kazan ", common_pb2.PROPERTY_TYPE_ROOM))
    again = keys.resolve(wire(" Kazan ", common_pb2.PROPERTY_TYPE_ROOM))
    assert (
        first
        == again
        == ({"city": "Kazan", "property_type": "room"}, KEYS.entry("price_stats", 1, {"city": "Kazan", "property_type": "room"}))
    )
    assert len(seen) == 1  # the second call did no protobuf work and no validation
    other = keys.resolve(wire("Kazan"))  # other bytes: decoded, another entry
    assert other[1] != first[1] and len(seen) == 2
    # bytes that differ but mean the same (whitespace trimmed by validation) share the entry
    assert keys.resolve(wire("Kazan ", common_pb2.PROPERTY_TYPE_ROOM))[1] == first[1]


def test_invalid_and_undecodable_requests_are_refused_every_time_and_never_remembered() -> None:
    query, seen = counting_query()
    keys = RequestKeys(query, KEYS, METHOD)
    for _ in range(2):
        with pytest.raises(InvalidArgument) as info:
            keys.resolve(wire(""))
        assert [f for f, _ in info.value.violations] == ["city"]
    assert len(seen) == 2 and len(keys) == 0
    for _ in range(2):
        with pytest.raises(InvalidArgument) as info:
            keys.resolve(b"\x0a\x05ab")  # field 1 says 5 bytes, 2 follow
        assert info.value.violations[0][0] == "request"
        assert "rentscout.cache.v1.PriceStatsRequest" in info.value.violations[0][1]
    assert len(keys) == 0


def test_the_memo_is_bounded_by_entries_and_by_request_size() -> None:
    query, seen = counting_query()
    keys = RequestKeys(query, KEYS, METHOD, max_entries=2)
    for city in ("A", "B", "C"):
        keys.resolve(wire(city))
    assert len(keys) == 2
    keys.resolve(wire("A"))  # the oldest went out first: decoded again
    assert len(seen) == 4
    keys = RequestKeys(query, KEYS, METHOD)
    size = requests.MAX_REMEMBERED_BYTES
    big = wire("Moscow") + b"\x1a" + varint(size) + b"x" * size  # an unknown field 3: ignored, as protobuf does
    assert keys.resolve(big)[1] == keys.resolve(wire("Moscow"))[1]
    assert len(keys) == 1  # the small form was remembered; the big one was not
