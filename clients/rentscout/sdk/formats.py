"""Export formats on the client: stitching stream segments into one valid file, and parsing rows.

An export can arrive in several server streams ("segments"): the first one, the ones resumed after
a break, or one per PlanExport partition. Each segment's chunks concatenate to whole rows with the
format's framing (a CSV header line, a JSON array's brackets and commas). `Stitcher` turns any
sequence of segments into exactly one valid file, whatever framing each segment repeats:
- CSV: the header line is written once; a segment that starts with it again has it dropped.
- JSON: one `[`, elements joined by commas, one `]`; each segment's own brackets and leading or
  trailing commas are dropped (elements are objects, so framing is whatever lies outside `{...}`).
- JSONL: segments are concatenated.
Memory stays bounded: only the few framing bytes after a JSON segment's last `}` are held back.

`parse_rows` turns one chunk's bytes into dicts (JSON values as the server typed them; CSV values
converted for the known numeric and boolean columns of `properties`, empty fields as None).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from rentscout.export.v1 import export_pb2
from rentscout.wire.schema import columns_of_kind

CSV, JSON, JSONL = export_pb2.EXPORT_FORMAT_CSV, export_pb2.EXPORT_FORMAT_JSON, export_pb2.EXPORT_FORMAT_JSONL
FORMAT_NAMES = {"csv": CSV, "json": JSON, "jsonl": JSONL}
EXTENSIONS = {CSV: "csv", JSON: "json", JSONL: "jsonl"}
_JSON_FRAMING = b" \t\r\n[],"

INT_COLUMNS = columns_of_kind("int")
FLOAT_COLUMNS = columns_of_kind("float")
BOOL_COLUMNS = columns_of_kind("bool")


def format_value(name: str | int) -> export_pb2.ExportFormat:
    """'csv' / 'json' / 'jsonl' (or the enum value) -> ExportFormat."""
    if isinstance(name, int):
        for fmt in EXTENSIONS:
            if fmt == name:
                return fmt
        raise ValueError(f"unknown export format {name}")
    try:
        return FORMAT_NAMES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown export format {name!r} (expected csv, json or jsonl)") from None


def csv_header(columns: Sequence[str]) -> bytes:
    return ",".join(columns).encode()


class Stitcher:
    """Call `start_segment()` before each segment, `feed()` its chunks, `finish()` once at the end;
    write every returned piece in order. See the module docstring."""

    def __init__(self, fmt: int, columns: Sequence[str] = ()) -> None:
        self.fmt = fmt
        self.columns = list(columns)
        self._header_line: bytes | None = None  # CSV: the header line as written
        self._pending = b""  # CSV: the start of a segment until its first line is complete
        self._segment_started = False  # CSV: the current segment has produced data
        self._wrote_element = False  # JSON: any element written to the file
        self._in_body = False  # JSON: the current segment reached its first '{'
        self._lead = b""  # JSON: framing before the current segment's first '{'
        self._held = b""  # JSON: framing after the current segment's last '}'
        self._joiner = b","

    def start_segment(self, columns: Sequence[str] = ()) -> bytes:
        """Begin the next segment; returns bytes still owed from the previous one (write them first)."""
        owed = self._flush_csv()
        if columns:
            self.columns = list(columns)
        self._segment_started = False
        self._in_body = False
        self._lead = self._held = b""
        return owed

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self.fmt == CSV:
            return self._feed_csv(data)
        if self.fmt == JSON:
            return self._feed_json(data)
        return data

    def finish(self) -> bytes:
        """The file's closing bytes (JSON's `]`, or an empty CSV's header line)."""
        if self.fmt == CSV:
            owed = self._flush_csv()
            if owed:
                return owed
            if self._header_line is None and self.columns:
                self._header_line = csv_header(self.columns) + b"\n"
                return self._header_line
            return b""
        if self.fmt != JSON:
            return b""
        if not self._wrote_element:
            framing = self._lead + self._held
            return b"[]\n" if b"\n" in framing else b"[]"
        return self._held.replace(b",", b"") if b"]" in self._held else b"]"

    def _flush_csv(self) -> bytes:
        """A segment ended before its first line did: decide on what there is."""
        if self.fmt != CSV or not self._pending:
            return b""
        data, self._pending = self._pending, b""
        return self._first_csv_line(data)

    def _feed_csv(self, data: bytes) -> bytes:
        if self._segment_started:
            return data
        data = self._pending + data
        if b"\n" not in data:  # wait for the whole first line (header or not)
            self._pending = data
            return b""
        self._pending = b""
        return self._first_csv_line(data)

    def _first_csv_line(self, data: bytes) -> bytes:
        self._segment_started = True
        newline = data.find(b"\n")
        line = data[: newline + 1] if newline >= 0 else data
        is_header = bool(self.columns) and line.rstrip(b"\r\n") == csv_header(self.columns)
        if self._header_line is None:  # the file's first bytes must be the header line
            if is_header or not self.columns:
                self._header_line = line
                return data
            ending = b"\r\n" if line.endswith(b"\r\n") else b"\n"
            self._header_line = csv_header(self.columns) + ending
            return self._header_line + data
        return data[len(line):] if is_header else data

    def _feed_json(self, data: bytes) -> bytes:
        prefix = b""
        if not self._in_body:
            start = data.find(b"{")
            if start < 0:  # a chunk of framing only (e.g. "[" before any row)
                self._lead += data
                return b""
            lead, data = self._lead + data[:start], data[start:]
            self._in_body, self._lead = True, b""
            if self._wrote_element:
                prefix = self._joiner  # the previous segment's trailing framing was dropped
            else:
                lead = lead.replace(b",", b"")
                prefix = lead if b"[" in lead else b"[" + lead
        else:
            data, self._held = self._held + data, b""  # framing between two elements of one segment
        end = data.rfind(b"}") + 1
        if end == 0:
            self._held = data
            return prefix
        body, self._held = data[:end], data[end:]
        if not self._wrote_element:
            self._wrote_element = True
            self._joiner = b",\n" if b"},\n" in body[:65536] else b","
        return prefix + body


def _csv_value(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in INT_COLUMNS:
        return int(text)
    if column in FLOAT_COLUMNS:
        return float(text)
    if column in BOOL_COLUMNS:
        return text.lower() in ("t", "true", "1")
    return text


def parse_rows(fmt: int, data: bytes, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of one chunk (chunks hold whole rows). CSV header lines are skipped."""
    if not data:
        return []
    if fmt == JSONL:
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]
    if fmt == JSON:
        inner = data.strip(_JSON_FRAMING)
        return orjson.loads(b"[" + inner + b"]") if inner else []
    rows = []
    header = list(columns)
    for record in csv.reader(io.StringIO(data.decode(), newline="")):
        if not record or record == header:
            continue
        rows.append({c: _csv_value(c, v) for c, v in zip(header, record, strict=False)})
    return rows


def merge_files(fmt: int, columns: Sequence[str], parts: Iterable[Iterable[bytes]]) -> Iterable[bytes]:
    """Valid files (each an iterable of byte blocks) -> one valid file, in the order given."""
    stitcher = Stitcher(fmt, columns)
    for part in parts:
        owed = stitcher.start_segment()
        if owed:
            yield owed
        for block in part:
            out = stitcher.feed(block)
            if out:
                yield out
    tail = stitcher.finish()
    if tail:
        yield tail
