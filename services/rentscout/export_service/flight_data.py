"""FlightData messages encoded by hand from Arrow IPC messages, so a record batch's body is copied once.

A FlightData is `data_header` (2: the IPC message's flatbuffer), `app_metadata` (3) and `data_body` (1000: the
message body). pyarrow serializes a batch as one encapsulated IPC message (continuation marker, metadata length,
flatbuffer, body); its parts are sliced from that buffer and joined behind their protobuf tags in one pass.
The DoGet handler is registered with an identity serializer for these bytes (protobuf's field order is free, and
Flight's readers take any).
"""

from __future__ import annotations

import struct
from typing import Any

from rentscout.wire.protowire import varint

_LEN = struct.Struct("<i")
HEADER_TAG = b"\x12"  # field 2, length-delimited
METADATA_TAG = b"\x1a"  # field 3, length-delimited
BODY_TAG = b"\xc2\x3e"  # field 1000, length-delimited


def split_message(message: Any) -> tuple[memoryview, memoryview]:
    """(flatbuffer header, body) of one encapsulated IPC message (a pyarrow Buffer or bytes)."""
    view = memoryview(message).cast("B")
    if bytes(view[:4]) != b"\xff\xff\xff\xff":
        raise ValueError("not an encapsulated Arrow IPC message")
    size = _LEN.unpack_from(view, 4)[0]
    return view[8 : 8 + size], view[8 + size :]


def flight_data(message: Any, app_metadata: bytes = b"") -> bytes:
    """The serialized FlightData of one encapsulated IPC message (schema or record batch)."""
    header, body = split_message(message)
    parts: list[Any] = [HEADER_TAG, varint(len(header)), header]
    if app_metadata:
        parts += [METADATA_TAG, varint(len(app_metadata)), app_metadata]
    if len(body):
        parts += [BODY_TAG, varint(len(body)), body]
    return b"".join(parts)


def identity(data: bytes) -> bytes:
    """The response serializer of pre-encoded messages."""
    return data
