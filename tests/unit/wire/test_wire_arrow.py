"""The Arrow export format without a server: PostgreSQL CSV decoded by Arrow's reader, special times, byte budgets,
the IPC framing, and the client's stitching of several streams into one."""

from __future__ import annotations

import datetime as dt
import itertools

import pyarrow as pa
import pyarrow.ipc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rentscout.export_service.framing import ChunkAssembler
from rentscout.wire.formats import FramingError, arrow, by_name
from rentscout.wire.formats.arrow import EOS, ArrowDecoder, ArrowStitcher, CsvDecoder, days_from_civil, special_time
from rentscout.wire.formats.csv import CsvSplitter
from rentscout.wire.schema import PROPERTIES, Column

FORMAT = by_name("arrow")
COLS = [
    Column("id", "int", True, "int8"),
    Column("title", "text", False, "text"),
    Column("n", "int", False, "int2"),
    Column("f", "float", False, "float8"),
    Column("ok", "bool", False, "bool"),
    Column("at", "time", False, "timestamptz"),
    Column("d", "time", False, "date"),
]


@given(st.dates())
def test_days_from_civil_is_the_proleptic_gregorian_calendar(day: dt.date) -> None:
    assert days_from_civil(day.year, day.month, day.day) == (day - dt.date(1970, 1, 1)).days


def test_special_times() -> None:
    assert special_time("infinity", False) == 2**63 - 1 and special_time("-infinity", False) == -(2**63)
    assert special_time("infinity", True) == 2**31 - 1 and special_time("-infinity", True) == -(2**31)
    assert special_time("0044-03-15 12:00:00.5+00 BC", False) == -63517780799500000  # PostgreSQL's epoch * 1e6
    assert special_time("0001-01-01 00:00:00+00 BC", False) == -62167219200000000  # year 0
    assert special_time("10000-01-01 00:00:00+00", False) == 253402300800000000
    assert special_time("2024-01-01 05:30:00+05:30", False) == 1704067200000000
    assert special_time("0044-03-15 BC", True) == -735160
    with pytest.raises(ValueError, match="outside"):
        special_time("294277-01-01 00:00:00+00", False)
    with pytest.raises(ValueError, match="unreadable"):
        special_time("yesterday", False)


def test_csv_decoder_keeps_nulls_empty_strings_nan_and_special_times() -> None:
    data = (
        b'1,"",,NaN,t,2024-01-02 03:04:05.123456+00,2024-01-02\n'
        b"2,,7,Infinity,f,infinity,0044-03-15 BC\n"
        b'3,"a\nb ""q""",-32768,-Infinity,,0044-03-15 12:00:00+00 BC,\n'
    )
    batch = CsvDecoder(COLS, hidden_key=False).decode(data, newlines=True)
    assert batch.schema.types == [
        pa.int64(),
        pa.utf8(),
        pa.int16(),
        pa.float64(),
        pa.bool_(),
        pa.timestamp("us", tz="UTC"),
        pa.date32(),
    ]
    rows = batch.select(["title", "n", "ok", "f"]).to_pydict()
    assert rows["title"] == ["", None, 'a\nb "q"'] and rows["n"] == [None, 7, -32768] and rows["ok"] == [True, False, None]
    f = rows["f"]
    assert f[0] != f[0] and f[1:] == [float("inf"), float("-inf")]
    assert batch.column("at").cast(pa.int64()).to_pylist() == [1704164645123456, 2**63 - 1, -63517780800000000]
    assert batch.column("d").cast(pa.int32()).to_pylist() == [19724, -735160, None]


def test_csv_decoder_drops_the_hidden_key() -> None:
    batch = CsvDecoder([COLS[1]], hidden_key=True).decode(b'5,x\n9,"y"\n')
    assert batch.schema.names == ["title"] and batch.column(0).to_pylist() == ["x", "y"]


