"""ECS-style JSON logging: one object per line on stdout, with correlation and trace ids on every line.

Field names follow the Elastic Common Schema (`@timestamp`, `log.level`, `service.name`, `trace.id`,
`event.duration` in ns, `error.*`). Business fields are passed as `extra={"fields": {...}}` or
through the helpers below, which are the events every service logs (the seeds' StructuredLogger).

Cost per line: the access log's constant fields are built once per method and status code; the
timestamp's seconds are formatted once per second; `configure` turns off the LogRecord attributes
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


def ecs_document(created: float, level: str, message: str, logger: str, fields: dict[str, Any] | None,
                 exc_info: Any = None) -> dict[str, Any]:
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
        return ecs_line(ecs_document(record.created, record.levelname, record.getMessage(), record.name,
                                     getattr(record, "fields", None), record.exc_info))


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
            record.args = (dict.fromkeys(args, _REDACTED) if isinstance(args, dict)
                           else tuple(_REDACTED for _ in args))
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
    iteration, after its responses were handed to gRPC). `flush` writes what is collected.

    A collected line may still be a `Deferred` one: text made only when it is written, so that an RPC's
    access line is assembled after its response is on its way, not before."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on
        self._lines: list[str | Deferred] = []  # written on that loop, not yet on the stream

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

    def write_text(self, text: str | Deferred) -> None:
        """Write text that ends with its line's terminator, or a line to make then (the caller holds the
        lock), flushing as the class says."""
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
                self.stream.write("".join([line if isinstance(line, str) else self._made(line) for line in lines]))
            super().flush()

    def _made(self, line: Deferred) -> str:
        try:
            return line.text()
        except Exception:  # as logging does: a line that cannot be made is reported, the others written
            self.handleError(logging.makeLogRecord({"name": _events.name, "msg": "access line"}))
            return ""

    def _scheduled_flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_on = None
            self.flush()


class Deferred:
    """An access line's parts, made into its text when the handler writes it (see AccessLine.line)."""

    __slots__ = ("access", "created", "duration_s", "extra", "ids", "peer", "role")

    def __init__(self, access: AccessLine, created: float, duration_s: float, peer: str, role: str | None,
                 extra: dict[str, Any] | None, ids: tuple[str, str, str]) -> None:
        self.access, self.created, self.duration_s, self.peer, self.role = access, created, duration_s, peer, role
        self.extra, self.ids = extra, ids

    def text(self) -> str:
        return self.access.line(self.created, self.duration_s, self.peer, self.role, self.extra, self.ids)


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
    _events.log(level, "database query", extra={"fields": {
        **ecs_event("database", "access"), "event.duration": ns(duration_s),
        "db.statement.fingerprint": fingerprint(sql), "db.rows": rows, **extra}})


def log_cache_op(operation: str, key: str, hit: bool | None, duration_s: float, **extra: Any) -> None:
    """A cache operation: key, hit or miss, duration."""
    _events.debug("cache %s", operation, extra={"fields": {
        **ecs_event("database", "access"), "event.action": f"cache-{operation}", "cache.key": key, "cache.hit": hit,
        "event.duration": ns(duration_s), **extra}})


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
_peers: dict[str, str] = {}  # peer -> its members as JSON text (a connection makes many calls)
_roles: dict[str | None, str] = {}  # role -> its `user.roles` member as JSON text


def _peer_json(peer: str) -> str:
    """`,"client.address":..,"client.ip":..,"client.port":..` for `peer` (empty for a peer it cannot read)."""
    found = _peers.get(peer)
    if found is None:
        if len(_peers) >= 4096:
            _peers.clear()
        fields = peer_fields(peer)
        found = _peers[peer] = "," + orjson.dumps(fields).decode()[1:-1] if fields else ""
    return found


def _role_json(role: str | None) -> str:
    found = _roles.get(role)
    if found is None:
        found = _roles[role] = ',"user.roles":' + orjson.dumps([role] if role else []).decode()
    return found


def call_ids_json(correlation_id: str, trace_id: str, span_id: str) -> str:
    """`"correlation.id":..,"trace.id":..,"span.id":..,` (trace and span ids as hex; empty: absent): the
    members of a call's ids as an access line starts with them."""
    if not correlation_id:
        cid = ""
    elif '"' in correlation_id or "\\" in correlation_id or not correlation_id.isprintable():  # JSON escapes
        cid = f'"correlation.id":{orjson.dumps(correlation_id).decode()},'
    else:
        cid = f'"correlation.id":"{correlation_id}",'
    return f'{cid}"trace.id":"{trace_id}","span.id":"{span_id}",' if trace_id else cid


def _current_ids() -> tuple[str, str, str]:
    """The current context's correlation id and trace and span ids in hex (see call_ids_json)."""
    return (context.correlation_id.get() or "", *tracing.hex_ids(trace.get_current_span()))


def _only_handler(logger: logging.Logger, level: int) -> LineHandler | None:
    """The LineHandler that is the one place a record of `logger` at `level` would go (no filter on the way,
    no other handler, nothing disabled), else None: then records must go through logging."""
    current: logging.Logger | None = logger
    found: LineHandler | None = None
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if found is not None or not isinstance(handler, LineHandler) or handler.filters or level < handler.level:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


