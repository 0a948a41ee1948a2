"""Protocol-buffer wire pieces for the hand-encoded messages (cache_service/entry.py's CacheInfo,
export_service/flight_data.py's FlightData): one varint encoder for both. Each caller's docstring gives the
figure that keeps it hand-encoded; tests/unit/wire/test_protowire.py checks it against protobuf's own bytes."""

from __future__ import annotations

# the varints of 0..127 (one byte each), ready-made: a hot path may index this instead of calling varint()
SMALL_VARINTS = [bytes((i,)) for i in range(0x80)]


def varint(value: int) -> bytes:
    """The base-128 varint of a non-negative `value` (a field's value, or a length-delimited field's length)."""
    if value < 0x80:
        return SMALL_VARINTS[value]
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)
