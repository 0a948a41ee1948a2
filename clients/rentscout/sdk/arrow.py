"""Arrow exports in the SDK: `pyarrow.RecordBatch`es, and Parquet files written one row group at a time.

    async with ExportClient("dns:///export:50051", token=...) as client:
        async for batch in client.export_arrow(columns=["id", "city", "price"]):   # pyarrow.RecordBatch
            ...
        with ParquetSink("all.parquet") as sink:                                  # 4 partitions -> 1 file
            await client.download(export_request("arrow"), sink, parallel=4)

    with SyncExportClient(target) as client:
        reader = client.export_arrow(cities=["Moscow"])          # pyarrow.RecordBatchReader
        duckdb.sql("SELECT city, avg(price) FROM reader GROUP BY city")

The batches come from a resumable `ExportStream`: a broken stream continues after the last whole chunk,
so every row arrives exactly once. pyarrow is the `arrow` extra (pip install 'rentscout-client[arrow]');
nothing else in the SDK needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal

from rentscout.sdk import errors
from rentscout.sdk.export_stream import ExportStream
from rentscout.wire.formats import arrow as arrow_format
from rentscout.wire.formats.arrow import ArrowDecoder

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

# Rows per Parquet row group: large enough for Parquet's column statistics and compression to pay off,
# small enough that the one row group held in memory stays around 50 MB for `properties`.
DEFAULT_ROW_GROUP_ROWS = 131_072
Compression = Literal["zstd", "snappy", "gzip", "brotli", "lz4", "none"]


class ArrowStream:
    """The record batches of one Arrow export (`async for batch in ...`), each row exactly once.

    `schema` is known once the first chunk arrived; `stream` is the resumable ExportStream underneath (its
    header, summary, rows_received and resumes)."""

    def __init__(self, stream: ExportStream) -> None:
        arrow_format.require()
        self.stream = stream
        self._decoder = ArrowDecoder()

    @property
    def schema(self) -> pa.Schema | None:
        return self._decoder.schema

    async def batches(self) -> AsyncIterator[pa.RecordBatch]:
        async for chunk in self.stream.chunks():
            batches = self._decoder.feed(chunk.data)
            rows = sum(b.num_rows for b in batches)
            if rows != chunk.rows:
                raise errors.ExportIntegrityError(
                    f"a chunk announced {chunk.rows} rows but holds {rows}", correlation_id=self.stream.correlation_id
                )
            for batch in batches:
                yield batch
        self._decoder.finish()

    def __aiter__(self) -> AsyncIterator[pa.RecordBatch]:
        return self.batches()

    async def read_all(self) -> pa.Table:
        """The whole export as one Table (it is all in memory: prefer iterating for large exports)."""
        import pyarrow as pa

        batches = [b async for b in self.batches()]
        return pa.Table.from_batches(batches, schema=self.schema)


def batch_reader(schema: pa.Schema, first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]) -> pa.RecordBatchReader:
    """A RecordBatchReader over a first batch (already read, to learn the schema) and the others."""
    import pyarrow as pa

    def batches() -> Iterator[pa.RecordBatch]:
        if first is not None:
            yield first
        yield from rest

    return pa.RecordBatchReader.from_batches(schema, batches())


class ParquetSink:
    """A sink for `ExportClient.download()` of an Arrow export that writes Parquet instead of the IPC bytes.

    IPC bytes in (cut anywhere); row groups of `row_group_rows` rows out, each written as soon as it is
    complete, so memory stays at about one row group whatever the export's size. Close it (or use `with`) to
    write the last row group and the footer; an empty export is a valid Parquet file with the schema."""

    def __init__(
        self, where: str | Path | IO[bytes], *, row_group_rows: int = DEFAULT_ROW_GROUP_ROWS, compression: Compression = "zstd"
    ) -> None:
        arrow_format.require()
        if row_group_rows < 1:
            raise ValueError("row_group_rows must be at least 1")
        self.where = str(where) if isinstance(where, Path) else where
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.rows = 0
        self.row_groups = 0
        self._decoder = ArrowDecoder()
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._closed = False

    def write(self, data: bytes) -> int:
        for batch in self._decoder.feed(data):
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            while self._pending_rows >= self.row_group_rows:
                self._flush(self.row_group_rows)
        return len(data)

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self.where, schema, compression=self.compression)
        return self._writer

    def _flush(self, rows: int) -> None:
        """Write the first `rows` pending rows as one row group."""
        import pyarrow as pa

        table = pa.Table.from_batches(self._pending)
        group, rest = table.slice(0, rows), table.slice(rows)
        self._open(table.schema).write_table(group, row_group_size=max(group.num_rows, 1))
        self.rows += group.num_rows
        self.row_groups += 1
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._decoder.finish()
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is None:
            if self._decoder.schema is None:
                raise errors.ExportIntegrityError("the Arrow export ended before its schema arrived")
            self._open(self._decoder.schema)
        assert self._writer is not None
        self._writer.close()

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        elif self._writer is not None:  # a failed export: release the file (the caller discards it)
            self._closed = True
            self._writer.close()