# the members every ECS line has besides its fields: the record's and the call's ids (see ecs_document)
_DOCUMENT_KEYS = frozenset({"@timestamp", "log.level", "message", "ecs.version", *_SERVICE, "log.logger",
                            "correlation.id", "trace.id", "span.id"})
# the members of an access line that vary per call (see AccessLine.line)
_CALL_KEYS = frozenset({"event.duration", "client.address", "client.ip", "client.port", "user.roles"})


class AccessLine:
    """The access-log line of one method ending with one status code: its level, message and constant
    fields built once; `emit` adds the call's duration, peer, role and business fields.

    When the process's LineHandler is the only place the line would go (as in a server), `emit` writes it
    there itself: the same ECS line as through logging, assembled from JSON text made once (the constant
    members, each peer's and each role's) and the call's own members, without a LogRecord or a document
    to encode. Anything else attached (a capture in a test, a filter) gets records as usual."""

    __slots__ = ("_reserved", "_tail", "_tail_of", "fields", "level", "level_name", "message")

    def __init__(self, method: str, code: str) -> None:
        level = logging.INFO if code in ("OK", "CANCELLED", "NOT_FOUND", "INVALID_ARGUMENT") else logging.WARNING
        self.level = logging.ERROR if code in ("INTERNAL", "UNKNOWN", "DATA_LOSS") else level
        self.level_name = logging.getLevelName(self.level)
        self.message = f"rpc {method} {code}"
        self.fields: dict[str, Any] = {
            "event.kind": "event", **ecs_event("api", "access", *(("denied",) if code in _DENIED else ())),
            "event.dataset": "rentscout.access", "event.outcome": "success" if code == "OK" else "failure",
            "rpc.system": "grpc", "rpc.method": method, "rpc.grpc.status_code": code}
        # a business field of one of these names sends the line through logging (one member each, as
        # Elasticsearch wants; there, the fields win as in ecs_document)
        self._reserved = frozenset(self.fields) | _DOCUMENT_KEYS | _CALL_KEYS
        self._tail = ""  # the line's constant members as JSON text (for the service configured: _tail_of)
        self._tail_of: tuple[str, ...] = ()

    def _constant_tail(self) -> str:
        """`,"log.level":..,"message":..,<service>,<the constant fields>}\n`: what every line of this method
        and code repeats; rebuilt when `configure` names another service."""
        service = (_SERVICE["service.name"], _SERVICE["service.version"])
        if self._tail_of != service:
            constant = {"log.level": self.level_name.lower(), "message": self.message, "ecs.version": ECS_VERSION,
                        **_SERVICE, "log.logger": _events.name, **self.fields}
            self._tail, self._tail_of = "," + orjson.dumps(constant).decode()[1:] + "\n", service
        return self._tail

    def line(self, created: float, duration_s: float, peer: str, role: str | None,
             extra: dict[str, Any] | None = None, ids: tuple[str, str, str] | None = None) -> str:
        """The ECS line, newline included: the call's own members (time, ids, duration, peer, role, business
        fields) and the constant ones; the document `ecs_document` makes. `ids`: the call's correlation,
        trace and span ids, as `call_ids_json` takes them (default: the current context's)."""
        head = (f'{{"@timestamp":"{timestamp(created)}",{call_ids_json(*(_current_ids() if ids is None else ids))}'
                f'"event.duration":{int(duration_s * 1_000_000_000)}{_peer_json(peer)}{_role_json(role)}')
        if extra:
            head += "," + orjson.dumps(extra, default=str).decode()[1:-1]
        return head + self._constant_tail()

    def emit(self, duration_s: float, peer: str, role: str | None, extra: dict[str, Any] | None = None,
             ids: tuple[str, str, str] | None = None) -> None:
        if not _events.isEnabledFor(self.level):
            return
        handler = _only_handler(_events, self.level)
        if handler is None or (extra and not self._reserved.isdisjoint(extra)):
            variable = {"event.duration": ns(duration_s), **peer_fields(peer), "user.roles": [role] if role else []}
            _events.log(self.level, self.message, extra={"fields": {**self.fields, **variable, **(extra or {})}})
            return
        try:
            line = Deferred(self, time.time(), duration_s, peer, role, extra,
                            _current_ids() if ids is None else ids)  # the ids of the call, not of the writer
            with handler.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                handler.write_text(line)
        except Exception:  # as logging does: a line that cannot be written never fails the call
            handler.handleError(logging.makeLogRecord({"name": _events.name, "msg": self.message}))


@lru_cache(maxsize=4096)
def access_line(method: str, code: str) -> AccessLine:
    return AccessLine(method, code)


def log_rpc(method: str, code: str, duration_s: float, peer: str, role: str | None, **extra: Any) -> None:
    """The access-log line: one per RPC."""
    access_line(method, code).emit(duration_s, peer, role, extra)


class Stopwatch:
    """`with Stopwatch() as sw: ...; sw.elapsed` - monotonic seconds."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start
