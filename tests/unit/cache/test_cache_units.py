"""Pure parts of the cache: keys, Redis globs, TTL policy, entry encoding, near cache, validation."""

from __future__ import annotations

import random
import re

import pytest

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.entry import NEAR, REDIS, Entry
from rentscout.cache_service.keys import FORMAT_VERSION, GlobError, KeySpace, glob_escape, params_digest, parse_glob
from rentscout.cache_service.near import NearCache
from rentscout.cache_service.queries import popular_params, price_stats_params
from rentscout.cache_service.registry import CachedQuery, cached_query
from rentscout.cache_service.ttl import AdaptiveTtl, FixedTtl, jittered
from rentscout.common.v1 import common_pb2
from rentscout.runtime.errors import InvalidArgument


def test_keys_are_canonical_versioned_and_share_a_cluster_hash_tag() -> None:
    ks = KeySpace("rs")
    a = ks.entry("price_stats", 1, {"city": "Moscow", "property_type": None})
    b = ks.entry("price_stats", 1, {"property_type": None, "city": "Moscow"})
    assert a == b  # parameter order does not matter
    assert a == f"rs:v{FORMAT_VERSION}.1:price_stats:{{{params_digest({'city': 'Moscow', 'property_type': None})}}}"
    assert ks.entry("price_stats", 2, {"city": "Moscow", "property_type": None}) != a  # a new version never reads old
    assert ks.entry("price_stats", 1, {"city": "Kazan", "property_type": None}) != a
    tag = a[a.index("{") : a.index("}") + 1]
    for companion in (ks.lease(a), ks.accesses(a), ks.churn(a)):
        assert companion != a and companion[companion.index("{") : companion.index("}") + 1] == tag
    assert ks.entry_of_lease(ks.lease(a)) == a
    assert ks.is_entry(a) and not ks.is_entry(ks.lease(a)) and not ks.is_entry(ks.tag("city:Moscow"))


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("rs:*:price_stats:*", "rs:v1.1:price_stats:{abc}", True),
        ("rs:*:price_stats:*", "rs:v1.1:cities:{abc}", False),
        ("rs:v1.?:*", "rs:v1.1:cities:{abc}", True),
        ("rs:v1.[12]:*", "rs:v1.3:cities:{abc}", False),
        ("rs:v1.[^3]:*", "rs:v1.2:cities:{abc}", True),
        (r"rs:v1.1:cities:\{abc\}", "rs:v1.1:cities:{abc}", True),
        (glob_escape("rs*:") + "*", "rs*:x", True),
        (glob_escape("rs*:") + "*", "rsX:x", False),
        ("rs:*a*a*a*b", "rs:xaxaxab", True),
        ("rs:*a*a*a*b", "rs:xaxaxa", False),
        ("rs:**", "rs:", True),
        ("rs:[a-c-]x", "rs:-x", True),
    ],
)
def test_redis_glob_matching(pattern: str, key: str, matches: bool) -> None:
    assert parse_glob(pattern).matches(key) is matches


def test_glob_matching_agrees_with_a_reference_on_every_small_case() -> None:
    """Exhaustive over short patterns and keys: the segment matcher equals the (backtracking) regex meaning."""
    import itertools
    import re

    def words(alphabet: str, n: int) -> list[str]:
        return ["".join(w) for k in range(n + 1) for w in itertools.product(alphabet, repeat=k)]

    keys = words("ab", 5)
    for pattern in words("ab*?", 4):
        reference = re.compile("".join(".*" if c == "*" else "." if c == "?" else c for c in pattern), re.S)
        glob = parse_glob(pattern)
        for key in keys:
            assert glob.matches(key) is (reference.fullmatch(key) is not None), (pattern, key)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("rs:[]", "empty character class"),
        ("rs:[^]x", "empty character class"),
        ("rs:[z-a]", "reversed range 'z-a'"),
        ("rs:[abc", "unterminated character class"),
        ("rs:x\\", "dangling escape"),
        ("rs:a]", "unmatched ']'"),
    ],
)
def test_malformed_globs_are_refused_naming_the_problem(pattern: str, problem: str) -> None:
    with pytest.raises(GlobError, match=re.escape(problem)):
        parse_glob(pattern)


def test_scan_asks_redis_for_the_literal_prefix_only() -> None:
    assert parse_glob("rs:v1.*:cities:*").scan_pattern == "rs:v1.*"
    assert parse_glob(r"rs\*:x?*").scan_pattern == r"rs\*:x*"


def test_adaptive_ttl_tiers_churn_and_jitter() -> None:
    p = AdaptiveTtl(default=300, frequent=1800, popular=3600, frequent_after=10, popular_after=100, floor=30)
    assert [p.seconds(n, 0) for n in (1, 9, 10, 99, 100, 5000)] == [300, 300, 1800, 1800, 3600, 3600]
    assert p.seconds(100, 1) == 1800 and p.seconds(100, 2) == 900
    assert p.seconds(100, 50) == 3600 / 16  # at most four halvings
    assert p.seconds(1, 4) == 30  # never below the floor
    assert FixedTtl(42).seconds(10**6, 9) == 42
    rng = random.Random(1)
    values = [jittered(300, 0.1, rng) for _ in range(200)]
    assert all(270 <= v <= 330 for v in values) and len(set(values)) > 100
    assert jittered(300, 0.0) == 300