@pytest.mark.parametrize("columns", [PROPERTIES, [COLS[0], COLS[2], COLS[4]]], ids=["properties", "small-numbers"])
@pytest.mark.parametrize(("rows", "budget"), [(0, 8192), (0, 65536), (1000, 8192), (3, 8192)])
def test_chunk_limits_keep_batches_within_the_byte_budget(columns: list[Column], rows: int, budget: int) -> None:
    max_rows, text_bytes = FORMAT.chunk_limits(columns, rows, budget)
    if rows:
        assert max_rows <= rows
    line = (
        ",".join(
            "1"
            if c.kind in ("int", "float")
            else "t"
            if c.kind == "bool"
            else "2024-01-01 00:00:00+00"
            if c.kind == "time"
            else "x"
            for c in columns
        ).encode()
        + b"\n"
    )
    writer = FORMAT.writer(columns, hidden_key=False)
    splitter, assembler = CsvSplitter(), ChunkAssembler(max_rows, text_bytes)
    sizes = []
    seg = splitter.feed(line * 5000)
    assert seg is not None
    for i, parts in enumerate(assembler.add(seg)):
        sizes.append(len(writer.render(parts, rows_before=0 if i == 0 else 1)))
    assert max(sizes) <= budget
    assert min(sizes) >= budget // 8 or rows == 3  # not needlessly small either


def stream_parts(tables: list[pa.Table], with_schema: list[bool]) -> list[bytes]:
    out = []
    for table, schema in zip(tables, with_schema, strict=True):
        data = table.schema.serialize().to_pybytes() if schema else b""
        for batch in table.to_batches(max_chunksize=3):
            data += batch.serialize().to_pybytes()
        out.append(data + EOS)
    return out


@given(st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_stitcher_and_decoder_join_segments_into_one_stream_whatever_the_cuts(cuts: list[int]) -> None:
    columns: list[tuple[str, pa.DataType]] = [("id", pa.int64()), ("s", pa.utf8())]
    schema = pa.schema(columns)
    tables = [
        pa.table({"id": list(range(i * 10, i * 10 + n)), "s": ["é" * k for k in range(n)]}, schema=schema)
        for i, n in enumerate((7, 0, 5))
    ]
    segments = stream_parts(tables, [True, True, False])  # a partition repeats the schema, a resume does not
    stitcher, decoder, out, batches = ArrowStitcher(), ArrowDecoder(), b"", []
    for segment in segments:
        out += stitcher.start_segment()
        pos = 0
        for size in itertools.cycle(cuts):
            if pos >= len(segment):
                break
            piece = segment[pos : pos + size]
            out += stitcher.feed(piece)
            batches += decoder.feed(piece)
            pos += size
    out += stitcher.finish()
    decoder.finish()
    whole = pa.concat_tables(tables)
    assert pyarrow.ipc.open_stream(out).read_all().equals(whole)
    assert pa.Table.from_batches(batches, schema=decoder.schema).equals(whole)


def test_stitcher_refuses_other_schemas_and_truncated_streams() -> None:
    one, other = stream_parts([pa.table({"a": [1]}), pa.table({"b": [1]})], [True, True])
    stitcher = ArrowStitcher()
    stitcher.feed(one)
    stitcher.start_segment()
    with pytest.raises(FramingError, match="different schemas"):
        stitcher.feed(other)
    truncated = ArrowStitcher()
    truncated.feed(one[:-3])
    with pytest.raises(FramingError, match="inside a message"):
        truncated.finish()
    with pytest.raises(FramingError, match="not an Arrow IPC stream"):
        ArrowStitcher().feed(b"id,city\n1,Omsk\n")


def test_rows_of_a_stream_need_its_schema_first() -> None:
    (data,) = stream_parts([pa.table({"id": [1, 2], "ok": [True, None]})], [True])
    assert FORMAT.parse_rows(data, ["id", "ok"]) == [{"id": 1, "ok": True}, {"id": 2, "ok": None}]
    columns: list[tuple[str, pa.DataType]] = [("id", pa.int64()), ("ok", pa.bool_())]
    schema_len = len(pa.schema(columns).serialize())
    decode = FORMAT.row_decoder(["id", "ok"])
    assert decode(data[:schema_len]) == [] and len(decode(data[schema_len:])) == 2
    with pytest.raises(FramingError, match="before the schema"):
        FORMAT.parse_rows(data[schema_len:], ["id", "ok"])


def test_the_format_is_listed_and_needs_pyarrow_only_when_used() -> None:
    assert FORMAT is arrow.FORMAT and FORMAT.available() is None and arrow.available()
    assert FORMAT.media_type == "application/vnd.apache.arrow.stream" and FORMAT.copy_options == {"format": "csv"}
