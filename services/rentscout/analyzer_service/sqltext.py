"""Small SQL text helpers: the tag on every statement the analyzer sends, identifier quoting, and
validation of user-supplied table names before they ever reach the catalog."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pglast import parser

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


# -- statement texts recorded by the server (pg_stat_statements) --------------------------------------

# Statements PostgreSQL plans (and pg_stat_statements normalises, every data constant a $n), by first keyword.
PLANNABLE = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE"})
_STRING_CONSTANTS = frozenset({"SCONST", "USCONST", "BCONST", "XCONST"})
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_PARAM = re.compile(r"\$([0-9]+)")
_KIND_WORDS = 3


@dataclass(frozen=True)
class Shown:
    """A recorded statement as the analyzer shows it: `text`, or nothing and why (`withheld`)."""

    text: str
    withheld: str = ""


def shown_statement(sql: str) -> Shown:
    """The rule for every statement text the analyzer returns that it did not receive in the same call.

    Utility statements (CREATE/ALTER ROLE ... PASSWORD, CREATE USER MAPPING ... OPTIONS, ALTER SYSTEM,
    COPY, SET, SELECT INTO ...) are recorded verbatim, and their values need not even be quoted
    (`ALTER SYSTEM SET x.y = hunter2`), so none is shown: only its kind, from its leading keywords.
    A plannable statement is shown with its comments removed and every quoted constant a placeholder
    ($n after the highest one it has); the numbers pg_stat_statements leaves in one are syntax (ORDER
    BY ordinals, type modifiers). A text that does not scan, or holds more than one statement, is
    withheld too.
    """
    try:
        tokens = parser.scan(sql)
    except parser.ParseError:
        return Shown("", "unreadable statement")
    data = sql  # token offsets are character offsets
    words = [t for t in tokens if t.name not in _COMMENTS]
    if not words:
        return Shown("", "empty statement")
    if any(t.name == "ASCII_59" for t in words[:-1]):  # a ';' before the last token
        return Shown("", "several statements")
    first = next((t for t in words if t.name != "ASCII_40"), words[0])  # skip '('
    keyword = data[first.start : first.end + 1].upper()
    if keyword not in PLANNABLE:
        kind = []
        for t in words[words.index(first) : words.index(first) + _KIND_WORDS]:
            if t.kind == "NO_KEYWORD":
                break
            kind.append(data[t.start : t.end + 1].upper())
        return Shown("", f"{' '.join(kind)} (utility statement)")
    names = {t.name for t in words}
    if "INTO" in names and not names & {"INSERT", "MERGE"}:
        return Shown("", "SELECT INTO (utility statement)")
    return Shown(_replace_constants(data, tokens))


def redact_constants(sql: str) -> str:
    """`sql` without comments, every quoted constant a placeholder; "" when it does not scan."""
    try:
        return _replace_constants(sql, parser.scan(sql))
    except parser.ParseError:
        return ""


def _replace_constants(data: str, tokens: Sequence[Any]) -> str:
    number = max((int(m.group(1)) for m in _PARAM.finditer(data)), default=0)
    out: list[str] = []
    at = 0
    for t in tokens:
        if t.name in _COMMENTS:
            out += [data[at : t.start], " "]
        elif t.name in _STRING_CONSTANTS:
            number += 1
            out += [data[at : t.start], f"${number}"]
        else:
            continue
        at = t.end + 1
    out.append(data[at:])
    return "".join(out).strip()
