"""Packing whole-record segments into chunks: at most rows_per_chunk rows and about bytes_per_chunk bytes (a
single larger row travels alone), with work per segment (never per row) on the hot path.

What a record is, and what bytes a chunk becomes, is the format's (rentscout.wire.formats: its splitter cuts
COPY blocks into Segments of whole records, its writer renders a chunk and finds its last id).
"""

from __future__ import annotations

from collections.abc import Iterator

from rentscout.wire.formats import Segment


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
