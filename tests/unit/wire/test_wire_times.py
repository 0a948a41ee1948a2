"""Timestamps beyond google.protobuf.Timestamp's range, and absent optional fields, on the client side."""

from __future__ import annotations

import math
from decimal import Decimal

from rentscout.cache.v1 import cache_pb2
from rentscout.cli.cache import present
from rentscout.cli.clientargs import message_json
from rentscout.common.v1 import common_pb2
from rentscout.wire import times


def test_set_time_uses_the_timestamp_in_range_and_the_twin_beyond() -> None:
    p = common_pb2.Property()
    times.set_time(p, "created_at", Decimal("1709210096.789012"))
    times.set_time(p, "updated_at", Decimal("-63517780800.000000"))  # 0044-03-15 12:00 BC
    assert p.HasField("created_at") and not p.HasField("created_at_out_of_range")
    assert (p.created_at.seconds, p.created_at.nanos) == (1709210096, 789012000)
    assert not p.HasField("updated_at") and p.updated_at_out_of_range.seconds == -63517780800
    assert times.describe(p, "created_at") == "2024-02-29T12:34:56.789012Z"
    assert times.describe(p, "updated_at") == "0044-03-15T12:00:00Z BC"
    q = common_pb2.Property()
    times.set_time(q, "created_at", Decimal("Infinity"))
    times.set_time(q, "updated_at", Decimal("-Infinity"))
    assert q.created_at_out_of_range.infinity == common_pb2.INFINITY_POSITIVE
    assert (times.describe(q, "created_at"), times.describe(q, "updated_at")) == ("infinity", "-infinity")
    assert times.text(253402300800) == "10000-01-01T00:00:00Z"
    assert times.text(-62135596800) == "0001-01-01T00:00:00Z"
    assert times.text(-62135596801) == "0001-12-31T23:59:59Z BC"  # year 1 BC follows year 1 AD


def test_cli_json_shows_absent_optional_fields_as_null_and_tables_as_blank() -> None:
    reply = cache_pb2.PopularPropertiesResponse()
    reply.properties.add(id=1, title="t", rooms=0, floor=0, district="")  # real zeros and "" are values
    doc = message_json(reply)["properties"][0]
    assert doc["rooms"] == 0 and doc["floor"] == 0 and doc["district"] == ""
    assert doc["area"] is None and doc["lat"] is None and doc["url"] is None and doc["address"] is None
    prop = reply.properties[0]
    assert present(prop, "area", str) == "" and present(prop, "rooms", str) == "0"
    stats = cache_pb2.PriceStatsResponse(count=2, min=1, mean_price_per_sqm=math.inf)
    out = message_json(stats)
    assert out["max"] is None and out["min"] == 1 and out["mean_price_per_sqm"] == "Infinity"
