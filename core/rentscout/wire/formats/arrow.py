"""Arrow IPC stream: the schema message, record batch messages, the end-of-stream marker.

Server: `COPY (SELECT ...) TO STDOUT (FORMAT csv)`, cut into whole records by the CSV splitter (a compiled
`bytes.translate` pass), and each chunk's records decoded by Arrow's compiled CSV reader with an explicit
schema from the column types (one `pyarrow.csv.read_csv` call per chunk, no Python per row), then written as
one IPC record batch message. A chunk that starts the stream at row 0 opens with the schema message; the
closing chunk (0 rows) is the end-of-stream marker (the schema first when the export is empty). PostgreSQL's
CSV keeps NULL (an empty unquoted field) apart from '' (`""`), NaN and ±Infinity. Time values Arrow's ISO 8601
parser cannot read ('infinity', BC dates, years past 9999) make that chunk take a second pass: times are read
as text, the ordinary ones converted by Arrow, the rare others one by one (`special_time`).

Why CSV and not COPY BINARY: no maintained compiled decoder of PostgreSQL's binary COPY format exists for
Python (pgpq only encodes Arrow into it), and a vectorised one is impossible, since each row's field offsets
depend on the lengths of the row before. PostgreSQL spends a little more CPU on CSV than on binary output;
Arrow's reader parses ~300 MB/s of it on one core.

Chunks stay byte-bounded: an Arrow batch is at most the CSV text plus a fixed width per row (`chunk_limits`).

Client: one schema message, every segment's record batches, one end-of-stream marker (`ArrowStitcher`);
`ArrowDecoder` turns chunks into `pyarrow.RecordBatch`es. pyarrow is imported only when Arrow is used, so the
text formats (and clients without the `arrow` extra) never need it.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from rentscout.export.v1 import export_pb2
from rentscout.wire.formats.base import (
    ChunkWriter,
    Format,
    FramingError,
    RecordSplitter,
    RowDecoder,
    Segment,
    Stitcher,
    join,
    key_at,
)
from rentscout.wire.formats.csv import CsvSplitter
from rentscout.wire.schema import KEY, Column
from rentscout.wire.sql import ident

if TYPE_CHECKING:
    import pyarrow as pa

INSTALL_HINT = "Arrow exports need pyarrow: pip install 'rentscout-client[arrow]' (servers: 'rentscout-server[arrow]')"
MEDIA_TYPE = "application/vnd.apache.arrow.stream"

CONTINUATION = b"\xff\xff\xff\xff"
EOS = CONTINUATION + b"\x00\x00\x00\x00"
END, SCHEMA, DICTIONARY_BATCH, RECORD_BATCH = 0, 1, 2, 3  # MessageHeader union tags (0: end of stream)
_U32, _I32, _U16, _I64 = struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<H"), struct.Struct("<q")

HIDDEN_KEY = "\x00key"  # name of the hidden key column while parsing (never a real column name)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def metadata_bytes(columns: int) -> int:
    """Room for a chunk's messages beyond their buffers: the schema message (~80 bytes a field), the record
    batch's flatbuffer (a field node and up to 3 buffer entries per column) and 8-byte buffer padding."""
    return 512 + 192 * columns


