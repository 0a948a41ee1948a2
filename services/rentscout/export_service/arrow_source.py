"""Arrow record batches of one export window, decoded from PostgreSQL's COPY BINARY by compiled code.

The ADBC PostgreSQL driver (Apache Arrow's) runs `COPY (SELECT ...) TO STDOUT (FORMAT binary)` and decodes it in
C++ into Arrow, streaming: `fetch_record_batch()` yields a batch per ~`batch_bytes` of COPY data, and reading the
next one releases the GIL. So a worker thread decodes while the event loop sends the previous batch, and
PostgreSQL is paced by the reader (a batch not asked for is never read off the socket).

Each batch is conformed to the export's Arrow schema (`rentscout.wire.formats.arrow.arrow_schema`, the same types
as the IPC format): the hidden key is dropped, types ADBC reads differently are cast, and ADBC's known
timestamp/date overflow is corrected with vectorised code (`fix_times`).

Bounded waits: libpq's connect_timeout bounds the connection; while a worker waits on PostgreSQL for the next
batch, the caller bounds that wait (`flight.py`: RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS) and `cancel()`s the query.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from rentscout.runtime.errors import FailedPrecondition
from rentscout.wire.formats.arrow import arrow_schema, arrow_type
from rentscout.wire.schema import KEY, Column
from rentscout.wire.sql import ident

if TYPE_CHECKING:
    import pyarrow as pa

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# PostgreSQL counts from 2000-01-01, Arrow from 1970-01-01; ADBC adds this shift, wrapping around on overflow
PG_EPOCH_SHIFT_US = 946_684_800_000_000
PG_EPOCH_SHIFT_DAYS = 10_957
# PostgreSQL's earliest finite time, 4714-11-24 BC (Julian day 0), since 1970: anything lower wrapped around
PG_MIN_US = -210_866_803_200_000_000
PG_MIN_DAYS = -2_440_588
# types ADBC decodes to the export's Arrow type (or one cast cheaply to it); any other is read as its text
NATIVE = frozenset(
    {"int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar", "bpchar", "timestamptz", "timestamp", "date"}
)


INSTALL_HINT = "Arrow Flight needs the ADBC PostgreSQL driver: pip install 'rentscout-dataplane[server]'"


def missing() -> str | None:
    """Why this process cannot serve Flight (a library is missing), or None."""
    try:
        import adbc_driver_postgresql  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


def fix_times(array: Any, column: str) -> Any:
    """ADBC's timestamps and dates with PostgreSQL's infinities restored.

    PostgreSQL stores 'infinity' and '-infinity' as the largest and smallest integer; ADBC shifts every value to
    the Unix epoch with wrap-around, so both land far below any finite time. They become the largest and smallest
    integer again (as in the IPC format); a finite time too late for Arrow's int64 microseconds (after year 294246)
    also wraps: that is an error naming the column, never a wrong value. One min() pass when nothing is special."""
    import pyarrow as pa
    import pyarrow.compute as pc

    date = pa.types.is_date32(array.type)
    ints = array.view(pa.int32() if date else pa.int64())
    floor = PG_MIN_DAYS if date else PG_MIN_US
    low = pc.min(ints).as_py()
    if low is None or low >= floor:
        return array
    high, lowest = (INT32_MAX, INT32_MIN) if date else (INT64_MAX, INT64_MIN)
    shift = pa.scalar(PG_EPOCH_SHIFT_DAYS if date else PG_EPOCH_SHIFT_US, ints.type)
    raw = pc.subtract(ints, shift)  # unchecked: wraps back to PostgreSQL's own value
    wrapped = pc.less(ints, pa.scalar(floor, ints.type))
    positive, negative = pc.equal(raw, pa.scalar(high, ints.type)), pc.equal(raw, pa.scalar(lowest, ints.type))
    if pc.any(pc.and_(wrapped, pc.invert(pc.or_(positive, negative)))).as_py():
        raise FailedPrecondition(
            f"column {column} holds a time after year 294246, beyond Arrow's range: export it as CSV or JSON"
        )
    fixed = pc.if_else(positive, pa.scalar(high, ints.type), pc.if_else(negative, pa.scalar(lowest, ints.type), ints))
    return fixed.view(array.type)


def select_list(columns: Sequence[Column], hidden_key: bool) -> list[str]:
    """The SELECT list: the key first when hidden (for resume tickets), then the columns, non-native types as text."""
    out = [f"{ident('properties')}.{ident(KEY)}"] if hidden_key else []
    for c in columns:
        out.append(ident(c.name) if c.typname in NATIVE else f"{ident(c.name)}::text AS {ident(c.name)}")
    return out


class Conformer:
    """ADBC's batches -> the export schema's batches, and the key of each batch's last row."""

    def __init__(self, columns: Sequence[Column], hidden_key: bool) -> None:
        self.schema = arrow_schema(columns)
        self.columns = list(columns)
        self.offset = 1 if hidden_key else 0
        self.targets = [arrow_type(c) for c in columns]

    def __call__(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, int]:
        import pyarrow as pa

        arrays = []
        for i, (col, target) in enumerate(zip(self.columns, self.targets, strict=True)):
            array: Any = batch.column(i + self.offset)
            if isinstance(array.type, pa.ExtensionType):
                array = array.storage
            if pa.types.is_timestamp(array.type) or pa.types.is_date32(array.type):
                array = fix_times(array, col.name)
            if array.type != target:
                array = array.cast(target)
            arrays.append(array)
        last = batch.column(0)[batch.num_rows - 1].as_py() if batch.num_rows else None
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema), int(last or 0)


