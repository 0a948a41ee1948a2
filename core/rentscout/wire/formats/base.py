"""What every export format provides, and the byte-level pieces the formats share.

A `Format` is one export format end to end: its `ExportFormat` number, name, media type and file extension;
on the server the pure parts of a stream (the SELECT list and COPY options PostgreSQL renders it with, how
COPY output splits into whole records, how a chunk of records becomes the format's bytes); on the client how
the chunks of several streams (resumed, or PlanExport partitions) join into one valid file, and how a
chunk's bytes parse back into rows. Nothing here does I/O.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rentscout.export.v1 import export_pb2
from rentscout.wire.schema import Column

INT = re.compile(rb"-?[0-9]+")
RowDecoder = Callable[[bytes], list[dict[str, Any]]]  # one stream's chunks, in order -> their rows


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
            return (
                Segment(data[:pos], rows, ends[:rows], self.controls),
                Segment(data[pos:], len(ends) - rows, [e - pos for e in ends[rows:]], self.controls),
            )
        return (Segment(data[:pos], rows, None, self.controls), Segment(data[pos:], self.rows - rows, None, self.controls))


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


def key_at(data: bytes | bytearray, pos: int) -> int:
    """The integer at `pos`: the key a record starts with (found there in each format's own way)."""
    m = INT.match(data, pos)
    if m is None:
        raise FramingError("no id at the start of the last row")
    return int(m[0])


def join(parts: list[Segment]) -> bytes:
    if len(parts) == 1:
        data = parts[0].data
        return data if type(data) is bytes else bytes(data)
    return b"".join([p.data for p in parts])


def strip_lines(data: bytes | bytearray, sep: bytes) -> bytes:
    """Drop each line's leading hidden key, up to and including the first `sep`."""
    lines = data.split(b"\n")
    lines.pop()
    return b"\n".join([line.partition(sep)[2] for line in lines]) + b"\n"


class RecordSplitter(ABC):
    """COPY blocks (cut anywhere) in, segments of whole records out; the partial last record waits for the
    next block."""

    def __init__(self) -> None:
        self._carry: list[bytes | bytearray] = []

    def feed(self, block: bytes | bytearray) -> Segment | None:
        """asyncpg hands over bytearrays: kept as they are (no copy); chunks become bytes when joined."""
        if b"\n" not in block:
            self._carry.append(block)
            return None
        if self._carry:
            self._carry.append(block)
            data: bytes | bytearray = b"".join(self._carry)
            self._carry.clear()
        else:
            data = block
        return self._records(data)

    @abstractmethod
    def _records(self, data: bytes | bytearray) -> Segment | None:
        """The whole records of `data` (which holds a newline); the rest is carried (see `_lines`)."""

    def _lines(self, data: bytes | bytearray, rows: int, controls: bool) -> Segment:
        """`data` up to its last newline as a segment of `rows` records; the rest is carried."""
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            self._carry.append(data[cut:])
            data = data[:cut]
        return Segment(data, rows, None, controls)

    def finish(self) -> None:
        if any(self._carry):
            raise FramingError("the export stream ended inside a row")


class ChunkWriter(ABC):
    """The bytes of one chunk of whole records, and the key of its last record (for its resume token)."""

    threaded = False  # True: `render` is real work that releases the GIL; the server runs it in a worker thread

    @abstractmethod
    def last_key(self, parts: list[Segment]) -> int: ...

    @abstractmethod
    def render(self, parts: list[Segment], rows_before: int) -> bytes:
        """The chunk's bytes; `rows_before` rows were sent earlier (0: the chunk opens the file)."""

    @abstractmethod
    def trailer(self, rows_before: int, rows_total: int) -> bytes | None:
        """Closing bytes after the last chunk (sent as a chunk of 0 rows), or None."""


class Stitcher(ABC):
    """Joins segments (server streams: the first, resumed ones, PlanExport partitions) into one valid file.

    Call `start_segment()` before each segment, `feed()` its chunks, `finish()` once at the end; write every
    returned piece in order."""

    def __init__(self, columns: Sequence[str] = ()) -> None:
        self.columns = list(columns)

    def start_segment(self, columns: Sequence[str] = ()) -> bytes:
        """Begin the next segment; returns bytes still owed from the previous one (write them first)."""
        owed = self._owed()
        if columns:
            self.columns = list(columns)
        self._new_segment()
        return owed

    def _owed(self) -> bytes:
        """Bytes held back from the segment that ends."""
        return b""

    def _new_segment(self) -> None:  # noqa: B027 (a hook: formats without per-segment state skip it)
        """Forget the framing state of the segment that ended."""

    @abstractmethod
    def feed(self, data: bytes) -> bytes: ...

    @abstractmethod
    def finish(self) -> bytes:
        """The file's closing bytes."""


class Format(ABC):
    """One export format; see the module docstring. Instances are immutable singletons (the registry's)."""

    enum: export_pb2.ExportFormat
    name: str  # as in the CLI, the runs table and metric labels
    media_type: str
    extension: str  # file name extension, without the dot
    copy_options: Mapping[str, str]  # asyncpg copy_from_query options

    # -- server --------------------------------------------------------------------------------

    def available(self) -> str | None:
        """Why this process cannot serve or read the format (a library is missing), or None."""
        return None

    def chunk_limits(self, columns: Sequence[Column], rows: int, nbytes: int) -> tuple[int, int]:
        """(rows, bytes of COPY output) per chunk for a request's rows_per_chunk (0: the default) and byte
        budget; a format whose chunk bytes outgrow its COPY output narrows them here."""
        return rows, nbytes

    @abstractmethod
    def select_list(self, columns: Sequence[Column], hidden_key: bool) -> list[str]:
        """The SELECT list COPY renders (with the key in front, for resume tokens, when `hidden_key`)."""

    @abstractmethod
    def splitter(self, columns: Sequence[Column]) -> RecordSplitter: ...

    @abstractmethod
    def writer(self, columns: Sequence[Column], hidden_key: bool) -> ChunkWriter: ...

    # -- client --------------------------------------------------------------------------------

    @abstractmethod
    def stitcher(self, columns: Sequence[str] = ()) -> Stitcher: ...

    @abstractmethod
    def parse_rows(self, data: bytes, columns: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of one chunk (chunks hold whole rows)."""

    def row_decoder(self, columns: Sequence[str]) -> RowDecoder:
        """Parses the chunks of one stream in order (a format whose chunks depend on earlier ones keeps state)."""
        return lambda data: self.parse_rows(data, columns)

    def __repr__(self) -> str:
        return f"<export format {self.name}>"
