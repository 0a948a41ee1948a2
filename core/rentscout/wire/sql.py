"""SQL quoting for statements built as text (COPY takes no bind parameters)."""

from __future__ import annotations


def literal(value: str) -> str:
    """A standard-conforming string literal (callers reject NUL, which PostgreSQL text cannot hold)."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
