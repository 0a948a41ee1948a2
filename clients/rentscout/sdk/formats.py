"""Export formats on the client: the SDK's use of the one format table (rentscout.wire.formats).

An export can arrive in several server streams ("segments"): the first one, the ones resumed after
a break, or one per PlanExport partition. Each segment's chunks concatenate to whole rows with the
format's framing (a CSV header line, a JSON array's brackets and commas). A format's `Stitcher` turns
any sequence of segments into exactly one valid file, whatever framing each segment repeats, with
bounded memory; `parse_rows` turns one chunk's bytes into dicts. How each format does both lives in
its module (rentscout.wire.formats.csv, .json, .jsonl).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rentscout.export.v1 import export_pb2
from rentscout.wire.formats import RowDecoder, Stitcher, by_enum, by_name

__all__ = [
    "ARROW",
    "CSV",
    "JSON",
    "JSONL",
    "RowDecoder",
    "Stitcher",
    "format_value",
    "merge_files",
    "parse_rows",
    "row_decoder",
    "stitcher",
]

CSV, JSON, JSONL = export_pb2.EXPORT_FORMAT_CSV, export_pb2.EXPORT_FORMAT_JSON, export_pb2.EXPORT_FORMAT_JSONL
ARROW = export_pb2.EXPORT_FORMAT_ARROW


def format_value(name: str | int) -> export_pb2.ExportFormat:
    """'csv' / 'json' / 'jsonl' / 'arrow' (or the enum value) -> ExportFormat."""
    return (by_enum(name) if isinstance(name, int) else by_name(name)).enum


def stitcher(fmt: int, columns: Sequence[str] = ()) -> Stitcher:
    """A Stitcher for one file of format `fmt`: `start_segment()` before each segment, `feed()` its
    chunks, `finish()` once at the end; write every returned piece in order."""
    return by_enum(fmt).stitcher(columns)


def parse_rows(fmt: int, data: bytes, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of one chunk (chunks hold whole rows). CSV header lines are skipped."""
    return by_enum(fmt).parse_rows(data, columns)


def row_decoder(fmt: int, columns: Sequence[str]) -> RowDecoder:
    """Parses the chunks of one stream in order (an Arrow chunk needs the schema of the stream's first)."""
    return by_enum(fmt).row_decoder(columns)


def merge_files(fmt: int, columns: Sequence[str], parts: Iterable[Iterable[bytes]]) -> Iterable[bytes]:
    """Valid files (each an iterable of byte blocks) -> one valid file, in the order given."""
    joined = stitcher(fmt, columns)
    for part in parts:
        owed = joined.start_segment()
        if owed:
            yield owed
        for block in part:
            out = joined.feed(block)
            if out:
                yield out
    tail = joined.finish()
    if tail:
        yield tail
