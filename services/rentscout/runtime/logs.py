"""ECS-style JSON logging: one object per line on stdout, with correlation and trace ids on every line.

Field names follow the Elastic Common Schema (`@timestamp`, `log.level`, `service.name`, `trace.id`,
`event.duration` in ns, `error.*`). Business fields are passed as `extra={"fields": {...}}` or
through the helpers below, which are the events every service logs.

Cost per line: the access log's constant fields are built once per method and status code (every line,
the access line too, is one document encoded by `ecs_line`); the timestamp's seconds are formatted once
per second; `configure` turns off the LogRecord attributes
nothing here prints (caller frame, thread, process); the stdout handler writes each line at once
and, on an event loop, flushes once per loop iteration (after the responses of that iteration were
handed to gRPC) instead of once per line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import traceback
from functools import lru_cache
from typing import Any, TextIO

import orjson
from opentelemetry import trace

from rentscout.runtime import context
from rentscout.wire import tracing

ECS_VERSION = "8.11.0"
_SERVICE: dict[str, str] = {"service.name": "rentscout", "service.version": "0.0.0"}


_second: list[Any] = [-1, ""]  # [epoch second, its "YYYY-MM-DDTHH:MM:SS." prefix]


def timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds and `Z`: 2024-05-01T12:00:00.123Z."""
    second = int(created)
    if second != _second[0]:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _second[0] = second
    return f"{_second[1]}{int((created - second) * 1000):03d}Z"


def add_call_ids(doc: dict[str, Any]) -> None:
    """The current call's correlation id and trace ids, when there are."""
    if cid := context.correlation_id.get():
        doc["correlation.id"] = cid
    trace_id, span_id = tracing.hex_ids(trace.get_current_span())
    if trace_id:
        doc["trace.id"], doc["span.id"] = trace_id, span_id


def ecs_document(
    created: float, level: str, message: str, logger: str, fields: dict[str, Any] | None, exc_info: Any = None
) -> dict[str, Any]:
    """One line's fields: the record's, the current RPC's ids (correlation, trace, span, method), then `fields`."""
    doc: dict[str, Any] = {
        "@timestamp": timestamp(created),
        "log.level": level.lower(),
        "message": message,
        "ecs.version": ECS_VERSION,
        **_SERVICE,
        "log.logger": logger,
    }
    add_call_ids(doc)
    if method := context.rpc_method.get():
        doc.setdefault("rpc.method", method)
    if fields:
        doc.update(fields)
    if exc_info and exc_info[0] is not None:
        exc_type, exc, tb = exc_info
        doc["error.type"] = exc_type.__name__
        doc["error.message"] = str(exc)
        doc["error.stack_trace"] = "".join(traceback.format_exception(exc_type, exc, tb))
    return doc


def ecs_line(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc, default=str).decode()


class EcsJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return ecs_line(
            ecs_document(
                record.created,
                record.levelname,
                record.getMessage(),
                record.name,
                getattr(record, "fields", None),
                record.exc_info,
            )
        )


_REDACTED = "[redacted]"
GRPC_MESSAGE_CHARS = 200


def _grpc_library(name: str) -> bool:
    return name == "grpc" or name.startswith(("grpc.", "grpc_"))


class GrpcLibraryRedaction(logging.Filter):
    """The grpc library's own log lines may carry what a peer sent: a header value it could not decode is
    logged whole ("Invalid encoding on b'Bearer <token>\\xff'"). Of its records only the static text is
    printed: every argument becomes [redacted], a pre-formatted message is cut to GRPC_MESSAGE_CHARS, and an
    exception keeps its type only (its message and traceback may quote the value too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _grpc_library(record.name):
            return True
        if record.args:
            args = record.args
            record.args = dict.fromkeys(args, _REDACTED) if isinstance(args, dict) else tuple(_REDACTED for _ in args)
        elif isinstance(record.msg, str) and len(record.msg) > GRPC_MESSAGE_CHARS:
            record.msg = record.msg[:GRPC_MESSAGE_CHARS] + "...[truncated]"
        if record.exc_info:
            exc_type = record.exc_info[0]
            if exc_type is not None:
                fields = getattr(record, "fields", None) or {}
                record.fields = {**fields, "error.type": exc_type.__name__}
            record.exc_info = None
            record.exc_text = None
        record.stack_info = None
        return True


class LineHandler(logging.StreamHandler[TextIO]):
    """Writes each line to the stream at once off an event loop; on one, collects the lines of the loop
    iteration and writes and flushes them together at its end (one write for every line of the
    iteration, after its responses were handed to gRPC). `flush` writes what is collected."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on
        self._lines: list[str] = []  # written on that loop, not yet on the stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_line(self, line: str) -> None:
        """Write one formatted line (the caller holds the lock), flushing as the class says."""
        self.write_text(line + self.terminator)

    def write_text(self, text: str) -> None:
        """Write text that ends with its line's terminator (the caller holds the lock), flushing as the
        class says."""
        scheduled = self._flush_on
        if scheduled is not None and scheduled.is_running():
            self._lines.append(text)  # that loop's flush takes this line too
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush_on = None
            self._lines.append(text)
            self.flush()
            return
        self._flush_on = loop
        self._lines.append(text)
        loop.call_soon(self._scheduled_flush)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            if self._lines:
                lines, self._lines = self._lines, []
                self.stream.write("".join(lines))
            super().flush()

    def _scheduled_flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_on = None
            self.flush()


