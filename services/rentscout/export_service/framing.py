"""Byte slicing of COPY output into chunks of whole rows, with work per block (never per row) on the hot path.

COPY hands over blocks cut anywhere. `RecordSplitter` keeps the partial last record for the next block
and returns the whole records as a Segment. For JSON (COPY text format) a record is a line. For CSV a
record is a line unless a quoted field holds a newline: a check over only the quotes and newlines of the
block (bytes.translate, C speed) proves there is none, else a per-line parity walk finds the records.

`ChunkAssembler` packs segments into chunks of at most rows_per_chunk rows and about bytes_per_chunk
bytes (a single larger row travels alone). Writers (csv/json) turn a chunk's segments into the bytes of
the format and find the chunk's last id for the resume token.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

_INT = re.compile(rb"-?[0-9]+")
_KEEP_QUOTE_NL = bytes(b for b in range(256) if b not in (0x22, 0x0A))  # delete all but '"' and '\n'
_KEEP_CONTROLS = bytes(b for b in range(256) if b >= 0x20)  # delete all but control bytes
_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")
_VTAB = re.compile(rb"(?<!\\)((?:\\\\)*)\\v")  # COPY's \v escape (an odd backslash run before v)
_COPY_TOKEN = re.compile(rb'\\.|"', re.S)  # an escape pair, or a bare '"' (a column boundary)
_MARKER_TO_QUOTE = bytes.maketrans(b"\x1e", b'"')  # sqlgen.MARKER


class FramingError(Exception):
    """COPY output did not end on a row boundary (never expected from PostgreSQL)."""


@dataclass(slots=True)
class Segment:
    """Whole records. `ends` (record end offsets) only when records may span lines (CSV slow path);
    `controls` when the bytes may hold control bytes other than the row newlines (JSON fix-ups)."""

    data: bytes | bytearray
    rows: int
    ends: list[int] | None = None
    controls: bool = True

    def last_start(self) -> int:
        """Offset where the last record starts."""
        if self.ends is not None:
            return self.ends[-2] if len(self.ends) > 1 else 0
        return self.data.rfind(b"\n", 0, len(self.data) - 1) + 1

    def cut(self, max_rows: int, max_bytes: int) -> tuple[int, int]:
        """(offset, rows) of at most max_rows whole records within max_bytes ((0, 0) if none fits)."""
        data, ends = self.data, self.ends
        if ends is not None:
            rows = min(max_rows, len(ends))
            if ends[rows - 1] > max_bytes:
                rows = bisect_right(ends, max_bytes)
            return (ends[rows - 1] if rows else 0), rows
        if max_rows < self.rows:
            pos, rows = _nth_line_end(data, max_rows, self.rows), max_rows
        else:
            pos, rows = len(data), self.rows
        if pos > max_bytes:
            pos = data.rfind(b"\n", 0, max_bytes) + 1
            rows = data.count(b"\n", 0, pos)
        return pos, rows

    def split(self, pos: int, rows: int) -> tuple[Segment, Segment]:
        """Head (`rows` records up to `pos`) and the rest."""
        data, ends = self.data, self.ends
        if ends is not None:
            return (Segment(data[:pos], rows, ends[:rows], self.controls),
                    Segment(data[pos:], len(ends) - rows, [e - pos for e in ends[rows:]], self.controls))
        return (Segment(data[:pos], rows, None, self.controls),
                Segment(data[pos:], self.rows - rows, None, self.controls))


def _nth_line_end(data: bytes | bytearray, k: int, total: int) -> int:
    """Offset just after the k-th newline (1 <= k < total newlines), from a proportional first guess."""
    pos = len(data) * k // total
    seen = data.count(b"\n", 0, pos)
    while seen < k:
        pos = data.index(b"\n", pos) + 1
        seen += 1
    while seen > k:
        pos = data.rindex(b"\n", 0, pos)
        seen -= 1
    return data.rindex(b"\n", 0, pos) + 1 if pos and data[pos - 1] != 0x0A else pos


class RecordSplitter:
    """Blocks in, whole-record segments out; `csv` enables quoted-newline awareness."""

    def __init__(self, csv: bool, markers_per_row: int = 0) -> None:
        self._csv = csv
        self._controls_per_row = markers_per_row + 1  # JSON: the markers of sqlgen, and the newline
        self._carry: list[bytes] = []

    def feed(self, block: bytes | bytearray) -> Segment | None:
        """asyncpg hands over bytearrays: kept as they are (no copy); chunks become bytes when joined."""
        if b"\n" not in block:
            self._carry.append(block)
            return None
        if self._carry:
            self._carry.append(block)
            data = b"".join(self._carry)
            self._carry.clear()
        else:
            data = block
        cut = data.rfind(b"\n") + 1
        # One C pass keeps only the bytes that matter (newlines and quotes, or control bytes): rows are
        # counted on that short string.
        if self._csv:
            marks = data.translate(None, _KEEP_QUOTE_NL)
            marks = marks[:marks.rfind(b"\n") + 1]
            if b'"' in marks.replace(b'""', b""):  # some line has an odd number of quotes
                return self._slow(data)
            rows, controls = marks.count(b"\n"), False
        else:
            marks = data.translate(None, _KEEP_CONTROLS)
            marks = marks[:marks.rfind(b"\n") + 1]
            rows = marks.count(b"\n")
            controls = len(marks) != rows * self._controls_per_row  # a value holds a raw control byte
        if cut < len(data):
            self._carry.append(data[cut:])
            data = data[:cut]
        return Segment(data, rows, None, controls)

    def _slow(self, data: bytes | bytearray) -> Segment | None:
        """CSV records with quoted newlines: walk lines, flipping 'inside quotes' on odd quote counts."""
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

    def finish(self) -> None:
        if any(self._carry):
            raise FramingError("the export stream ended inside a row")


class ChunkAssembler:
    """Packs segments into chunks (lists of segments) of <= rows_per_chunk rows, ~bytes_per_chunk bytes."""

    def __init__(self, rows_per_chunk: int, bytes_per_chunk: int) -> None:
        self.max_rows = rows_per_chunk
        self.max_bytes = bytes_per_chunk
        self._parts: list[Segment] = []
        self._rows = 0
        self._bytes = 0

    def add(self, seg: Segment) -> Iterator[list[Segment]]:
        while seg.rows:
            room_rows, room_bytes = self.max_rows - self._rows, self.max_bytes - self._bytes
            if seg.rows <= room_rows and len(seg.data) <= room_bytes:
                self._take(seg)
                if self._rows >= self.max_rows or self._bytes >= self.max_bytes:
                    yield self._pop()
                return
            pos, rows = seg.cut(room_rows, room_bytes)
            if pos == 0:
                if self._rows:  # the next row does not fit: send what we have first
                    yield self._pop()
                    continue
                pos, rows = seg.cut(1, len(seg.data))  # a row larger than the byte budget goes alone
            head, seg = seg.split(pos, rows) if pos < len(seg.data) else (seg, Segment(b"", 0))
            self._take(head)
            yield self._pop()

    def _take(self, seg: Segment) -> None:
        self._parts.append(seg)
        self._rows += seg.rows
        self._bytes += len(seg.data)

    def _pop(self) -> list[Segment]:
        parts, self._parts, self._rows, self._bytes = self._parts, [], 0, 0
        return parts

    def flush(self) -> list[Segment] | None:
        return self._pop() if self._rows else None


def _join(parts: list[Segment]) -> bytes:
    if len(parts) == 1:
        data = parts[0].data
        return data if type(data) is bytes else bytes(data)
    return b"".join([p.data for p in parts])


def _strip_lines(data: bytes, sep: bytes) -> bytes:
    """Drop each line's leading hidden key, up to and including the first `sep`."""
    lines = data.split(b"\n")
    lines.pop()
    return b"\n".join([line.partition(sep)[2] for line in lines]) + b"\n"


