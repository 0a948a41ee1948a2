"""Validation of an export request into an ExportSpec: every problem is reported at once, by field."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from rentscout.export.v1 import export_pb2
from rentscout.export_service.filters import filter_sql
from rentscout.export_service.settings import ExportSettings
from rentscout.runtime.errors import Unimplemented, Violations
from rentscout.wire import formats
from rentscout.wire.formats import Format
from rentscout.wire.schema import KEY, Column

DEFAULT_ROWS_PER_CHUNK = 1000
MIN_BYTES_PER_CHUNK = 1024
MAX_COLUMNS = 200


@dataclass(frozen=True)
class ExportSpec:
    format: Format
    columns: tuple[Column, ...]
    where: str  # filter predicate of literals ('' = none)
    limit: int  # as requested (0 = none)
    effective_limit: int  # limit, or the server maximum
    rows_per_chunk: int
    bytes_per_chunk: int
    fingerprint: bytes

    @property
    def hidden_key(self) -> bool:
        """True when the stream selects the id in front (for resume tokens) and strips it per row."""
        return self.columns[0].name != KEY


def check_static(req: export_pb2.ExportPropertiesRequest, s: ExportSettings, v: Violations, prefix: str = "") -> str:
    """The checks that need no database; returns the filter predicate."""
    try:
        missing = formats.by_enum(req.format).available()
    except ValueError:
        known = ", ".join(export_pb2.ExportFormat.Name(f.enum) for f in formats.FORMATS)
        v.add(f"{prefix}format", f"must be one of {known} (got {req.format})")
    else:
        if missing:
            raise Unimplemented(f"this server cannot export {export_pb2.ExportFormat.Name(req.format)}: {missing}")
    if req.limit < 0:
        v.add(f"{prefix}limit", "must not be negative (0 means no limit)")
    elif req.limit > s.max_limit:
        v.add(f"{prefix}limit", f"must be at most {s.max_limit} (RENTSCOUT_EXPORT_MAX_LIMIT)")
    if not 0 <= req.rows_per_chunk <= s.max_rows_per_chunk:
        v.add(f"{prefix}rows_per_chunk", f"must be from 1 to {s.max_rows_per_chunk}, or 0 for the default")
    if req.bytes_per_chunk != 0 and not MIN_BYTES_PER_CHUNK <= req.bytes_per_chunk <= s.max_bytes_per_chunk:
        v.add(f"{prefix}bytes_per_chunk", f"must be from {MIN_BYTES_PER_CHUNK} to {s.max_bytes_per_chunk}, or 0 for the default")
    if len(req.columns) > MAX_COLUMNS:
        v.add(f"{prefix}columns", f"at most {MAX_COLUMNS} columns")
    return filter_sql(req.filter, v, f"{prefix}filter.")


def resolve_columns(requested: Sequence[str], table: Sequence[Column], v: Violations, prefix: str = "") -> tuple[Column, ...]:
    by_name = {c.name: c for c in table}
    if not requested:
        return tuple(table)
    out: list[Column] = []
    seen: set[str] = set()
    for i, name in enumerate(requested):
        if name not in by_name:
            v.add(f"{prefix}columns[{i}]", f"unknown column {name!r}; known: {', '.join(by_name)}")
        elif name in seen:
            v.add(f"{prefix}columns[{i}]", f"duplicate column {name!r}")
        else:
            seen.add(name)
            out.append(by_name[name])
    return tuple(out)


def fingerprint(req: export_pb2.ExportPropertiesRequest, columns: Sequence[Column]) -> bytes:
    h = hashlib.sha256(b"rentscout.export.v1\0")
    h.update(req.format.to_bytes(4, "big"))
    h.update(req.filter.SerializeToString(deterministic=True))
    h.update(b"\0" + "\0".join(c.name for c in columns).encode() + b"\0")
    h.update(req.limit.to_bytes(8, "big", signed=True))
    return h.digest()[:16]


def build_spec(req: export_pb2.ExportPropertiesRequest, where: str, columns: tuple[Column, ...], s: ExportSettings) -> ExportSpec:
    fmt = formats.by_enum(req.format)
    rows, nbytes = fmt.chunk_limits(
        columns, req.rows_per_chunk, req.bytes_per_chunk or min(s.default_bytes_per_chunk, s.max_bytes_per_chunk)
    )
    return ExportSpec(
        format=fmt,
        columns=columns,
        where=where,
        limit=req.limit,
        effective_limit=req.limit or s.max_limit,
        rows_per_chunk=rows or DEFAULT_ROWS_PER_CHUNK,
        bytes_per_chunk=nbytes,
        fingerprint=fingerprint(req, columns),
    )
