"""The hand-written varint against protobuf's own serialization of the same number."""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import UInt64Value

from rentscout.wire.protowire import varint


@pytest.mark.parametrize("n", [1, 2, 127, 128, 300, 16_383, 16_384, 2**21, 2**32 - 1, 2**35 + 7, 2**63, 2**64 - 1])
def test_varint_is_protobufs_encoding(n: int) -> None:
    assert b"\x08" + varint(n) == UInt64Value(value=n).SerializeToString()


def test_zero_is_one_byte() -> None:
    assert varint(0) == b"\x00"