def csv_field(name: str) -> str:
    if any(c in name for c in ',"\r\n') or not name:
        return '"' + name.replace('"', '""') + '"'
    return name


class CsvWriter:
    """RFC 4180 CSV as COPY writes it; a header line opens the file."""

    trailer_when_empty = True

    def __init__(self, columns: list[str], hidden_key: bool) -> None:
        self.header = (",".join(csv_field(c) for c in columns) + "\n").encode()
        self.hidden_key = hidden_key

    def last_key(self, parts: list[Segment]) -> int:
        last = parts[-1]
        m = _INT.match(last.data, last.last_start())
        if m is None:
            raise FramingError("no id at the start of the last row")
        return int(m[0])

    def render(self, parts: list[Segment], rows_before: int) -> bytes:
        data = b"".join([self._strip(p) for p in parts]) if self.hidden_key else _join(parts)
        return self.header + data if rows_before == 0 else data

    @staticmethod
    def _strip(seg: Segment) -> bytes:
        if seg.ends is None:
            return _strip_lines(seg.data, b",")
        start, out = 0, []
        for end in seg.ends:
            out.append(seg.data[start:end].partition(b",")[2])
            start = end
        return b"".join(out)

    def trailer(self, rows_before: int, rows_total: int) -> bytes | None:
        """Closing bytes: only an empty export needs some (its header)."""
        return self.header if rows_total == 0 else None


