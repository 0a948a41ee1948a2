"""The one table of export formats of the wire layer."""

from __future__ import annotations

import pytest

from rentscout.export.v1 import export_pb2
from rentscout.wire import formats
from rentscout.wire.formats import Format


def test_every_export_format_of_the_proto_has_exactly_one_format() -> None:
    numbers = [v.number for v in export_pb2.ExportFormat.DESCRIPTOR.values if v.number != 0]
    assert sorted(f.enum for f in formats.FORMATS) == sorted(numbers)
    assert formats.names() == ["csv", "json", "jsonl"]
    for fmt in formats.FORMATS:
        assert isinstance(fmt, Format)
        assert formats.by_enum(fmt.enum) is fmt and formats.by_name(fmt.name) is fmt
        assert formats.by_name(f" {fmt.name.upper()} ") is fmt
        assert export_pb2.ExportFormat.Name(fmt.enum) == "EXPORT_FORMAT_" + fmt.name.upper()
        assert fmt.extension == fmt.name and "/" in fmt.media_type


def test_unknown_formats_are_value_errors() -> None:
    with pytest.raises(ValueError, match="expected csv, json or jsonl"):
        formats.by_name("xml")
    for number in (export_pb2.EXPORT_FORMAT_UNSPECIFIED, 99):
        with pytest.raises(ValueError, match="unknown export format"):
            formats.by_enum(number)
