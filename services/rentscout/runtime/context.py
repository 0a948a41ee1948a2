"""Per-RPC context held in ContextVars so that every log line and downstream call can see it.

The correlation id itself (its ContextVar, header and generation) is part of the wire contract and
lives in `rentscout.wire.correlation`; it is re-exported here for the server code.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from rentscout.wire.correlation import correlation_id as correlation_id
from rentscout.wire.correlation import correlation_id_from as correlation_id_from
from rentscout.wire.correlation import current_correlation_id as current_correlation_id
from rentscout.wire.metadata import CORRELATION_HEADER as CORRELATION_HEADER


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role a bearer token maps to, and a non-secret label for logs."""

    role: str
    name: str


principal: ContextVar[Principal | None] = ContextVar("principal", default=None)
rpc_method: ContextVar[str | None] = ContextVar("rpc_method", default=None)
# Business fields a handler adds to its RPC's access-log line (rows, bytes, cache hit ...).
rpc_fields: ContextVar[dict[str, object] | None] = ContextVar("rpc_fields", default=None)


def annotate(**fields: object) -> None:
    """Add fields (dotted ECS names allowed via **{"export.rows": 1}) to the current RPC's access log."""
    current = rpc_fields.get()
    if current is not None:
        current.update(fields)
