"""Stitching segments (first stream, resumed streams, partitions) into one valid file; parsing chunk rows."""

from __future__ import annotations

import csv
import io
import itertools
import json
from typing import Any

import orjson
import pytest

from rentscout.sdk import formats
from rentscout.sdk.formats import CSV, JSON, JSONL, merge_files, parse_rows, stitcher

COLUMNS = ["id", "title", "price", "area", "is_active"]
ROWS = [
    {"id": i, "title": t, "price": 1000 * i, "area": 10.5 * i, "is_active": i % 2 == 0}
    for i, t in enumerate(["a", 'quote "q", comma', "line\nbreak", "ünïcode", "e", "f", "g"], 1)
]


def json_rows() -> list[bytes]:
    return [orjson.dumps(r) for r in ROWS]


def json_segments(style: str, breaks: list[int], resume_style: str) -> list[list[bytes]]:
    """Chunks of each server segment (2 rows per chunk), the stream broken after the given rows."""
    rows = json_rows()
    bounds = [0, *breaks, len(rows)]
    segments = []
    for n, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        first, last = n == 0, hi == len(rows)
        part = rows[lo:hi]
        chunks: list[bytes] = []
        for i in range(0, len(part), 2):
            pair = part[i : i + 2]
            if style == "comma-before":
                body = b",".join(pair)
                lead = b"[" if first and i == 0 else (b"," if i > 0 or not first else b"")
                if not first and i == 0:
                    lead = b"[" if resume_style == "reframe" else b","
                chunks.append(lead + body)
            else:  # comma-after with newlines, closing bracket in a separate chunk
                is_last_pair = i + 2 >= len(part)
                text = b"".join(r + (b"\n" if is_last_pair and last else b",\n") for r in pair)
                if i == 0 and (first or resume_style == "reframe"):
                    text = b"[\n" + text
                chunks.append(text)
        if last or resume_style == "reframe":
            chunks.append(b"]" if style == "comma-before" else b"]\n")
        segments.append(chunks)
    return segments


def stitch(fmt: int, segments: list[list[bytes]], columns: list[str] = COLUMNS) -> bytes:
    s = stitcher(fmt, columns)
    out = []
    for seg in segments:
        out.append(s.start_segment(columns))
        out += [s.feed(c) for c in seg]
    out.append(s.finish())
    return b"".join(out)


@pytest.mark.parametrize("style", ["comma-before", "comma-after"])
@pytest.mark.parametrize("resume_style", ["continue", "reframe"])
@pytest.mark.parametrize("breaks", [[], [2], [1, 4], [2, 4, 6], [6]])
def test_json_segments_stitch_into_one_array(style: str, resume_style: str, breaks: list[int]) -> None:
    data = stitch(JSON, json_segments(style, breaks, resume_style))
    assert json.loads(data) == ROWS


def test_json_single_segment_is_passed_through_unchanged() -> None:
    segments = json_segments("comma-after", [], "continue")
    assert stitch(JSON, segments) == b"".join(segments[0])


def test_json_broken_after_a_trailing_comma_drops_it() -> None:
    rows = json_rows()
    segments = [[b"[" + rows[0] + b",", rows[1] + b","], [rows[2] + b"]"]]
    assert json.loads(stitch(JSON, segments)) == ROWS[:3]


@pytest.mark.parametrize("framing", [[b"[]"], [b"[", b"]\n"], [], [b"[\n", b"\n]\n"]])
def test_empty_json_export_is_an_empty_array(framing: list[bytes]) -> None:
    assert json.loads(stitch(JSON, [framing])) == []
    assert json.loads(stitch(JSON, [framing, framing])) == []


def csv_text(rows: list[dict[str, Any]], header: bool, newline: str) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    if header:
        writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r[c] for c in COLUMNS])
    return buf.getvalue().encode()


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("resumed_header", [True, False])
def test_csv_header_written_once(newline: str, resumed_header: bool) -> None:
    segments = [
        [csv_text([], True, newline), csv_text(ROWS[:2], False, newline)],
        [csv_text(ROWS[2:5], resumed_header, newline)],
        [csv_text(ROWS[5:], resumed_header, newline)],
    ]
    data = stitch(CSV, segments)
    assert data == csv_text(ROWS, True, newline)


def test_csv_without_server_header_gets_one_and_empty_export_is_a_header() -> None:
    assert csv_rows(stitch(CSV, [[csv_text(ROWS[:3], False, "\n")]]))[0] == COLUMNS
    assert stitch(CSV, []) == b"id,title,price,area,is_active\n"
    assert stitch(CSV, [[csv_text([], True, "\n")]]) == b"id,title,price,area,is_active\n"


def test_jsonl_is_concatenated() -> None:
    lines = [r + b"\n" for r in json_rows()]
    assert stitch(JSONL, [lines[:3], lines[3:]]) == b"".join(lines)


@pytest.mark.parametrize("fmt", [CSV, JSON, JSONL])
def test_merge_partition_files_in_order(fmt: int) -> None:
    def file_of(rows: list[dict[str, Any]]) -> bytes:
        if fmt == CSV:
            return csv_text(rows, True, "\n")
        if fmt == JSON:
            return b"[\n" + b",\n".join(orjson.dumps(r) for r in rows) + b"\n]\n"
        return b"".join(orjson.dumps(r) + b"\n" for r in rows)

    parts = [file_of(ROWS[:3]), file_of([]), file_of(ROWS[3:6]), file_of(ROWS[6:])]
    merged = b"".join(merge_files(fmt, COLUMNS, [[p[:7], p[7:]] for p in parts]))
    if fmt == JSON:
        assert json.loads(merged) == ROWS
    elif fmt == JSONL:
        assert [json.loads(line) for line in merged.splitlines()] == ROWS
    else:
        assert merged == file_of(ROWS)


def test_parse_rows_of_each_format() -> None:
    rows = json_rows()
    assert parse_rows(JSONL, rows[0] + b"\n" + rows[1] + b"\n", COLUMNS) == ROWS[:2]
    assert parse_rows(JSON, b"[\n" + rows[0] + b",\n" + rows[1] + b",\n", COLUMNS) == ROWS[:2]
    assert parse_rows(JSON, b"," + rows[2] + b"]\n", COLUMNS) == ROWS[2:3]
    assert parse_rows(JSON, b"]", COLUMNS) == []
    parsed = parse_rows(CSV, csv_text(ROWS[:3], True, "\r\n"), COLUMNS)
    assert parsed == [{**r, "is_active": r["is_active"]} for r in ROWS[:3]]
    with_empty = parse_rows(CSV, b"7,,,,t\n", COLUMNS)
    assert with_empty == [{"id": 7, "title": None, "price": None, "area": None, "is_active": True}]


def test_format_names() -> None:
    assert formats.format_value("JSONL") == JSONL and formats.format_value(CSV) == CSV
    with pytest.raises(ValueError, match="expected csv, json, jsonl or arrow"):
        formats.format_value("xml")
