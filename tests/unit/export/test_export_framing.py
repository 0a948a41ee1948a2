"""Framing of COPY output into chunks of whole rows, whatever the block boundaries."""

from __future__ import annotations

import csv
import io
import itertools
import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rentscout.export_service.framing import ChunkAssembler
from rentscout.wire.formats import RecordSplitter, Segment
from rentscout.wire.formats.csv import CsvSplitter, CsvWriter
from rentscout.wire.formats.json import JsonSplitter, JsonWriter, fix_controls, fix_escapes


def pg_csv(value: str) -> str:
    """A field as PostgreSQL's COPY CSV writes it (quoted when it holds , " CR or LF, or is empty)."""
    return '"' + value.replace('"', '""') + '"' if not value or any(c in value for c in ',"\r\n') else value


def csv_rows(values: list[tuple[int, str]]) -> bytes:
    return "".join(f"{pid},{pg_csv(text)},x\n" for pid, text in values).encode()


def frame(data: bytes, cuts: list[int], csv_mode: bool, rows: int, nbytes: int) -> list[list[Segment]]:
    """Feed `data` split at `cuts`, return the chunks."""
    splitter: RecordSplitter = CsvSplitter() if csv_mode else JsonSplitter()
    asm = ChunkAssembler(rows, nbytes)
    chunks: list[list[Segment]] = []
    bounds = [0, *sorted(set(cuts)), len(data)]
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        seg = splitter.feed(data[a:b])
        if seg is not None:
            chunks += list(asm.add(seg))
    splitter.finish()
    if (tail := asm.flush()) is not None:
        chunks.append(tail)
    return chunks


texts = st.text(alphabet=st.sampled_from(list('ab,"\n\r x\\')), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(texts, min_size=1, max_size=40),
    seed=st.integers(0, 10**6),
    rows=st.integers(1, 9),
    nbytes=st.integers(1, 200),
)
def test_csv_chunks_are_whole_records_with_exact_counts(values: list[str], seed: int, rows: int, nbytes: int) -> None:
    records = [(i + 1, v) for i, v in enumerate(values)]
    data = csv_rows(records)
    rng = random.Random(seed)
    cuts = [rng.randrange(len(data)) for _ in range(rng.randrange(0, 12))]
    chunks = frame(data, cuts, True, rows, nbytes)
    writer = CsvWriter(["id", "text", "c"], hidden_key=False)
    seen: list[tuple[int, str]] = []
    for parts in chunks:
        n = sum(p.rows for p in parts)
        assert 1 <= n <= rows
        body = b"".join(p.data for p in parts)
        assert len(body) <= nbytes or n == 1  # soft byte cap: only a single big row exceeds it
        parsed = list(csv.reader(io.StringIO(body.decode(), newline="")))
        assert len(parsed) == n
        assert writer.last_key(parts) == int(parsed[-1][0])
        seen += [(int(r[0]), r[1]) for r in parsed]
    assert seen == records


def test_csv_hidden_key_is_stripped_even_across_quoted_newlines() -> None:
    data = csv_rows([(1, "plain"), (2, 'multi\nline, "quoted"\n7,x'), (3, "end")])
    chunks = frame(data, [5, 17, 30], True, 2, 10_000)
    writer = CsvWriter(["text", "c"], hidden_key=True)
    out = b"".join(writer.render(parts, before) for parts, before in zip(chunks, (0, 2), strict=True))
    assert [writer.last_key(p) for p in chunks] == [2, 3]
    assert list(csv.reader(io.StringIO(out.decode(), newline=""))) == [
        ["text", "c"],
        ["plain", "x"],
        ['multi\nline, "quoted"\n7,x', "x"],
        ["end", "x"],
    ]


def test_csv_empty_export_is_just_the_header() -> None:
    writer = CsvWriter(["id", "a,b"], hidden_key=False)
    assert writer.trailer(0, 0) == b'id,"a,b"\n'
    assert writer.trailer(5, 9) is None


def jsonl(n: int, hidden: bool) -> bytes:
    lines = []
    for i in range(1, n + 1):
        obj = f'{{"id":{i},"t":"row {i}"}}'
        lines.append(f'{i}"{obj}' if hidden else obj)
    return "".join(line + "\n" for line in lines).encode()


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 60), seed=st.integers(0, 10**6), rows=st.integers(1, 8), hidden=st.booleans(), array=st.booleans())
def test_json_chunks_concatenate_into_one_document(n: int, seed: int, rows: int, hidden: bool, array: bool) -> None:
    data = jsonl(n, hidden)
    rng = random.Random(seed)
    cuts = [rng.randrange(len(data)) for _ in range(rng.randrange(0, 8))] if data else []
    chunks = frame(data, cuts, False, rows, 10_000) if data else []
    writer = JsonWriter(hidden_key=hidden, array=array)
    out, sent = b"", 0
    for parts in chunks:
        assert writer.last_key(parts) == sent + sum(p.rows for p in parts)
        out += writer.render(parts, sent)
        sent += sum(p.rows for p in parts)
    out += writer.trailer(0, sent) or b""
    expected = [{"id": i, "t": f"row {i}"} for i in range(1, n + 1)]
    if array:
        assert json.loads(out) == expected
    else:
        assert [json.loads(line) for line in out.splitlines()] == expected


def test_json_resumed_stream_continues_the_array() -> None:
    writer = JsonWriter(hidden_key=False, array=True)
    first = writer.render([Segment(b'{"id":1}\n{"id":2}\n', 2, None, False)], 0)
    resumed = writer.render([Segment(b'{"id":3}\n', 1, None, False)], 2)
    trailer = writer.trailer(2, 3)
    assert trailer is not None
    assert json.loads(first + resumed + trailer) == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert writer.trailer(0, 0) == b"[]\n"


def test_json_fixups_turn_copy_text_escapes_into_json() -> None:
    # What COPY (text format, delimiter '"', keys quoted by the \x1e marker) writes for: a NULL string,
    # \v, raw \x01 and \x1e in values, an escaped quote, a backslash before v
    raw = b'{\x1ea\x1e:"\\N",\x1eb\x1e:"x\\vy",\x1ec\x1e:"p\x01q\x1e",\x1ed\x1e:"\\"\\\\v",\x1ee\x1e:"\\\\\\v"}\n'
    fixed = fix_escapes(fix_controls(raw, markers_per_row=10))
    assert json.loads(fixed) == {"a": None, "b": "x\vy", "c": "p\x01q\x1e", "d": '"\\v', "e": "\\\v"}
    clean = b'{\x1ea\x1e:1,\x1eb\x1e:"x"}\n'
    assert fix_controls(clean, markers_per_row=4) == b'{"a":1,"b":"x"}\n'


def test_json_segments_with_raw_control_bytes_in_values_are_flagged() -> None:
    clean = b'{\x1ea\x1e:"x"}\n{\x1ea\x1e:"y"}\n{\x1ea'
    dirty = b'{\x1ea\x1e:"x\x1e"}\n'
    clean_segment, dirty_segment = JsonSplitter(markers_per_row=2).feed(clean), JsonSplitter(markers_per_row=2).feed(dirty)
    assert clean_segment is not None and clean_segment.controls is False
    assert dirty_segment is not None and dirty_segment.controls is True


def test_a_row_larger_than_the_byte_budget_travels_alone() -> None:
    data = b"1,a\n2," + b"x" * 100 + b"\n3,b\n"
    chunks = frame(data, [], True, 10, 20)
    assert [sum(p.rows for p in c) for c in chunks] == [1, 1, 1]
