"""Cache entries as stored in Redis and the near cache, and the bytes a hit sends.

A value in Redis is a 25-byte header (format, created-at, TTL, compute time, the change-log position
its fill started from, see changes.py) followed by the response message serialized *without* its
`cache` field. A hit sends those bytes unchanged with
the encoded `CacheInfo` appended as field 15: protobuf concatenation merges fields, so the client
parses one complete response and the server never re-serializes the payload.

Why hand-encode CacheInfo instead of protobuf: measured with `.venv/bin/python bench/cache_bench.py`
(1M rows, 2 shared cores): appending CacheInfo to stored bytes costs 1.0-1.3 us per hit; parsing,
setting `cache` and serializing costs 2.4 us for PriceStats (0.2% of a near hit's 597 us p50) and
40.5 us for PopularProperties(limit=100) (6.6% of it), so it stays. tests/unit/cache/test_cache_units.py
proves the bytes identical to protobuf's serialization.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.keys import FORMAT_VERSION
from rentscout.wire.protowire import SMALL_VARINTS, varint

_HEADER = struct.Struct(">BdIIq")  # format, created (epoch s), logical ttl (ms), compute time (ms), from_seq
HEADER_SIZE = _HEADER.size

NEAR = cache_pb2.CACHE_SOURCE_NEAR
REDIS = cache_pb2.CACHE_SOURCE_REDIS
DATABASE = cache_pb2.CACHE_SOURCE_DATABASE
STALE = cache_pb2.CACHE_SOURCE_STALE
SOURCE_NAMES = {NEAR: "near", REDIS: "redis", DATABASE: "database", STALE: "stale"}


def _duration(seconds: float) -> bytes:
    """google.protobuf.Duration wire bytes (non-negative)."""
    whole = int(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    out = b""
    if whole:
        out += b"\x08" + varint(whole)
    if nanos:
        out += b"\x10" + varint(nanos)
    return out


def _len_field(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + varint(len(body)) + body


@dataclass(slots=True)
class Entry:
    """One cached answer; `payload` is the response without `cache`, ready to send."""

    key: str
    payload: bytes
    created: float  # epoch seconds when computed
    ttl: float  # logical TTL in seconds (0: not cached)
    delta: float  # seconds the computation took (XFetch)
    from_seq: int = 0  # every change at or below it was visible to the fill (changes.py)
    tags: tuple[str, ...] = ()  # what it depends on (not stored: the query derives them from its parameters)
    _key_field: bytes = field(default=b"", repr=False)
    _ttl_field: bytes = field(default=b"", repr=False)
    _near_tail: bytes = field(default=b"", repr=False)  # what follows the age in a near hit's CacheInfo

    def __post_init__(self) -> None:
        self._key_field = _len_field(0x12, self.key.encode())
        self._ttl_field = _len_field(0x22, _duration(self.ttl)) if self.ttl else b""
        self._near_tail = self._ttl_field + b"\x28" + varint(NEAR)

    @property
    def expires(self) -> float:
        return self.created + self.ttl

    def encode(self) -> bytes:
        return (
            _HEADER.pack(FORMAT_VERSION, self.created, int(self.ttl * 1000), int(self.delta * 1000), self.from_seq) + self.payload
        )

    @classmethod
    def decode(cls, key: str, raw: bytes, tags: tuple[str, ...] = ()) -> Entry | None:
        """None for a value written in another format (treated as a miss)."""
        if len(raw) < HEADER_SIZE or raw[0] != FORMAT_VERSION:
            return None
        _, created, ttl_ms, delta_ms, from_seq = _HEADER.unpack_from(raw)
        return cls(key, raw[HEADER_SIZE:], created, ttl_ms / 1000, delta_ms / 1000, from_seq, tags)

    def response(self, hit: bool, source: int, now: float) -> bytes:
        """The full response: payload + field 15 (CacheInfo), fields in number order like protobuf."""
        if hit and source == NEAR:
            return self.near_response(now)
        info = (b"\x08\x01" + self._key_field) if hit else self._key_field
        if hit and now > self.created:
            info += _len_field(0x1A, _duration(now - self.created))
        info += self._ttl_field + b"\x28" + varint(source)
        return self.payload + b"\x7a" + varint(len(info)) + info

    def near_response(self, now: float) -> bytes:
        """`response(True, NEAR, now)`: of a hit's CacheInfo, only the age is made per call."""
        age = _duration(now - self.created) if now > self.created else b""
        info = b"".join(
            (b"\x08\x01", self._key_field, *((b"\x1a", SMALL_VARINTS[len(age)], age) if age else ()), self._near_tail)
        )
        return b"".join((self.payload, b"\x7a", varint(len(info)), info))