def configure(service_name: str, service_version: str, level: str = "info") -> None:
    """Route all logging to stdout as ECS JSON lines. Idempotent."""
    _SERVICE["service.name"] = service_name
    _SERVICE["service.version"] = service_version
    # what no ECS line here prints, so LogRecord need not collect it (the logging docs' "Optimization")
    logging._srcfile = None  # the caller's frame
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_rentscout", False):
            root.removeHandler(handler)
    handler = LineHandler(sys.stdout)
    handler.setFormatter(EcsJsonFormatter())
    handler.addFilter(GrpcLibraryRedaction())  # on the handler: it sees every grpc logger, whatever its name
    handler._rentscout = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("asyncio", "grpc._cython"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


@lru_cache(maxsize=2048)
def fingerprint(sql: str) -> str:
    """pg_query fingerprint of a statement (same for statements differing only in constants)."""
    try:
        from pglast.parser import fingerprint as pg_fingerprint

        return pg_fingerprint(sql)
    except Exception:  # unparsable text still gets a stable id
        import hashlib

        return hashlib.sha1(sql.encode()).hexdigest()[:16]


_events = logging.getLogger("rentscout.events")


def ecs_event(category: str, *types: str) -> dict[str, list[str]]:
    """`event.category` and `event.type` as ECS wants them: arrays of its allowed values.

    PostgreSQL and Redis (cache reads, invalidations, breaker, health of either) are `database`
    (types access, change, info, error); an RPC is `api` (access, denied ...). The index template
    (deploy/elasticsearch/index-template.json) and its test hold every line to this.
    """
    return {"event.category": [category], "event.type": list(types)}


def log_db_query(sql: str, duration_s: float, rows: int | None = None, level: int = logging.DEBUG, **extra: Any) -> None:
    """A database statement: fingerprint (never parameters), duration, rows."""
    _events.log(
        level,
        "database query",
        extra={
            "fields": {
                **ecs_event("database", "access"),
                "event.duration": ns(duration_s),
                "db.statement.fingerprint": fingerprint(sql),
                "db.rows": rows,
                **extra,
            }
        },
    )


def log_cache_op(operation: str, key: str, hit: bool | None, duration_s: float, **extra: Any) -> None:
    """A cache operation: key, hit or miss, duration."""
    _events.debug(
        "cache %s",
        operation,
        extra={
            "fields": {
                **ecs_event("database", "access"),
                "event.action": f"cache-{operation}",
                "cache.key": key,
                "cache.hit": hit,
                "event.duration": ns(duration_s),
                **extra,
            }
        },
    )


@lru_cache(maxsize=4096)  # a connection makes many calls; the dict is only ever read
def peer_fields(peer: str) -> dict[str, str | int]:
    """`client.ip`/`client.port` (and `client.address`) from a gRPC peer: `ipv4:127.0.0.1:35884`,
    `ipv6:[::1]:5000`, `unix:/path`; nothing for a peer it cannot read."""
    kind, _, rest = peer.partition(":")
    if kind == "unix":
        return {"client.address": rest} if rest else {}
    if kind not in ("ipv4", "ipv6"):
        return {}
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host:
        return {}
    fields: dict[str, str | int] = {"client.address": host, "client.ip": host}
    if port.isdigit():
        fields["client.port"] = int(port)
    return fields


_DENIED = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})


class AccessLine:
    """The access-log line of one method ending with one status code: its level, message and constant
    fields built once; `emit` logs them with the call's duration, peer, role, ids and business fields, as
    one ECS line through logging like every other line (a hand-written encoder of this line stood here
    until its gain was measured: see docs/architecture.md, "Fast paths measured")."""

    __slots__ = ("fields", "level", "message")

    def __init__(self, method: str, code: str) -> None:
        level = logging.INFO if code in ("OK", "CANCELLED", "NOT_FOUND", "INVALID_ARGUMENT") else logging.WARNING
        self.level = logging.ERROR if code in ("INTERNAL", "UNKNOWN", "DATA_LOSS") else level
        self.message = f"rpc {method} {code}"
        self.fields: dict[str, Any] = {
            "event.kind": "event",
            **ecs_event("api", "access", *(("denied",) if code in _DENIED else ())),
            "event.dataset": "rentscout.access",
            "event.outcome": "success" if code == "OK" else "failure",
            "rpc.system": "grpc",
            "rpc.method": method,
            "rpc.grpc.status_code": code,
        }

    def emit(
        self,
        duration_s: float,
        peer: str,
        role: str | None,
        extra: dict[str, Any] | None = None,
        ids: tuple[str, str, str] | None = None,
    ) -> None:
        """Log the line; on an event loop, once the current callback is done (the call's response is on its
        way by then), in a copy of the call's context. `ids`: the call's correlation, trace and span ids
        (default: the current context's); business fields in `extra` win over the line's own, as in
        `ecs_document`."""
        if not _events.isEnabledFor(self.level):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.log(duration_s, peer, role, extra, ids)
            return
        loop.call_soon(self.log, duration_s, peer, role, extra, ids)

    def log(
        self,
        duration_s: float,
        peer: str,
        role: str | None,
        extra: dict[str, Any] | None = None,
        ids: tuple[str, str, str] | None = None,
    ) -> None:
        """Log the line now."""
        fields = {**self.fields, "event.duration": ns(duration_s), **peer_fields(peer), "user.roles": [role] if role else []}
        if ids is not None:
            correlation_id, trace_id, span_id = ids
            if correlation_id:
                fields["correlation.id"] = correlation_id
            if trace_id:
                fields["trace.id"], fields["span.id"] = trace_id, span_id
        if extra:
            fields.update(extra)
        _events.log(self.level, self.message, extra={"fields": fields})


@lru_cache(maxsize=4096)
def access_line(method: str, code: str) -> AccessLine:
    return AccessLine(method, code)


class Stopwatch:
    """`with Stopwatch() as sw: ...; sw.elapsed` - monotonic seconds."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start
