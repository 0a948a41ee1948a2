"""ExportClient: resumable streaming exports, parallel partitions (PlanExport), statistics.

    async with ExportClient("dns:///export:50051", token=...) as client:
        request = export_request("jsonl", cities=["Moscow"])
        async for row in client.export(request):           # dicts, each row exactly once
            ...
        with open("out.jsonl", "wb") as f:                  # or: the whole file, 4 partitions at once
            await client.download(request, f, parallel=4)

`export_arrow(..., flight=True)` and `download(..., flight=True)` read an Arrow export over Arrow Flight instead
(`rentscout.sdk.flight`), `parallel=N` endpoints at once.

`download(parallel=N)` asks PlanExport for N key-range partitions and reads them concurrently.
By default it writes ONE valid file in primary-key order: partition 0 streams straight into the
output, the others spool to temporary files that are appended in order as soon as everything
before them is written (so `-o -` still streams). With `split=` it writes one valid file per
partition instead (no spooling).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, overload

from google.protobuf import timestamp_pb2

from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.resilience.retry import RetryPolicy
from rentscout.sdk import formats
from rentscout.sdk.arrow import ArrowStream, batch_reader
from rentscout.sdk.base import BaseClient, SyncClient
from rentscout.sdk.export_stream import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_STALL,
    DEFAULT_RECONNECT_WAIT,
    ExportStream,
)
from rentscout.sdk.flight import FlightArrowStream, FlightExports
from rentscout.sdk.sync import sync_methods
from rentscout.wire.enums import LISTING_SOURCE, PROPERTY_TYPE, enum_value
from rentscout.wire.formats import arrow as arrow_format

if TYPE_CHECKING:
    import pyarrow as pa

_COPY_BLOCK = 1024 * 1024


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return ts


def export_request(
    format: str | int = "jsonl",
    *,
    cities: Sequence[str] = (),
    property_types: Sequence[str | int] = (),
    sources: Sequence[str | int] = (),
    min_price: int | None = None,
    max_price: int | None = None,
    min_rooms: int | None = None,
    max_rooms: int | None = None,
    active_only: bool = False,
    updated_since: dt.datetime | None = None,
    columns: Sequence[str] = (),
    limit: int = 0,
    rows_per_chunk: int = 0,
    bytes_per_chunk: int = 0,
    resume_token: str = "",
) -> export_pb2.ExportPropertiesRequest:
    """An ExportPropertiesRequest from plain Python values ('jsonl', 'apartment', 'avito', datetimes)."""
    flt = common_pb2.PropertyFilter(
        cities=list(cities),
        property_types=[enum_value(PROPERTY_TYPE, t) for t in property_types],
        sources=[enum_value(LISTING_SOURCE, s) for s in sources],
        active_only=active_only,
    )
    for name, value in (("min_price", min_price), ("max_price", max_price), ("min_rooms", min_rooms), ("max_rooms", max_rooms)):
        if value is not None:
            setattr(flt, name, value)
    if updated_since is not None:
        flt.updated_since.CopyFrom(_timestamp(updated_since))
    return export_pb2.ExportPropertiesRequest(
        format=formats.format_value(format),
        filter=flt,
        columns=list(columns),
        limit=limit,
        rows_per_chunk=rows_per_chunk,
        bytes_per_chunk=bytes_per_chunk,
        resume_token=resume_token,
    )


@dataclass
class DownloadProgress:
    rows: int = 0
    bytes: int = 0
    estimated_total_rows: int = 0
    resumes: int = 0
    partitions: int = 1


@dataclass
class DownloadResult:
    rows: int
    bytes_written: int
    resumes: int
    partitions: int
    elapsed: float
    export_ids: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class BinarySink(Protocol):
    """Where `download` writes: a binary file, or anything with its `write` (e.g. `arrow.ParquetSink`)."""

    def write(self, data: bytes, /) -> object: ...


class _Counting:
    """Wraps a binary sink to count bytes written."""

    def __init__(self, sink: BinarySink) -> None:
        self.sink = sink
        self.written = 0

    def write(self, data: bytes) -> None:
        self.sink.write(data)
        self.written += len(data)


class ExportClient(BaseClient):
    SERVICE = "rentscout.export.v1.ExportService"
    STUB = export_pb2_grpc.ExportServiceStub

    def __init__(
        self,
        target: str | None = None,
        *,
        resume: RetryPolicy | None = None,
        max_stall: float = DEFAULT_MAX_STALL,
        reconnect_wait: float = DEFAULT_RECONNECT_WAIT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        """`resume` paces resuming broken streams; see `export_stream` for `max_stall`, `reconnect_wait`
        and `connect_timeout` (how long starting an export may take before it fails)."""
        super().__init__(target, **kwargs)
        self.resume_policy = resume
        self.max_stall = max_stall
        self.reconnect_wait = reconnect_wait
        self.connect_timeout = connect_timeout
        self._flights: FlightExports | None = None

    def export(
        self,
        request: export_pb2.ExportPropertiesRequest | None = None,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        correlation_id: str | None = None,
        on_chunk: Callable[[ExportStream, export_pb2.ExportChunk], object] | None = None,
        **request_fields: Any,
    ) -> ExportStream:
        """A resumable stream (read it with `async for row in ...`, `.chunks()` or `.data()`).

        `timeout` bounds the whole export including resumes (None: no deadline; keepalive detects
        dead connections). Either pass a request or `export_request` keyword arguments.
        """
        if request is None:
            request = export_request(**request_fields)
        elif request_fields:
            raise TypeError("pass either a request or request fields, not both")
        return ExportStream(
            self._invoker,
            request,
            resume=self.resume_policy,
            timeout=timeout,
            metadata=metadata,
            correlation_id=correlation_id,
            on_chunk=on_chunk,
            max_stall=self.max_stall,
            reconnect_wait=self.reconnect_wait,
            connect_timeout=self.connect_timeout,
        )

    @property
    def flights(self) -> FlightExports:
        """This client's Arrow Flight reader (made at first use, closed with the client): the target's breaker and
        retry budget, this client's resume policy and `max_stall`."""
        if self._flights is None:
            self._flights = FlightExports(
                self.config,
                breaker=self._invoker.breaker,
                retry_budget=self._invoker.budget,
                resume=self.resume_policy,
                max_stall=self.max_stall,
            )
        return self._flights

    async def close(self) -> None:
        if self._flights is not None:
            self._flights.close()
        await super().close()

    @overload
    def export_arrow(
        self,
        request: export_pb2.ExportPropertiesRequest | None = None,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        correlation_id: str | None = None,
        flight: Literal[False] = False,
        parallel: Literal[1] = 1,
        **request_fields: Any,
    ) -> ArrowStream: ...

    @overload
    def export_arrow(
        self,
        request: export_pb2.ExportPropertiesRequest | None = None,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        correlation_id: str | None = None,
        flight: bool = False,
        parallel: int = 1,
        **request_fields: Any,
    ) -> ArrowStream | FlightArrowStream: ...

    def export_arrow(
        self,
        request: export_pb2.ExportPropertiesRequest | None = None,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        correlation_id: str | None = None,
        flight: bool = False,
        parallel: int = 1,
        **request_fields: Any,
    ) -> ArrowStream | FlightArrowStream:
        """The record batches of an Arrow export (`async for batch in ...`: pyarrow.RecordBatch), resumable, every
        row exactly once. Pass an EXPORT_FORMAT_ARROW request or `export_request` keyword arguments (the format
        defaults to arrow). Needs the `arrow` extra (pyarrow).

        `flight=True` (implied by `parallel` > 1) reads it over Arrow Flight instead (`rentscout.sdk.flight`: the
        server decodes COPY BINARY, pyarrow's C++ client reads), `parallel` endpoints at once, in id order; the
        result is a `FlightArrowStream` (same `async for` and `read_all()`)."""
        if request is None:
            request = export_request(**{"format": "arrow", **request_fields})
        elif request_fields:
            raise TypeError("pass either a request or request fields, not both")
        if request.format != formats.ARROW:
            raise ValueError("export_arrow reads EXPORT_FORMAT_ARROW exports; use export() for the text formats")
        if flight or parallel > 1:
            flights, read = self.flights, request

            def open_reader() -> pa.RecordBatchReader:
                return flights.read(
                    read, parallel=parallel, timeout=timeout, metadata=metadata or (), correlation_id=correlation_id
                )

            return FlightArrowStream(open_reader, flights)
        return ArrowStream(self.export(request, timeout=timeout, metadata=metadata, correlation_id=correlation_id))

    async def plan_export(
        self, request: export_pb2.ExportPropertiesRequest, partitions: int, **call: Any
    ) -> export_pb2.PlanExportResponse:
        return await self._call(
            "PlanExport",
            export_pb2.PlanExportRequest(export=request, partitions=partitions),
            export_pb2.PlanExportResponse,
            **call,
        )

    async def statistics(self, since: dt.datetime | None = None, **call: Any) -> export_pb2.GetExportStatisticsResponse:
        request = export_pb2.GetExportStatisticsRequest()
        if since is not None:
            request.since.CopyFrom(_timestamp(since))
        return await self._call("GetExportStatistics", request, export_pb2.GetExportStatisticsResponse, **call)

    def partition_streams(
        self, request: export_pb2.ExportPropertiesRequest, plan: export_pb2.PlanExportResponse, **stream_options: Any
    ) -> list[ExportStream]:
        """One resumable stream per PlanExport partition (read them concurrently)."""
        streams = []
        for partition in sorted(plan.partitions, key=lambda p: p.index):
            part = export_pb2.ExportPropertiesRequest()
            part.CopyFrom(request)
            part.resume_token = partition.resume_token
            streams.append(self.export(part, **stream_options))
        return streams

    async def download(
        self,
        request: export_pb2.ExportPropertiesRequest,
        out: BinarySink | None = None,
        *,
        parallel: int = 1,
        split: Callable[[int], Path] | None = None,
        progress: Callable[[DownloadProgress], object] | None = None,
        spool_dir: str | None = None,
        timeout: float | None = None,
        correlation_id: str | None = None,
        flight: bool = False,
    ) -> DownloadResult:
        """Write a whole export to `out` (one valid file) or, with `split`, one file per partition.

        `flight=True` (Arrow exports only, one file) reads it over Arrow Flight, `parallel` endpoints at once, and
        writes the batches as one Arrow IPC stream, in id order."""
        if (out is None) == (split is None):
            raise ValueError("give exactly one of out and split")
        started = time.monotonic()
        state = DownloadProgress(partitions=1)
        if flight:
            if split is not None or request.format != formats.ARROW:
                raise ValueError("download(flight=True) writes one Arrow file: an ARROW request and out, not split")
            assert out is not None
            return await self._download_flight(
                request,
                _Counting(out),
                state,
                started,
                parallel=parallel,
                progress=progress,
                timeout=timeout,
                correlation_id=correlation_id,
            )
        streams: list[ExportStream] = []

        def on_chunk(stream: ExportStream, chunk: export_pb2.ExportChunk) -> None:
            state.rows += chunk.rows
            state.bytes += len(chunk.data)
            state.resumes = sum(s.resumes for s in streams)
            if len(streams) == 1:
                state.estimated_total_rows = stream.estimated_total_rows
            if progress is not None:
                progress(state)

        options: dict[str, Any] = {"timeout": timeout, "correlation_id": correlation_id, "on_chunk": on_chunk}
        if parallel <= 1:
            streams.append(self.export(request, **options))
        else:
            plan = await self.plan_export(
                request, parallel, timeout=timeout if timeout is not None else 60.0, correlation_id=correlation_id
            )
            state.estimated_total_rows = plan.estimated_total_rows
            streams += self.partition_streams(request, plan, **options)
            state.partitions = len(streams)
        if progress is not None:
            progress(state)

        files: list[str] = []
        if split is not None:
            written = await self._write_split(request, streams, split, files)
        else:
            assert out is not None
            sink = _Counting(out)
            await self._write_merged(request, streams, sink, spool_dir)
            written = sink.written
        state.resumes = sum(s.resumes for s in streams)
        if progress is not None:
            progress(state)
        return DownloadResult(
            rows=state.rows,
            bytes_written=written,
            resumes=state.resumes,
            partitions=len(streams),
            elapsed=time.monotonic() - started,
            files=files,
            export_ids=sorted({s.header.export_id for s in streams if s.header and s.header.export_id}),
        )

    async def _download_flight(
        self,
        request: export_pb2.ExportPropertiesRequest,
        sink: _Counting,
        state: DownloadProgress,
        started: float,
        *,
        parallel: int,
        progress: Callable[[DownloadProgress], object] | None,
        timeout: float | None,
        correlation_id: str | None,
    ) -> DownloadResult:
        """The Flight reader's batches as one Arrow IPC stream (schema message, batch messages, end of stream)."""
        stream = self.export_arrow(request, flight=True, parallel=parallel, timeout=timeout, correlation_id=correlation_id)
        assert isinstance(stream, FlightArrowStream)
        resumed = stream.resumes  # the reader's count is per client
        state.partitions = max(1, parallel)
        async for batch in stream:
            if sink.written == 0:
                sink.write(batch.schema.serialize().to_pybytes())
            sink.write(batch.serialize().to_pybytes())
            state.rows += batch.num_rows
            state.bytes = sink.written
            state.resumes = stream.resumes - resumed
            if progress is not None:
                progress(state)
        if sink.written == 0:  # an empty export is still a valid stream with its schema
            assert stream.schema is not None
            sink.write(stream.schema.serialize().to_pybytes())
        sink.write(arrow_format.EOS)
        state.resumes = stream.resumes - resumed
        if progress is not None:
            progress(state)
        return DownloadResult(
            rows=state.rows,
            bytes_written=sink.written,
            resumes=state.resumes,
            partitions=state.partitions,
            elapsed=time.monotonic() - started,
        )

    async def _write_split(
        self,
        request: export_pb2.ExportPropertiesRequest,
        streams: list[ExportStream],
        split: Callable[[int], Path],
        files: list[str],
    ) -> int:
        async def one(index: int, stream: ExportStream) -> int:
            path = split(index)
            files.append(str(path))
            with path.open("wb") as f:
                sink = _Counting(f)
                async for piece in stream.data():
                    sink.write(piece)
            return sink.written

        if not streams:  # an empty export still yields one (empty but valid) file
            stitcher = formats.stitcher(request.format, request.columns)
            path = split(0)
            files.append(str(path))
            path.write_bytes(stitcher.finish())
            return path.stat().st_size
        return sum(await _gather_or_cancel([one(i, s) for i, s in enumerate(streams)]))

    async def _write_merged(
        self, request: export_pb2.ExportPropertiesRequest, streams: list[ExportStream], sink: _Counting, spool_dir: str | None
    ) -> None:
        merged = formats.stitcher(request.format, request.columns)
        if not streams:
            sink.write(merged.finish())
            return
        with contextlib.ExitStack() as files:
            spools: list[IO[bytes]] = [files.enter_context(tempfile.TemporaryFile(dir=spool_dir)) for _ in streams[1:]]

            async def first() -> None:
                sink.write(merged.start_segment())
                async for piece in streams[0].data():
                    merged.columns = merged.columns or streams[0].columns
                    out = merged.feed(piece)
                    if out:
                        sink.write(out)

            async def spooled(index: int) -> None:
                async for piece in streams[index].data():
                    spools[index - 1].write(piece)

            tasks = [asyncio.ensure_future(first())] + [asyncio.ensure_future(spooled(i)) for i in range(1, len(streams))]
            try:
                for index, task in enumerate(tasks):
                    await task
                    if index == 0:
                        continue
                    spool = spools[index - 1]
                    spool.seek(0)
                    merged.columns = merged.columns or streams[index].columns
                    sink.write(merged.start_segment())
                    while block := spool.read(_COPY_BLOCK):
                        out = merged.feed(block)
                        if out:
                            sink.write(out)
                    spool.truncate(0)  # give the disk space back early
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            sink.write(merged.finish())