def test_entry_round_trip_and_cache_info_append() -> None:
    response = cache_pb2.PriceStatsResponse(count=3, min=10, max=30, mean=20, median=20)
    e = Entry("rs:v1.1:price_stats:{x}", response.SerializeToString(), created=1000.0, ttl=300.5, delta=0.25, from_seq=2**40 + 7)
    back = Entry.decode(e.key, e.encode(), ("city:X",))
    assert back is not None and (back.payload, back.created, back.ttl, back.delta) == (e.payload, 1000.0, 300.5, 0.25)
    assert (back.from_seq, back.tags) == (2**40 + 7, ("city:X",))  # the fill's log position survives Redis
    assert Entry.decode(e.key, b"\x07" + e.encode()[1:]) is None  # another format version reads as a miss
    hit = cache_pb2.PriceStatsResponse.FromString(back.response(True, REDIS, 1012.75))
    assert hit.count == 3 and hit.median == 20
    assert hit.cache.hit and hit.cache.key == e.key and hit.cache.source == REDIS
    assert hit.cache.age.ToMilliseconds() == 12750 and hit.cache.ttl.ToMilliseconds() == 300500
    expected = cache_pb2.PriceStatsResponse()
    expected.CopyFrom(hit)
    assert back.response(True, REDIS, 1012.75) == expected.SerializeToString()  # byte-identical to protobuf's
    miss = cache_pb2.PriceStatsResponse.FromString(back.response(False, cache_pb2.CACHE_SOURCE_DATABASE, 2000.0))
    assert not miss.cache.hit and miss.cache.age.ToNanoseconds() == 0


def test_a_near_hit_is_byte_identical_to_protobufs_serialization() -> None:
    payload = cache_pb2.PriceStatsResponse(count=3, min=10, max=30).SerializeToString()
    for ttl, age in ((300.5, 12.75), (0.0, 0.0), (86400.0, 0.000000001), (5.0, 1e9), (1.0, -3.0)):
        e = Entry("rs:v1.1:price_stats:{" + "k" * 200 + "}", payload, created=1000.0, ttl=ttl, delta=0.0)
        expected = cache_pb2.PriceStatsResponse.FromString(payload)
        expected.cache.hit, expected.cache.key, expected.cache.source = True, e.key, NEAR
        if age > 0:
            expected.cache.age.FromNanoseconds(round(age * 1e9))
        if ttl:
            expected.cache.ttl.FromNanoseconds(round(ttl * 1e9))
        got = e.near_response(1000.0 + age)
        assert cache_pb2.PriceStatsResponse.FromString(got) == expected, (ttl, age)
        assert got == expected.SerializeToString(), (ttl, age)  # same bytes, field order included
        assert e.response(True, NEAR, 1000.0 + age) == got


def test_near_cache_is_bounded_lru_and_refuses_reads_older_than_an_invalidation() -> None:
    near = NearCache(max_entries=2, max_age=10)

    def entry(k: str) -> Entry:
        return Entry(k, b"", created=0.0, ttl=100, delta=0.0)

    assert not near.put(entry("a"), near.epoch, 1.0)  # disabled until subscribed to invalidations
    near.set_enabled(True)
    for k in "abc":
        assert near.put(entry(k), near.epoch, 1.0)
    assert near.get("a", 1.0) is None and near.get("b", 1.0) is not None  # a was least recent
    assert near.get("b", 11.0) is None  # max age
    epoch = near.epoch
    near.discard(["zzz"])
    assert not near.put(entry("d"), epoch, 1.0)  # an invalidation happened since the read began
    near.set_enabled(False)
    assert len(near) == 0


def test_request_validation_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as info:
        popular_params(cache_pb2.PopularPropertiesRequest(city=" ", limit=101))
    assert [f for f, _ in info.value.violations] == ["city", "limit"]
    for city in ("x" * 101, "Mos\x00cow", "Mos\ncow", "Mos\u200bcow"):
        with pytest.raises(InvalidArgument) as info:
            price_stats_params(cache_pb2.PriceStatsRequest(city=city))
        assert [f for f, _ in info.value.violations] == ["city"]
    with pytest.raises(InvalidArgument) as info:
        price_stats_params(cache_pb2.PriceStatsRequest(city="Moscow", property_type=99))  # type: ignore[arg-type]
    assert [f for f, _ in info.value.violations] == ["property_type"]
    assert popular_params(cache_pb2.PopularPropertiesRequest(city=" Kazan ")) == {"city": "Kazan", "limit": 10}
    assert price_stats_params(
        cache_pb2.PriceStatsRequest(city="Санкт-Петербург", property_type=common_pb2.PROPERTY_TYPE_ROOM)
    ) == {"city": "Санкт-Петербург", "property_type": "room"}


def test_a_query_is_declared_once() -> None:
    registry: dict[str, CachedQuery] = {}

    @cached_query(
        "listing_count",
        rpc="Cities",
        request=cache_pb2.CitiesRequest,
        params=lambda r: {},
        tags=lambda p: ["cities"],
        registry=registry,
    )
    async def listing_count(db):  # pragma: no cover - never called
        raise AssertionError

    assert registry["listing_count"].rpc == "Cities"
    with pytest.raises(ValueError):
        cached_query(
            "listing_count",
            rpc="Cities",
            request=cache_pb2.CitiesRequest,
            params=lambda r: {},
            tags=lambda p: [],
            registry=registry,
        )(listing_count.fetch)
    with pytest.raises(ValueError):
        cached_query("Bad-Name", rpc="Cities", request=cache_pb2.CitiesRequest, params=lambda r: {}, tags=lambda p: [])
