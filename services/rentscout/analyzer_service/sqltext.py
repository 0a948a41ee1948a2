"""Small SQL text helpers: the tag on every statement the analyzer sends, identifier quoting, and
validation of user-supplied table names before they ever reach the catalog."""

from __future__ import annotations

import re

# Every statement the analyzer sends carries this comment, so ListSlowQueries can leave them out.
TAG = "/* rentscout-analyzer */"
TAG_TEXT = "rentscout-analyzer"

MAX_NAME_LENGTH = 63  # NAMEDATALEN - 1
_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_QUALIFIED = re.compile(rf"^\s*({_PART})(?:\s*\.\s*({_PART}))?\s*$")


def tagged(sql: str) -> str:
    """`sql` with the analyzer tag after its first keyword (pg_stat_statements keeps inner comments)."""
    parts = sql.strip().split(maxsplit=1)
    return f"{parts[0]} {TAG} {parts[1]}" if len(parts) == 2 else f"{sql.strip()} {TAG}"


def quote_ident(name: str) -> str:
    """PostgreSQL identifier quoting (always quoted, so case and keywords are preserved)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def check_table_name(raw: str) -> str | None:
    """None when `raw` is a plausible `[schema.]table` name; otherwise what is wrong with it.

    The name still goes to the catalog (to_regclass) as a bound parameter; this only refuses
    text that can never be a table name (quotes, semicolons, spaces, expressions) with a clear message.
    """
    if not raw.strip():
        return "is required"
    if len(raw) > 2 * MAX_NAME_LENGTH + 8:
        return "is too long for a [schema.]table name"
    m = _QUALIFIED.match(raw)
    if m is None:
        return "must be a table name such as properties or public.properties (identifiers only)"
    for part in filter(None, m.groups()):
        bare = part[1:-1].replace('""', '"') if part.startswith('"') else part
        if len(bare) > MAX_NAME_LENGTH:
            return f"has an identifier longer than {MAX_NAME_LENGTH} characters"
        if "\x00" in bare:
            return "contains a NUL character"
    return None