async def _gather_or_cancel(coros: list[Any]) -> list[Any]:
    """Run concurrently; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class SyncExportStream:
    """Blocking iteration over an ExportStream (rows by default)."""

    def __init__(self, loop: Any, stream: ExportStream) -> None:
        self._loop = loop
        self.stream = stream

    def __iter__(self) -> Any:
        return self.rows()

    def rows(self) -> Any:
        return self._loop.iterate(self.stream.rows())

    def chunks(self) -> Any:
        return self._loop.iterate(self.stream.chunks())

    def data(self) -> Any:
        return self._loop.iterate(self.stream.data())

    def __getattr__(self, name: str) -> Any:  # header, summary, rows_received, resumes ...
        return getattr(self.stream, name)


@sync_methods(ExportClient)
class SyncExportClient(SyncClient):
    ASYNC = ExportClient

    @property
    def flights(self) -> FlightExports:
        """This client's Arrow Flight reader (the async client's: one implementation, one breaker)."""
        flights: FlightExports = self._async.flights
        return flights

    def export(self, request: export_pb2.ExportPropertiesRequest | None = None, **kwargs: Any) -> SyncExportStream:
        return SyncExportStream(self._loop, self._async.export(request, **kwargs))

    def export_arrow(
        self, request: export_pb2.ExportPropertiesRequest | None = None, *, flight: bool = False, parallel: int = 1, **kwargs: Any
    ) -> pa.RecordBatchReader:
        """A pyarrow.RecordBatchReader over an Arrow export (resumable, every row exactly once); DuckDB, polars and
        pandas read it as it streams. Arguments as for `ExportClient.export_arrow`.

        `flight=True` (implied by `parallel` > 1) reads it over Arrow Flight instead (`rentscout.sdk.flight`: the
        server decodes COPY BINARY, pyarrow's C++ client reads), `parallel` endpoints at once, in id order."""
        if flight or parallel > 1:
            flight_stream: FlightArrowStream = self._async.export_arrow(request, flight=True, parallel=parallel, **kwargs)
            return flight_stream.open()
        stream = self._async.export_arrow(request, **kwargs)
        batches = self._loop.iterate(stream.batches())
        first = next(batches, None)  # the first chunk carries the schema
        if stream.schema is None:
            raise ValueError("the Arrow export ended without a schema")
        return batch_reader(stream.schema, first, batches)
