"""The one table of export formats, the shared enum names and validation rules of the wire layer."""

from __future__ import annotations

import pytest

from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2
from rentscout.wire import enums, formats, validation
from rentscout.wire.formats import Format


def test_every_export_format_of_the_proto_has_exactly_one_format() -> None:
    numbers = [v.number for v in export_pb2.ExportFormat.DESCRIPTOR.values if v.number != 0]
    assert sorted(f.enum for f in formats.FORMATS) == sorted(numbers)
    assert formats.names() == ["csv", "json", "jsonl", "arrow"]
    for fmt in formats.FORMATS:
        assert isinstance(fmt, Format)
        assert formats.by_enum(fmt.enum) is fmt and formats.by_name(fmt.name) is fmt
        assert formats.by_name(f" {fmt.name.upper()} ") is fmt
        assert export_pb2.ExportFormat.Name(fmt.enum) == "EXPORT_FORMAT_" + fmt.name.upper()
        assert fmt.extension == {"arrow": "arrows"}.get(fmt.name, fmt.name) and "/" in fmt.media_type  # IANA: .arrows


def test_unknown_formats_are_value_errors() -> None:
    with pytest.raises(ValueError, match="expected csv, json, jsonl or arrow"):
        formats.by_name("xml")
    for number in (export_pb2.EXPORT_FORMAT_UNSPECIFIED, 99):
        with pytest.raises(ValueError, match="unknown export format"):
            formats.by_enum(number)


def test_enum_short_names() -> None:
    assert enums.name_of(enums.PROPERTY_TYPE, common_pb2.PROPERTY_TYPE_STUDIO) == "studio"
    assert enums.name_of(enums.PROPERTY_TYPE, 99) == "99"  # a newer server's value stays visible
    assert enums.enum_value(enums.LISTING_SOURCE, "avito") == common_pb2.LISTING_SOURCE_AVITO
    assert enums.enum_value(enums.LISTING_SOURCE, "LISTING_SOURCE_CIAN") == common_pb2.LISTING_SOURCE_CIAN
    assert 0 not in enums.short_names(enums.PROPERTY_TYPE)
    assert enums.short_names(enums.LISTING_SOURCE)[common_pb2.LISTING_SOURCE_CIAN] == "cian"
    with pytest.raises(ValueError):
        enums.enum_value(enums.PROPERTY_TYPE, 99)
    with pytest.raises(ValueError, match="expected one of"):
        enums.enum_value(enums.PROPERTY_TYPE, "castle")


def test_city_rule() -> None:
    assert validation.city_problem("Санкт-Петербург") is None
    assert validation.city_problem("x" * validation.MAX_CITY_LENGTH) is None
    assert validation.city_problem("") == "must not be empty"
    assert "at most" in (validation.city_problem("x" * (validation.MAX_CITY_LENGTH + 1)) or "")
    for bad in ("a\x00b", "Mos\ncow", "Mos\u200bcow"):
        assert validation.city_problem(bad) == "must not contain control or unassigned characters"
