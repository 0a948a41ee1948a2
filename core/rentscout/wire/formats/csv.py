"""CSV (RFC 4180 as PostgreSQL's COPY writes it), with a header line opening the file.

Server: `COPY (SELECT ...) TO STDOUT (FORMAT csv)` as is. Records are lines unless a quoted field holds a
newline: one `bytes.translate` pass keeping only quotes and newlines proves there is none (C speed), else a
per-line parity walk finds the record ends. A stream starting at row 0 opens with the header line; an empty
export is just the header.

Client: the header line is written once; a segment that starts with it again has it dropped. Values of the
numeric and boolean columns of `properties` are converted, empty fields are None.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from rentscout.export.v1 import export_pb2
from rentscout.wire.formats.base import (
    ChunkWriter,
    Format,
    RecordSplitter,
    Segment,
    Stitcher,
    join,
    key_at,
    strip_lines,
)
from rentscout.wire.schema import BY_NAME, KEY, Column
from rentscout.wire.sql import ident

_KEEP_QUOTE_NL = bytes(b for b in range(256) if b not in (0x22, 0x0A))  # delete all but '"' and '\n'


def csv_field(name: str) -> str:
    if any(c in name for c in ',"\r\n') or not name:
        return '"' + name.replace('"', '""') + '"'
    return name


def header(columns: Sequence[str]) -> bytes:
    """The header line, without its line ending."""
    return ",".join(csv_field(c) for c in columns).encode()


# -- server ------------------------------------------------------------------------------------


class CsvSplitter(RecordSplitter):
    """Whole CSV records, aware of quoted newlines."""

    def _records(self, data: bytes | bytearray) -> Segment | None:
        marks = data.translate(None, _KEEP_QUOTE_NL)
        marks = marks[: marks.rfind(b"\n") + 1]
        if b'"' in marks.replace(b'""', b""):  # some line has an odd number of quotes
            return self._slow(data)
        return self._lines(data, marks.count(b"\n"), False)

    def _slow(self, data: bytes | bytearray) -> Segment | None:
        """Records with quoted newlines: walk lines, flipping 'inside quotes' on odd quote counts."""
        ends: list[int] = []
        inside = False
        pos = 0
        for line in data.split(b"\n")[:-1]:
            pos += len(line) + 1
            if line.count(b'"') & 1:
                inside = not inside
            if not inside:
                ends.append(pos)
        cut = ends[-1] if ends else 0
        if cut < len(data):
            self._carry.append(data[cut:])
        return Segment(data[:cut], len(ends), ends, False) if ends else None


class CsvWriter(ChunkWriter):
    """The header line opens the file; the hidden key (if any) is stripped from each record."""

    def __init__(self, columns: list[str], hidden_key: bool) -> None:
        self.header = header(columns) + b"\n"
        self.hidden_key = hidden_key

    def last_key(self, parts: list[Segment]) -> int:
        last = parts[-1]
        return key_at(last.data, last.last_start())

    def render(self, parts: list[Segment], rows_before: int) -> bytes:
        data = b"".join([self._strip(p) for p in parts]) if self.hidden_key else join(parts)
        return self.header + data if rows_before == 0 else data

    @staticmethod
    def _strip(seg: Segment) -> bytes:
        if seg.ends is None:
            return strip_lines(seg.data, b",")
        start, out = 0, []
        for end in seg.ends:
            out.append(seg.data[start:end].partition(b",")[2])
            start = end
        return b"".join(out)

    def trailer(self, rows_before: int, rows_total: int) -> bytes | None:
        """Closing bytes: only an empty export needs some (its header)."""
        return self.header if rows_total == 0 else None


# -- client ------------------------------------------------------------------------------------


class CsvStitcher(Stitcher):
    """One header line at the top of the file, whatever each segment repeats."""

    def __init__(self, columns: Sequence[str] = ()) -> None:
        super().__init__(columns)
        self._header_line: bytes | None = None  # the header line as written
        self._pending = b""  # the start of a segment until its first line is complete
        self._segment_started = False  # the current segment has produced data

    def _new_segment(self) -> None:
        self._segment_started = False

    def _owed(self) -> bytes:
        """A segment ended before its first line did: decide on what there is."""
        if not self._pending:
            return b""
        data, self._pending = self._pending, b""
        return self._first_line(data)

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._segment_started:
            return data
        data = self._pending + data
        if b"\n" not in data:  # wait for the whole first line (header or not)
            self._pending = data
            return b""
        self._pending = b""
        return self._first_line(data)

    def finish(self) -> bytes:
        """The owed bytes, or an empty export's header line."""
        owed = self._owed()
        if owed:
            return owed
        if self._header_line is None and self.columns:
            self._header_line = header(self.columns) + b"\n"
            return self._header_line
        return b""

    def _first_line(self, data: bytes) -> bytes:
        self._segment_started = True
        newline = data.find(b"\n")
        line = data[: newline + 1] if newline >= 0 else data
        is_header = bool(self.columns) and line.rstrip(b"\r\n") == header(self.columns)
        if self._header_line is None:  # the file's first bytes must be the header line
            if is_header or not self.columns:
                self._header_line = line
                return data
            ending = b"\r\n" if line.endswith(b"\r\n") else b"\n"
            self._header_line = header(self.columns) + ending
            return self._header_line + data
        return data[len(line) :] if is_header else data


def _value(column: str, text: str) -> Any:
    if text == "":
        return None
    known = BY_NAME.get(column)
    kind = known.kind if known is not None else "text"
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text.lower() in ("t", "true", "1")
    return text


class CsvFormat(Format):
    enum = export_pb2.EXPORT_FORMAT_CSV
    name = "csv"
    media_type = "text/csv"
    extension = "csv"
    copy_options = {"format": "csv"}

    def select_list(self, columns: Sequence[Column], hidden_key: bool) -> list[str]:
        return ([ident(KEY)] if hidden_key else []) + [ident(c.name) for c in columns]

    def splitter(self, columns: Sequence[Column]) -> RecordSplitter:
        return CsvSplitter()

    def writer(self, columns: Sequence[Column], hidden_key: bool) -> ChunkWriter:
        return CsvWriter([c.name for c in columns], hidden_key)

    def stitcher(self, columns: Sequence[str] = ()) -> Stitcher:
        return CsvStitcher(columns)

    def parse_rows(self, data: bytes, columns: Sequence[str]) -> list[dict[str, Any]]:
        """Header lines are skipped."""
        if not data:
            return []
        rows = []
        names = list(columns)
        for record in csv.reader(io.StringIO(data.decode(), newline="")):
            if not record or record == names:
                continue
            rows.append({c: _value(c, v) for c, v in zip(names, record, strict=False)})
        return rows


FORMAT = CsvFormat()