class JsonWriter:
    """JSON Lines, or (array=True) one array: '[\\n' row (',\\n' row)* '\\n]\\n', '[]\\n' when empty."""

    def __init__(self, hidden_key: bool, array: bool, markers_per_row: int = 0) -> None:
        self.hidden_key = hidden_key
        self.array = array
        self.markers_per_row = markers_per_row

    def last_key(self, parts: list[Segment]) -> int:
        last = parts[-1]
        start = last.last_start()
        m = _INT.match(last.data, start if self.hidden_key else start + 6)  # after '{"id":' (markers for quotes)
        if m is None:
            raise FramingError("no id at the start of the last row")
        return int(m[0])

    def render(self, parts: list[Segment], rows_before: int) -> bytes:
        data = _join(parts)
        if self.hidden_key:
            data = _strip_lines(data, b'"')
        if any(p.controls for p in parts):
            data = fix_controls(data, self.markers_per_row)
        elif self.markers_per_row:
            data = data.translate(_MARKER_TO_QUOTE)
        data = fix_escapes(data)
        if not self.array:
            return data
        return (b",\n" if rows_before else b"[\n") + data[:-1].replace(b"\n", b",\n")

    def trailer(self, rows_before: int, rows_total: int) -> bytes | None:
        if not self.array:
            return None
        return b"\n]\n" if rows_total else b"[]\n"


def fix_escapes(data: bytes) -> bytes:
    """Spell what COPY's text format escapes differently from JSON (only backslashes can announce it)."""
    if b"\\" in data:
        if b'"\\N"' in data:  # a NULL string column: `"\N"` can only come from COPY's NULL marker
            data = data.replace(b'"\\N"', b"null")
        if b"\\v" in data:
            data = _VTAB.sub(rb"\1\\u000b", data)
    return data


def fix_controls(data: bytes, markers_per_row: int) -> bytes:
    """Lines where a value holds raw control bytes: markers become quotes only in the constant columns
    (even positions between unescaped '"'), control bytes in values become \\u00XX."""
    out = []
    for line in data.split(b"\n")[:-1]:
        if len(line.translate(None, _KEEP_CONTROLS)) == markers_per_row:
            out.append(line.translate(_MARKER_TO_QUOTE))
            continue
        fields, start = [], 0
        for m in _COPY_TOKEN.finditer(line):
            if m[0] == b'"':
                fields.append(line[start:m.start()])
                start = m.end()
        fields.append(line[start:])
        fields[::2] = [f.translate(_MARKER_TO_QUOTE) if markers_per_row else f for f in fields[::2]]
        out.append(b'"'.join(_CONTROL.sub(_escape_control, f) for f in fields))
    return b"\n".join(out) + b"\n"


def _escape_control(m: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % m[0][0]
