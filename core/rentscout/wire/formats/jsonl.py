"""JSON Lines: one JSON object per line, rows exactly as in a JSON array (see json), no framing.

Server: the JSON-object rows of `json` without the array's brackets and commas. Client: segments are
concatenated as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from rentscout.export.v1 import export_pb2
from rentscout.wire.formats.base import Stitcher
from rentscout.wire.formats.json import JsonObjectRows


class ConcatStitcher(Stitcher):
    """Segments joined as they are."""

    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class JsonlFormat(JsonObjectRows):
    enum = export_pb2.EXPORT_FORMAT_JSONL
    name = "jsonl"
    media_type = "application/jsonl"
    extension = "jsonl"
    array = False

    def stitcher(self, columns: Sequence[str] = ()) -> Stitcher:
        return ConcatStitcher(columns)

    def parse_rows(self, data: bytes, columns: Sequence[str]) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]


FORMAT = JsonlFormat()
