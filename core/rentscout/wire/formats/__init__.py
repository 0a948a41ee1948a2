"""The export formats, one module each, and the one table of them that the server, the runs bookkeeping,
the SDK and the CLI all use. A new format is a new module (a `Format` subclass, see base) and one line in
`FORMATS`."""

from __future__ import annotations

from rentscout.wire.formats import arrow, csv, json, jsonl
from rentscout.wire.formats.base import ChunkWriter, Format, FramingError, RecordSplitter, RowDecoder, Segment, Stitcher

__all__ = [
    "FORMATS",
    "ChunkWriter",
    "Format",
    "FramingError",
    "RecordSplitter",
    "RowDecoder",
    "Segment",
    "Stitcher",
    "by_enum",
    "by_name",
    "names",
]

FORMATS: tuple[Format, ...] = (
    csv.FORMAT,
    json.FORMAT,
    jsonl.FORMAT,
    arrow.FORMAT,
)
_BY_ENUM: dict[int, Format] = {f.enum: f for f in FORMATS}
_BY_NAME: dict[str, Format] = {f.name: f for f in FORMATS}


def names() -> list[str]:
    return [f.name for f in FORMATS]


def _choices() -> str:
    *rest, last = names()
    return f"{', '.join(rest)} or {last}" if rest else last


def by_enum(value: int) -> Format:
    """The format of an ExportFormat number; ValueError for UNSPECIFIED or an unknown number."""
    try:
        return _BY_ENUM[value]
    except KeyError:
        raise ValueError(f"unknown export format {value}") from None


def by_name(name: str) -> Format:
    """The format called `name` (any case, surrounding blanks ignored); ValueError when there is none."""
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown export format {name!r} (expected {_choices()})") from None
