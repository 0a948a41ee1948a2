"""`rentscout export`: stream properties to a file or stdout, resuming automatically after breaks.

    rentscout export --format jsonl --city Moscow -o moscow.jsonl
    rentscout export --format csv --active-only -o - | gzip > all.csv.gz      # data on stdout, progress on stderr
    rentscout export --format json --parallel 4 -o all.json                   # 4 PlanExport partitions, one file
    rentscout export --format jsonl --parallel 4 --split -o all.jsonl         # all.part-000.jsonl ... (one per partition)
    rentscout export --format arrow -o - | python -c "import pyarrow, sys; print(pyarrow.ipc.open_stream(sys.stdin.buffer))"
    rentscout export --format parquet --parallel 4 -o all.parquet             # Parquet, one row group at a time

A stream that broke after it started (server restart, network cut, UNAVAILABLE) is resumed from
the last chunk's resume token: the file gets every row exactly once. Resuming gives up only after
--resume-timeout seconds without a new chunk, however often the stream was cut while advancing
(cuts are logged with -v). A target that cannot be reached before the export
starts fails within about 10 s (a few attempts, as for any other command), naming the address.
`--format arrow` writes an Arrow IPC stream; `--format parquet` converts that stream to Parquet as
it arrives (both need the `arrow` extra, pyarrow). The progress bar (stderr, when it is a terminal)
shows rows, rows/s and an ETA from the server's estimated row count.

`--parallel N` asks PlanExport for up to N key-range partitions and reads them at once. Without
`--split` the result is ONE valid file in primary-key order (partition 0 streams straight into it,
the others spool to temporary files next to it and are appended in order). With `--split` each
partition goes to its own valid file `<name>.part-NNN.<ext>` (no spooling). A file output is
written to `<name>.partial` and renamed when complete, so a failed export never leaves a file
that looks whole. Ctrl-C stops an export (exit 130) saying how many rows it had, what it removed
and how to run it again.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from rentscout.cli import parquet
from rentscout.cli.clientargs import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    add_client_flags,
    client_options,
    duration_text,
    fail,
    run,
    size_text,
    stderr_console,
)
from rentscout.cli.hints import city_hint, known_cities, notice
from rentscout.sdk import DownloadProgress, DownloadResult, ExportClient, export_request
from rentscout.sdk.export_stream import DEFAULT_MAX_STALL
from rentscout.wire import formats


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="export properties as CSV, JSON, JSONL, Arrow or Parquet (resumable, parallel)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", default="jsonl", choices=[*formats.names(), parquet.NAME], help="(default: %(default)s)")
    p.add_argument("-o", "--output", default="-", metavar="PATH", help="file to write, or - for stdout (default)")
    f = p.add_argument_group("filter")
    f.add_argument("--city", action="append", default=[], help="exact city name (repeatable: any of)")
    f.add_argument("--type", dest="types", action="append", default=[], help="property type, e.g. apartment (repeatable)")
    f.add_argument("--source", dest="sources", action="append", default=[], help="listing source, e.g. avito (repeatable)")
    f.add_argument("--min-price", type=int)
    f.add_argument("--max-price", type=int)
    f.add_argument("--min-rooms", type=int)
    f.add_argument("--max-rooms", type=int)
    f.add_argument("--active-only", action="store_true")
    f.add_argument("--updated-since", type=_datetime, metavar="ISO8601", help="e.g. 2026-01-31T00:00:00Z")
    p.add_argument(
        "--columns",
        type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
        default=[],
        help="comma-separated columns (default: all, in table order)",
    )
    p.add_argument("--limit", type=int, default=0, help="maximum rows (default: no limit)")
    p.add_argument("--rows-per-chunk", type=int, default=0, help="rows per streamed chunk (default: server's)")
    p.add_argument("--parallel", type=int, default=1, metavar="N", help="read N PlanExport partitions at once")
    p.add_argument("--split", action="store_true", help="with --parallel: one file per partition instead of one file")
    p.add_argument(
        "--resume-timeout",
        type=float,
        default=DEFAULT_MAX_STALL,
        metavar="SECONDS",
        help="once the export has started, give up after this long without receiving a chunk, "
        "however often the stream is cut while it advances (default: %(default)s)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    parquet.add_flags(p)
    add_client_flags(p, "export", timeout=None)
    p.set_defaults(func=main)


def _datetime(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date/time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class RowsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = f"/~{int(task.total):,}" if task.total else ""
        return Text(f"{int(task.completed):,}{total} rows", style="progress.download")


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="progress.data.speed")


class BytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(size_text(task.fields.get("bytes", 0)), style="progress.filesize")


def _check(args: argparse.Namespace) -> None:
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if args.split and (args.parallel < 2 or args.output == "-"):
        raise UsageError("--split needs --parallel N (N >= 2) and a file --output")
    if args.limit < 0:
        raise UsageError("--limit must be >= 0")
    if args.resume_timeout <= 0:
        raise UsageError("--resume-timeout must be positive")
    parquet.check(args)


def main(args: argparse.Namespace) -> int:
    console = stderr_console()

    async def work() -> int:
        _check(args)
        server_format = parquet.SERVER_FORMAT if args.format == parquet.NAME else args.format
        request = export_request(
            server_format,
            cities=args.city,
            property_types=args.types,
            sources=args.sources,
            min_price=args.min_price,
            max_price=args.max_price,
            min_rooms=args.min_rooms,
            max_rooms=args.max_rooms,
            active_only=args.active_only,
            updated_since=args.updated_since,
            columns=args.columns,
            limit=args.limit,
            rows_per_chunk=args.rows_per_chunk,
        )
        show = args.progress if args.progress is not None else console.is_terminal
        progress = Progress(
            TextColumn("[bold]export[/]"),
            BarColumn(),
            TaskProgressColumn(),
            RowsColumn(),
            RateColumn(),
            BytesColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not show,
        )
        task = progress.add_task("export", total=None, bytes=0)

        def on_progress(state: DownloadProgress) -> None:
            so_far.update(rows=state.rows, bytes=state.bytes)
            total = max(state.estimated_total_rows, state.rows) or None
            progress.update(task, completed=state.rows, total=total, bytes=state.bytes)

        options = client_options(args)
        async with ExportClient(args.target, max_stall=args.resume_timeout, **options) as client:
            with progress:
                result = await _download(client, request, args, on_progress)
                progress.update(task, completed=result.rows, total=max(result.rows, 1))
        _report(args, result, console)
        if result.rows == 0:
            await _say_empty(args, console, options["token"])
        return EXIT_OK

    so_far = {"rows": 0, "bytes": 0}
    try:
        return run(args, work, console)
    except KeyboardInterrupt:  # asyncio.run cancelled the export (the .partial is gone, the bar stopped)
        return _say_interrupted(args, console, so_far["rows"], so_far["bytes"])


def _say_interrupted(args: argparse.Namespace, console: Any, rows: int, size: int) -> int:
    """Ctrl-C: what was written, what was removed, and how to run it again; exit 130."""
    got = f"after {rows:,} rows ({size_text(size)})"
    if args.output == "-":
        what = f"interrupted {got}: the data on stdout is incomplete"
    elif args.split:
        parts = sorted(str(p) for p in _split_base(args)[0].parent.glob(_split_base(args)[1] + ".part-*"))
        what = (
            f"interrupted {got}: the {len(parts)} part file(s) written so far are incomplete "
            f"({', '.join(parts[:3])}{', ...' if len(parts) > 3 else ''}); delete them before running again"
        )
    else:
        final = Path(args.output)
        state = "is unchanged" if final.exists() else "was not created"
        what = f"interrupted {got}: removed the incomplete {final}.partial; {final} {state}"
    hint = "run the same command again: a new export starts from the first row (a broken stream is resumed only within one run)"
    return fail(args, console, EXIT_INTERRUPTED, "INTERRUPTED", what, None, hint=hint)


def _split_base(args: argparse.Namespace) -> tuple[Path, str, str]:
    """(output path, file stem, extension) of `--split` part files `<stem>.part-NNN<ext>`."""
    out = Path(args.output)
    default_ext = "." + formats.by_name(parquet.SERVER_FORMAT if args.format == parquet.NAME else args.format).extension
    stem, ext = (out.name[: -len(out.suffix)], out.suffix) if out.suffix else (out.name, default_ext)
    return out, stem, ext


async def _download(client: ExportClient, request: Any, args: argparse.Namespace, on_progress: Any) -> DownloadResult:
    options = {"parallel": args.parallel, "progress": on_progress, "timeout": args.timeout}
    if args.split:
        out, stem, ext = _split_base(args)
        return await client.download(request, split=lambda i: out.with_name(f"{stem}.part-{i:03d}{ext}"), **options)
    if args.output == "-":
        if args.format == parquet.NAME:
            return await parquet.download(client, request, sys.stdout.buffer, args, **options)
        return await client.download(request, sys.stdout.buffer, **options)
    final = Path(args.output)
    partial = final.with_name(final.name + ".partial")
    try:
        with partial.open("wb") as f:
            if args.format == parquet.NAME:
                result = await parquet.download(client, request, f, args, spool_dir=str(final.parent), **options)
            else:
                result = await client.download(request, f, spool_dir=str(final.parent), **options)
        os.replace(partial, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        if exc.filename in (None, str(partial)):  # the temporary name is ours: the user knows their own path
            raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from exc
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    result.files = [str(final)]
    return result


async def _say_empty(args: argparse.Namespace, console: Any, token: str | None) -> None:
    if args.city:
        hint = city_hint(args.city, await known_cities(None, args, token))
    elif any(
        (
            args.types,
            args.sources,
            args.active_only,
            args.updated_since,
            args.min_price,
            args.max_price,
            args.min_rooms,
            args.max_rooms,
        )
    ):
        hint = "nothing matched the filter; widen it"
    else:
        hint = "the properties table is empty: `rentscout db seed` loads demo listings"
    notice(args, console, "the export matched no rows", hint)


def _report(args: argparse.Namespace, result: DownloadResult, console: Any) -> None:
    rate = result.rows / result.elapsed if result.elapsed > 0 else 0.0
    if args.json:
        doc = {
            "rows": result.rows,
            "bytes": result.bytes_written,
            "seconds": round(result.elapsed, 3),
            "rows_per_second": round(rate),
            "resumes": result.resumes,
            "partitions": result.partitions,
            "files": result.files,
            "export_ids": result.export_ids,
            "format": args.format,
        }
        stream = sys.stderr if args.output == "-" else sys.stdout
        stream.write(orjson.dumps(doc).decode() + "\n")
        return
    where = ", ".join(result.files) if result.files else "stdout"
    resumed = f", resumed {result.resumes}x" if result.resumes else ""
    parts = f", {result.partitions} partitions" if result.partitions > 1 else ""
    what = "active listings" if args.active_only else "rows (active and inactive listings)"
    console.print(
        f"exported {result.rows:,} {what} ({size_text(result.bytes_written)}) in "
        f"{duration_text(result.elapsed)} ({rate:,.0f} rows/s{parts}{resumed}) -> {where}",
        markup=False,
    )
