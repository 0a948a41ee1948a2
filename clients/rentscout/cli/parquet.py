"""`rentscout export --format parquet`: an Arrow export written as Parquet by pyarrow.parquet, one row group at a
time (memory stays at about one row group, `--row-group-rows`), with the same resuming, `--parallel` and progress
bar as every export. Parquet is not a server format: the stream is Arrow IPC, converted as it arrives."""

from __future__ import annotations

import argparse
from typing import IO, Any

from rentscout.cli.clientargs import UsageError
from rentscout.sdk import DownloadResult, ExportClient, ParquetSink
from rentscout.sdk.arrow import DEFAULT_ROW_GROUP_ROWS
from rentscout.wire.formats import arrow

NAME = "parquet"
SERVER_FORMAT = "arrow"
EXTENSION = "parquet"


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--row-group-rows",
        type=int,
        default=DEFAULT_ROW_GROUP_ROWS,
        metavar="N",
        help="with --format parquet: rows per Parquet row group (default: %(default)s)",
    )


def check(args: argparse.Namespace) -> None:
    if args.format != NAME:
        return
    if args.split:
        raise UsageError("--split writes one Arrow stream per partition; it does not combine with --format parquet")
    if args.row_group_rows < 1:
        raise UsageError("--row-group-rows must be at least 1")
    if not arrow.available():
        raise UsageError(arrow.INSTALL_HINT)


async def download(
    client: ExportClient, request: Any, out: IO[bytes], args: argparse.Namespace, **options: Any
) -> DownloadResult:
    """The export as one Parquet file written to `out`; `bytes_written` is the Parquet file's size."""
    start = out.tell() if out.seekable() else 0
    with ParquetSink(out, row_group_rows=args.row_group_rows) as sink:
        result = await client.download(request, sink, **options)
    out.flush()
    if out.seekable():
        result.bytes_written = out.tell() - start
    return result
