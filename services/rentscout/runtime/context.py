"""Per-RPC context held in ContextVars so that every log line and downstream call can see it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

CORRELATION_HEADER = "x-correlation-id"
REQUEST_ID_HEADER = "x-request-id"
MAX_CORRELATION_ID_LENGTH = 128


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role a bearer token maps to, and a non-secret label for logs."""

    role: str
    name: str


correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
principal: ContextVar[Principal | None] = ContextVar("principal", default=None)
rpc_method: ContextVar[str | None] = ContextVar("rpc_method", default=None)
# Business fields a handler adds to its RPC's access-log line (rows, bytes, cache hit ...).
rpc_fields: ContextVar[dict[str, object] | None] = ContextVar("rpc_fields", default=None)


def annotate(**fields: object) -> None:
    """Add fields (dotted ECS names allowed via **{"export.rows": 1}) to the current RPC's access log."""
    current = rpc_fields.get()
    if current is not None:
        current.update(fields)


def _clean(value: str) -> str | None:
    value = value.strip()
    if not value or len(value) > MAX_CORRELATION_ID_LENGTH or not value.isprintable():
        return None
    return value


def correlation_id_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """`x-correlation-id`, else `x-request-id`, else a new UUID; unusable values are replaced."""
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (CORRELATION_HEADER, REQUEST_ID_HEADER) and isinstance(value, str):
            found.setdefault(key, value)
    for key in (CORRELATION_HEADER, REQUEST_ID_HEADER):
        if key in found and (clean := _clean(found[key])):
            return clean
    return str(uuid.uuid4())


def current_correlation_id() -> str:
    """The current id, or a new one bound to this context (for work started outside an RPC)."""
    value = correlation_id.get()
    if value is None:
        value = str(uuid.uuid4())
        correlation_id.set(value)
    return value