def adbc_uri(dsn: str, connect_timeout: float, application_name: str, statement_timeout_ms: int) -> str:
    """The libpq URI of `dsn` with a connect timeout, an application name and the export session's settings."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query["connect_timeout"] = str(max(1, math.ceil(connect_timeout)))
    query["application_name"] = application_name
    query["options"] = (
        f"-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=1 "
        f"-c statement_timeout={int(statement_timeout_ms)}"
    )
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@dataclass
class WindowQuery:
    uri: str
    sql: str
    batch_bytes: int


class AdbcWindow:
    """One query's batches, read by blocking calls meant for a worker thread (one at a time).

    The driver manager's own objects (database, connection, statement), not its DB-API module, which imports
    pandas or polars when they are installed (~50 MB of server memory for nothing)."""

    def __init__(self, query: WindowQuery) -> None:
        self.query = query
        self._handles: list[Any] = []  # database, connection, statement: closed in reverse
        self._statement: Any = None
        self._reader: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def open(self) -> None:
        import adbc_driver_manager
        import adbc_driver_postgresql  # type: ignore[import-untyped, unused-ignore]
        import pyarrow as pa

        database = adbc_driver_postgresql.connect(self.query.uri)
        if not self._keep(database):
            return
        connection = adbc_driver_manager.AdbcConnection(database)
        statement = adbc_driver_manager.AdbcStatement(connection)
        if not self._keep(connection, statement):
            return
        with self._lock:
            self._statement = statement
        statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(self.query.batch_bytes)})
        statement.set_sql_query(self.query.sql)
        stream, _ = statement.execute_query()
        self._reader = pa.RecordBatchReader._import_from_c(stream.address)

    def _keep(self, *handles: Any) -> bool:
        """Remember handles to close; False when the window was closed meanwhile (they close with it)."""
        with self._lock:
            self._handles += handles
            return not self._closed

    def next(self) -> pa.RecordBatch | None:
        """The next batch (None at the end)."""
        if self._reader is None:
            return None
        try:
            return self._reader.read_next_batch()  # type: ignore[no-any-return]
        except StopIteration:
            return None

    def cancel(self) -> None:
        """Ask PostgreSQL to stop the running query (any thread; the reading thread then sees an error)."""
        with self._lock:
            statement = None if self._closed else self._statement
        if statement is not None:
            try:
                statement.cancel()
            except Exception:  # already finished or closed: nothing to cancel
                pass

    def close(self) -> None:
        """Close the stream and the connection (from the thread that reads, once it no longer reads)."""
        with self._lock:
            self._closed = True
            reader, handles = self._reader, self._handles
            self._reader, self._handles, self._statement = None, [], None
        for thing in (reader, *reversed(handles)):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # a broken connection closes anyway
                    pass
