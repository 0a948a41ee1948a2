"""The SQL of the export service: the statements around a stream's SELECT list, and PlanExport's ranges.

PostgreSQL renders every byte with COPY; what each format selects, and the COPY options it renders with,
are the format's (rentscout.wire.formats). Here: the session a stream runs in, its keyset window
(`id > after [AND id <= upper] ORDER BY id LIMIT n`, never OFFSET), the EXPLAIN that estimates its rows, and
PlanExport's cut of the id sequence into ranges of equal row counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rentscout.wire.schema import KEY, TABLE
from rentscout.wire.sql import ident

# Session settings every export stream runs with, so output never depends on the pool's defaults.
SESSION_SETUP = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 1; SET standard_conforming_strings = on; SET statement_timeout = {timeout}"
)


@dataclass(frozen=True)
class Window:
    """The keyset window of one stream: ids in (after_id, upper_id], at most `limit` rows."""

    after_id: int | None
    upper_id: int | None
    limit: int | None


def where_sql(base: str, window: Window) -> str:
    parts = [base] if base else []
    if window.after_id is not None:
        parts.append(f"{ident(KEY)} > {int(window.after_id)}")
    if window.upper_id is not None:
        parts.append(f"{ident(KEY)} <= {int(window.upper_id)}")
    return " AND ".join(parts) if parts else "TRUE"


def select_sql(select_list: Sequence[str], base_where: str, window: Window) -> str:
    # ORDER BY a qualified name: a bare "id" would mean an output column called id (e.g. the text key)
    sql = (
        f"SELECT {', '.join(select_list)} FROM {ident(TABLE)} WHERE {where_sql(base_where, window)} "
        f"ORDER BY {ident(TABLE)}.{ident(KEY)}"
    )
    if window.limit is not None:
        sql += f" LIMIT {int(window.limit)}"
    return sql


def explain_sql(base_where: str, window: Window) -> str:
    return "EXPLAIN (FORMAT JSON) " + select_sql([ident(KEY)], base_where, window)


def plan_sql(base_where: str, limit: int, partitions: int) -> str:
    """PlanExport: the filtered, limited id sequence cut into `partitions` ranges of equal row counts
    (ntile, one pass): per range k its first and last id and row count n, in order."""
    key = ident(KEY)
    return (
        f"SELECT k, min({key}) AS first_id, max({key}) AS last_id, count(*) AS n "
        f"FROM (SELECT {key}, ntile({int(partitions)}) OVER (ORDER BY {key}) AS k "
        f"FROM (SELECT {key} FROM {ident(TABLE)} WHERE {base_where or 'TRUE'} ORDER BY {key} "
        f"LIMIT {int(limit)}) s) t GROUP BY k ORDER BY k"
    )


@dataclass(frozen=True)
class Range:
    """One planned partition: ids in (after_id, upper_id] (None: unbounded), first/last id and rows at planning."""

    after_id: int | None
    upper_id: int | None
    first_id: int
    last_id: int
    rows: int


def plan_ranges(rows: Sequence[Any], limit: int) -> list[Range]:
    """`plan_sql`'s rows as windows that tile the key space: the first open below, the last open above unless
    the limit (not the data) ends the export (then it ends at the limit-th row's id)."""
    truncated = sum(r["n"] for r in rows) >= limit
    out: list[Range] = []
    after: int | None = None
    for i, r in enumerate(rows):
        last = i == len(rows) - 1
        out.append(Range(after, None if last and not truncated else r["last_id"], r["first_id"], r["last_id"], r["n"]))
        after = r["last_id"]
    return out