def require() -> None:
    """ImportError with the install hint when pyarrow is missing (functions here import it where they use it,
    so that importing this module, as the format registry does, costs nothing)."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.ipc  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


def available() -> bool:
    try:
        require()
    except ImportError:
        return False
    return True


# -- types ---------------------------------------------------------------------------------------


def arrow_type(col: Column) -> pa.DataType:
    """The Arrow type of a column (the mapping documented on EXPORT_FORMAT_ARROW)."""
    import pyarrow as pa

    by_typname: dict[str, pa.DataType] = {
        "int8": pa.int64(),
        "int4": pa.int32(),
        "int2": pa.int16(),
        "oid": pa.uint32(),
        "float8": pa.float64(),
        "float4": pa.float32(),
        "bool": pa.bool_(),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "timestamp": pa.timestamp("us"),
        "date": pa.date32(),
    }
    if col.typname:
        return by_typname.get(col.typname, pa.utf8())
    by_kind: dict[str, pa.DataType] = {
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "time": pa.timestamp("us", tz="UTC"),
    }
    return by_kind.get(col.kind, pa.utf8())


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([pa.field(c.name, arrow_type(c)) for c in columns])


def row_overhead(columns: Sequence[Column]) -> int:
    """Bytes an Arrow batch may hold per row beyond its CSV text: fixed widths, string offsets and validity
    bits, less the one delimiter byte each field takes in CSV (string bytes are at most their CSV bytes)."""
    import pyarrow as pa

    width = 0
    for col in columns:
        typ = arrow_type(col)
        width += 4 if pa.types.is_string(typ) else max(typ.bit_width // 8, 1)
    return max(width + (len(columns) + 7) // 8 - len(columns), 1)


def is_time(typ: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_timestamp(typ) or pa.types.is_date32(typ))


_SPECIAL_TIME = r"^-?infinity$| BC$|^[0-9]{5}"  # what Arrow's ISO 8601 parser does not read
_TIME = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)(?: (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
    r"(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?"
)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 1 BC is year 0)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def special_time(text: str, date: bool) -> int:
    """PostgreSQL's text of a date or timestamp as Arrow's integer (days, or microseconds since the epoch).

    'infinity' and '-infinity' are the largest and smallest integer (PostgreSQL's own sentinels); a finite
    value past the integer's range is a ValueError."""
    high, low = (INT32_MAX, INT32_MIN) if date else (INT64_MAX, INT64_MIN)
    if text == "infinity":
        return high
    if text == "-infinity":
        return low
    m = _TIME.fullmatch(text)
    if m is None:
        raise ValueError(f"unreadable date/time {text!r}")
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if m[12]:  # BC: 1 BC is year 0
        year = 1 - year
    days = days_from_civil(year, month, day)
    if date:
        value = days
    else:
        seconds = days * 86400 + int(m[4] or 0) * 3600 + int(m[5] or 0) * 60 + int(m[6] or 0)
        if m[8]:
            offset = int(m[9]) * 3600 + int(m[10] or 0) * 60 + int(m[11] or 0)
            seconds -= offset if m[8] == "+" else -offset
        value = seconds * 1_000_000 + int((m[7] or "").ljust(6, "0"))
    if not low < value < high:
        raise ValueError(f"date/time {text!r} is outside Arrow's range")
    return value


# -- server ------------------------------------------------------------------------------------


class CsvDecoder:
    """Whole CSV records (PostgreSQL's COPY CSV) -> one Arrow record batch, by Arrow's compiled reader."""

    def __init__(self, columns: Sequence[Column], hidden_key: bool) -> None:
        import pyarrow as pa

        self.schema = arrow_schema(columns)
        names = ([HIDDEN_KEY] if hidden_key else []) + [c.name for c in columns]
        types = ([pa.int64()] if hidden_key else []) + list(self.schema.types)
        self.hidden_key = hidden_key
        self._names = names
        self._types = dict(zip(names, types, strict=True))
        self._times = [n for n, t in self._types.items() if is_time(t)]
        self._convert = self._options(self._types)

    @staticmethod
    def _options(types: dict[str, pa.DataType]) -> Any:
        import pyarrow.csv as pacsv

        return pacsv.ConvertOptions(
            column_types=types,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["t"],
            false_values=["f"],
        )

    def _read(self, data: bytes, convert: Any, newlines: bool) -> pa.Table:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        read = pacsv.ReadOptions(column_names=self._names, use_threads=False, block_size=len(data) + 64)
        parse = pacsv.ParseOptions(newlines_in_values=newlines)
        source = pa.py_buffer(data)  # read in place (no copy)
        return pacsv.read_csv(
            source,  # type: ignore[arg-type, unused-ignore]  # stubs: paths/files only
            read_options=read,
            parse_options=parse,
            convert_options=convert,
        )

    def decode(self, data: bytes, newlines: bool = False) -> pa.RecordBatch:
        import pyarrow as pa

        try:
            table = self._read(data, self._convert, newlines)
        except pa.ArrowInvalid:
            if not self._times:
                raise
            table = self._read_special_times(data, newlines)
        if self.hidden_key:
            table = table.drop_columns([HIDDEN_KEY])
        batches = table.combine_chunks().to_batches()
        if len(batches) != 1:
            raise FramingError(f"a chunk decoded into {len(batches)} record batches")
        return batches[0]

    def _read_special_times(self, data: bytes, newlines: bool) -> pa.Table:
        """The slow pass: time columns read as text; Arrow converts the ordinary values, `special_time` the rest."""
        import pyarrow as pa
        import pyarrow.compute as pc

        table = self._read(data, self._options({**self._types, **{n: pa.utf8() for n in self._times}}), newlines)
        for name in self._times:
            typ = self._types[name]
            text = cast("pa.StringArray", table.column(name).combine_chunks())
            special = pc.and_kleene(pc.match_substring_regex(text, _SPECIAL_TIME), pc.is_valid(text))  # NULL: False
            blanked = cast("pa.StringArray", pc.if_else(special, pa.scalar(None, pa.utf8()), text))
            ordinary = cast("pa.Array[Any]", pc.cast(blanked, typ))
            if pc.any(special).as_py():
                date = pa.types.is_date32(typ)
                ints = ordinary.view(pa.int32() if date else pa.int64())
                at = [i for i in pc.indices_nonzero(special).to_pylist() if i is not None]
                values = [special_time(str(text[i].as_py()), date) for i in at]
                ordinary = pc.replace_with_mask(ints, special, pa.array(values, ints.type)).view(typ)
            table = table.set_column(table.schema.get_field_index(name), name, ordinary)
        return table


class ArrowWriter(ChunkWriter):
    """Chunks of CSV records -> IPC messages: the schema opens the stream, the end-of-stream marker closes it.
    Arrow's CSV reader releases the GIL, so the server renders in a worker thread (`threaded`)."""

    threaded = True

    def __init__(self, columns: Sequence[Column], hidden_key: bool) -> None:
        self.decoder = CsvDecoder(columns, hidden_key)
        self.schema_message: bytes = self.decoder.schema.serialize().to_pybytes()

    def last_key(self, parts: list[Segment]) -> int:
        last = parts[-1]
        return key_at(last.data, last.last_start())

    def render(self, parts: list[Segment], rows_before: int) -> bytes:
        newlines = any(p.ends is not None for p in parts)
        batch = self.decoder.decode(join(parts), newlines)
        message: bytes = batch.serialize().to_pybytes()
        return self.schema_message + message if rows_before == 0 else message

    def trailer(self, rows_before: int, rows_total: int) -> bytes | None:
        """The end-of-stream marker; an empty export is the schema and the marker."""
        return (self.schema_message if rows_total == 0 else b"") + EOS


# -- IPC framing (client) ----------------------------------------------------------------------


def _message_header(data: bytes | bytearray | memoryview, start: int) -> tuple[int, int]:
    """(header type, body length) from the flatbuffer `Message` table at `start` (Arrow's Message.fbs)."""
    table = start + _U32.unpack_from(data, start)[0]
    vtable = table - _I32.unpack_from(data, table)[0]
    vsize = _U16.unpack_from(data, vtable)[0]

    def field(index: int) -> int:
        at = 4 + 2 * index
        return _U16.unpack_from(data, vtable + at)[0] if at < vsize else 0

    kind_at, body_at = field(1), field(3)  # header_type (ubyte), bodyLength (long)
    kind = data[table + kind_at] if kind_at else 0
    body = _I64.unpack_from(data, table + body_at)[0] if body_at else 0
    if kind not in (SCHEMA, DICTIONARY_BATCH, RECORD_BATCH) or body < 0:
        raise FramingError(f"unexpected Arrow IPC message (type {kind}, body {body})")
    return kind, body


def message_at(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(type, end offset) of the encapsulated IPC message at `pos` (END for the end-of-stream marker), or None
    when `data` holds only part of it."""
    if len(data) - pos < 8:
        return None
    if data[pos : pos + 4] != CONTINUATION:
        raise FramingError("not an Arrow IPC stream (no continuation marker)")
    size = _I32.unpack_from(data, pos + 4)[0]
    if size == 0:
        return END, pos + 8
    start = pos + 8
    if size < 0 or len(data) < start + size:
        return None
    kind, body = _message_header(data, start)
    end = start + size + body
    return (kind, end) if len(data) >= end else None


class MessageFramer:
    """Bytes cut anywhere in, whole IPC messages out: (type, start, end) within the returned buffer."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[int, int, int]]]:
        buf = self._carry + data if self._carry else data
        found: list[tuple[int, int, int]] = []
        pos = 0
        while (m := message_at(buf, pos)) is not None:
            found.append((m[0], pos, m[1]))
            pos = m[1]
        self._carry = buf[pos:]
        return buf, found

    def check_empty(self) -> None:
        if self._carry:
            raise FramingError("the Arrow stream ended inside a message")


class ArrowStitcher(Stitcher):
    """One schema message (later segments' copies are dropped, and must be equal), every record batch in
    order, one end-of-stream marker at the end."""

    def __init__(self, columns: Sequence[str] = ()) -> None:
        super().__init__(columns)
        self._framer = MessageFramer()
        self._schema: bytes | None = None

    def _new_segment(self) -> None:
        self._framer.check_empty()

    def feed(self, data: bytes) -> bytes:
        buf, messages = self._framer.feed(data)
        keep: list[tuple[int, int]] = []
        for kind, start, end in messages:
            if kind == END:
                continue
            if kind == SCHEMA:
                schema = buf[start:end]
                if self._schema is not None:
                    if schema != self._schema:
                        raise FramingError("the segments of one Arrow export have different schemas")
                    continue
                self._schema = schema
            if keep and keep[-1][1] == start:
                keep[-1] = (keep[-1][0], end)
            else:
                keep.append((start, end))
        if len(keep) == 1 and keep[0] == (0, len(buf)):
            return buf
        return b"".join([buf[s:e] for s, e in keep])

    def finish(self) -> bytes:
        self._framer.check_empty()
        return EOS


class ArrowDecoder:
    """Chunks (or any cut of an IPC stream) in, `pyarrow.RecordBatch`es out; the schema comes first."""

    def __init__(self) -> None:
        self._framer = MessageFramer()
        self.schema: pa.Schema | None = None

    def feed(self, data: bytes) -> list[pa.RecordBatch]:
        import pyarrow as pa
        import pyarrow.ipc as paipc

        buf, messages = self._framer.feed(data)
        if not messages:
            return []
        whole = pa.py_buffer(buf)
        out = []
        for kind, start, end in messages:
            if kind == END:
                continue
            message = paipc.read_message(whole.slice(start, end - start))
            if kind == SCHEMA:
                schema = paipc.read_schema(message)
                if self.schema is not None and not schema.equals(self.schema):
                    raise FramingError("the segments of one Arrow export have different schemas")
                self.schema = schema
            elif kind == RECORD_BATCH:
                if self.schema is None:
                    raise FramingError("an Arrow record batch came before the schema")
                out.append(paipc.read_record_batch(message, self.schema))
            else:
                raise FramingError("Arrow dictionary batches are not used by this export")
        return out

    def finish(self) -> None:
        self._framer.check_empty()


class ArrowFormat(Format):
    enum = export_pb2.EXPORT_FORMAT_ARROW
    name = "arrow"
    media_type = MEDIA_TYPE
    extension = "arrows"  # the IANA-registered extension of the IPC stream format
    copy_options = {"format": "csv"}

    def available(self) -> str | None:
        return None if available() else INSTALL_HINT

    def chunk_limits(self, columns: Sequence[Column], rows: int, nbytes: int) -> tuple[int, int]:
        """Rows and CSV bytes per chunk such that the batch (CSV text + a fixed width per row) fits `nbytes`;
        without a requested row count, chunks are as large as the bytes allow."""
        per_row, room = row_overhead(columns), nbytes - metadata_bytes(len(columns))
        max_rows = max(1, room // (3 * per_row))  # 1/3 for fixed widths, 2/3 for text
        rows = min(rows, max_rows) if rows else max_rows
        return rows, max(1, room - rows * per_row)

    def select_list(self, columns: Sequence[Column], hidden_key: bool) -> list[str]:
        return ([ident(KEY)] if hidden_key else []) + [ident(c.name) for c in columns]

    def splitter(self, columns: Sequence[Column]) -> RecordSplitter:
        return CsvSplitter()

    def writer(self, columns: Sequence[Column], hidden_key: bool) -> ChunkWriter:
        return ArrowWriter(columns, hidden_key)

    def stitcher(self, columns: Sequence[str] = ()) -> Stitcher:
        return ArrowStitcher(columns)

    def row_decoder(self, columns: Sequence[str]) -> RowDecoder:
        """Rows of a stream's chunks in order (the first chunk's schema decodes the later ones)."""
        decoder = ArrowDecoder()

        def rows(data: bytes) -> list[dict[str, Any]]:
            return [row for batch in decoder.feed(data) for row in batch.to_pylist()]

        return rows

    def parse_rows(self, data: bytes, columns: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of IPC bytes that open with the schema (a whole stream, or its first chunk)."""
        rows: list[dict[str, Any]] = self.row_decoder(columns)(data)
        return rows


FORMAT = ArrowFormat()
