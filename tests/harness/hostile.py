"""Hypothesis strategies that build random and extreme request messages from protobuf descriptors.

Every field of every request gets hostile values: extreme and negative numbers, NaN and infinities,
empty, huge (1 MB) and control-character strings, SQL fragments, unknown enum numbers, out-of-range
timestamps, nested messages and repeated fields.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor as d
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

HOSTILE_STRINGS = (
    "",
    " ",
    "Moscow",
    "moscow",
    "Москва",
    "Saint Petersburg",
    "properties",
    "id",
    "price",
    "*",
    "%",
    "_",
    "?",
    "'; DROP TABLE properties; --",
    '" OR 1=1 --',
    "properties; DELETE FROM properties",
    "$1",
    "\\",
    "\\x00",
    "\x00",
    "\x1b[31m",
    "line\nbreak",
    "\r\n",
    "\u202e\u0000",
    "😀" * 10,
    "a" * 257,
    "x" * 1_000_000,
    "SELECT pg_sleep(10)",
    "pg_terminate_backend(1)",
    '{"a":1}',
    "city:*",
    "rentscout:*",
    "*:*",
    "Bearer x",
    "../../etc/passwd",
    "NaN",
    "-1",
    "9" * 40,
)
INT_EDGES = (0, 1, -1, 2, 10, 100, 1000, 2**31 - 1, -(2**31), 2**53, 2**63 - 1, -(2**63))


def _int_strategy(bits: int, signed: bool) -> st.SearchStrategy[int]:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = [v for v in INT_EDGES if lo <= v <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def _scalar(field: d.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in (d.FieldDescriptor.TYPE_INT32, d.FieldDescriptor.TYPE_SINT32, d.FieldDescriptor.TYPE_SFIXED32):
        return _int_strategy(32, True)
    if t in (d.FieldDescriptor.TYPE_INT64, d.FieldDescriptor.TYPE_SINT64, d.FieldDescriptor.TYPE_SFIXED64):
        return _int_strategy(64, True)
    if t in (d.FieldDescriptor.TYPE_UINT32, d.FieldDescriptor.TYPE_FIXED32):
        return _int_strategy(32, False)
    if t in (d.FieldDescriptor.TYPE_UINT64, d.FieldDescriptor.TYPE_FIXED64):
        return _int_strategy(64, False)
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if t == d.FieldDescriptor.TYPE_DOUBLE else 32)
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == d.FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=40))
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == d.FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None  # an enum field always names its enum
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 1000))  # unknown numbers too
    raise TypeError(f"unsupported field type {t}")


def _timestamp() -> st.SearchStrategy[Message]:
    from google.protobuf.timestamp_pb2 import Timestamp

    return st.builds(
        Timestamp,
        seconds=st.one_of(st.integers(-(2**62), 2**62), st.integers(0, 2_000_000_000)),
        nanos=st.one_of(st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1)),
    )


def _duration() -> st.SearchStrategy[Message]:
    from google.protobuf.duration_pb2 import Duration

    return st.builds(Duration, seconds=_int_strategy(64, True), nanos=st.integers(-(2**31), 2**31 - 1))


def messages(descriptor: d.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random instances of the message type (any subset of fields set, oneofs included)."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _timestamp()
    if descriptor.full_name == "google.protobuf.Duration":
        return _duration()
    cls = GetMessageClass(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == d.FieldDescriptor.TYPE_MESSAGE:
            assert field.message_type is not None  # a message field always names its message
            if depth >= 3 or field.message_type.GetOptions().map_entry:
                continue
            value = messages(field.message_type, depth + 1)
        else:
            value = _scalar(field)
        fields[field.name] = st.lists(value, max_size=4) if field.is_repeated else value

    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        for name, value in values.items():
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                getattr(msg, name).extend(value) if field.type != d.FieldDescriptor.TYPE_MESSAGE else [
                    getattr(msg, name).add().CopyFrom(v) for v in value
                ]
            elif field.type == d.FieldDescriptor.TYPE_MESSAGE:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=fields).map(build)
