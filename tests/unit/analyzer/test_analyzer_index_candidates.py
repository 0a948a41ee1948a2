"""Index candidates from the AST, their column order, coverage by existing indexes, and hygiene."""

from __future__ import annotations

from typing import Any

import pytest

from rentscout.analyzer_service.index_candidates import (
    Candidate,
    ColumnStats,
    IndexInfo,
    Relation,
    build_candidates,
    column_uses,
    covered_by,
    estimate_index_bytes,
    heuristic_keep,
    index_issues,
)
from rentscout.analyzer_service.safety import parse_select

T = Relation(1, "app", "listings")
U = Relation(2, "app", "owners")
RESOLVE = {(None, "listings"): T, ("app", "listings"): T, (None, "owners"): U}
COLUMNS = {
    1: frozenset({"id", "city", "price", "rooms", "views", "owner_id", "created_at", "is_active"}),
    2: frozenset({"id", "name", "country"}),
}
STATS = {
    (1, "city"): ColumnStats(0.0, 50.0, 0.1, 10),
    (1, "rooms"): ColumnStats(0.0, 7.0, 0.2, 2),
    (1, "price"): ColumnStats(0.0, -0.5, 0.0, 8),
    (1, "owner_id"): ColumnStats(0.1, -0.2, 0.0, 8),
    (1, "is_active"): ColumnStats(0.0, 2.0, 0.9, 1),
    (2, "country"): ColumnStats(0.0, 30.0, 0.0, 8),
}
ROWS = {1: 100_000.0, 2: 5_000.0}


def uses(sql: str):
    parsed = parse_select(sql)
    return column_uses(parsed.statement, RESOLVE, COLUMNS, parsed.cte_names)


def test_equality_range_order_and_joins_are_found() -> None:
    found = {
        (u.relation.name, u.column, u.kind)
        for u in uses(
            "SELECT * FROM listings l JOIN owners o ON o.id = l.owner_id "
            "WHERE l.city = $1 AND rooms IN (1, 2) AND price > 100 AND o.country = 'RU' AND views <> 3 "
            "AND (l.id = 1 OR l.id = 2) AND created_at IS NULL ORDER BY l.created_at DESC"
        )
    }
    assert ("listings", "city", "eq") in found and ("listings", "rooms", "eq") in found
    assert ("listings", "price", "range") in found and ("owners", "country", "eq") in found
    assert ("owners", "id", "eq") in found and ("listings", "owner_id", "eq") in found  # join columns
    assert ("listings", "created_at", "eq") in found and ("listings", "created_at", "order") in found
    assert not any(col in ("views", "id") and rel == "listings" for rel, col, _ in found)  # <> and OR are skipped


def test_ambiguous_expression_and_unknown_columns_are_skipped() -> None:
    assert uses("SELECT * FROM listings l JOIN owners o ON true WHERE id = 1") == []  # id is in both
    assert uses("SELECT * FROM listings WHERE lower(city) = 'x' AND price + 1 > 5") == []
    assert uses("SELECT * FROM listings WHERE nope = 1") == []
    assert uses("WITH listings AS (SELECT 1 AS city) SELECT * FROM listings WHERE city = 1") == []


def test_subqueries_are_analysed_with_their_own_from() -> None:
    found = {
        (u.relation.name, u.column)
        for u in uses("SELECT * FROM owners WHERE id IN (SELECT owner_id FROM listings WHERE city = 'Kazan')")
    }
    assert found == {("listings", "city")}


def test_column_order_follows_selectivity_then_range_then_order() -> None:
    candidates = build_candidates(
        uses("SELECT * FROM listings WHERE rooms = 2 AND city = $1 AND price BETWEEN 1 AND 9 ORDER BY price"), STATS, ROWS
    )
    full = candidates[0]
    assert full.columns == ("city", "rooms", "price")  # city (1/50) is more selective than rooms (1/7)
    assert full.eq == ("city", "rooms") and full.rest == ("price",)
    assert {c.columns for c in candidates} >= {("city", "rooms"), ("city",)}
    assert full.selectivity == pytest.approx(1 / 50 * 1 / 7)
    assert "equality on city" in full.reason and "range on price" in full.reason


def test_order_by_columns_follow_equality_when_no_range_intervenes() -> None:
    c = build_candidates(uses("SELECT * FROM listings WHERE city = 'x' ORDER BY views DESC LIMIT 5"), STATS, ROWS)[0]
    assert c.columns == ("city", "views") and c.descending == ()
    mixed = build_candidates(uses("SELECT * FROM listings ORDER BY city, views DESC"), STATS, ROWS)[0]
    assert mixed.columns == ("city", "views") and mixed.descending == ("views",)
    assert '"views" DESC' in mixed.create_statement()


def test_statements_are_quoted_and_names_bounded() -> None:
    weird = Relation(3, "My Schema", 'ta"ble')
    c = Candidate(weird, ("Some Column",), (), 0.01)
    assert c.create_statement() == (
        'CREATE INDEX CONCURRENTLY "ta""ble_Some Column_idx" ON "My Schema"."ta""ble" ("Some Column");'
    )
    long = Candidate(T, ("a" * 40, "b" * 40), (), 0.01)
    assert len(long.index_name()) == 63 and long.index_name() == Candidate(T, ("a" * 40, "b" * 40), (), 0.5).index_name()


def index(oid: int, *cols: str | None, **kw: Any) -> IndexInfo:
    base: dict[str, Any] = dict(
        oid=oid,
        schema="app",
        name=f"i{oid}",
        table="app.listings",
        table_oid=1,
        columns=cols,
        key_count=len(cols),
        unique=False,
        primary=False,
        valid=True,
        constraint=False,
        am="btree",
        predicate=None,
        expressions=None,
        definition=f"CREATE INDEX i{oid} ...",
        size_bytes=8192,
        idx_scan=5,
    )
    base.update(kw)
    return IndexInfo(**base)


def test_coverage_by_leading_columns() -> None:
    cand = Candidate(T, ("rooms", "city"), ("price",), 0.01)
    found = covered_by(cand, [index(10, "city", "rooms", "price", "views")])
    assert found is not None and found.oid == 10  # equality order is free
    assert covered_by(cand, [index(11, "city", "rooms")]) is None  # shorter
    assert covered_by(cand, [index(12, "city", "price", "rooms")]) is None  # range not after the equalities
    assert covered_by(cand, [index(13, "city", "rooms", "price", predicate="is_active")]) is None  # partial
    assert covered_by(cand, [index(14, "city", "rooms", "price", valid=False)]) is None
    assert covered_by(cand, [index(15, "city", "rooms", "price", am="hash")]) is None
    assert covered_by(Candidate(U, ("country",), (), 0.1), [index(16, "country")]) is None  # another table


def test_heuristic_and_size_estimate() -> None:
    assert heuristic_keep(Candidate(T, ("city",), (), 0.02), 100_000)
    assert not heuristic_keep(Candidate(T, ("is_active",), (), 0.5), 100_000)
    assert not heuristic_keep(Candidate(T, ("city",), (), 0.02), 500)
    size = estimate_index_bytes(Candidate(T, ("price",), (), 0.01), STATS, 100_000)
    assert 1_500_000 < size < 4_000_000 and size % 8192 == 0


def test_index_hygiene() -> None:
    indexes = [
        index(1, "id", unique=True, primary=True, constraint=True, idx_scan=0),
        index(2, "city", idx_scan=9),
        index(3, "city", "rooms", idx_scan=4),
        index(4, "city", "rooms", idx_scan=0),  # identical to 3, newer
        index(5, "price", valid=False, idx_scan=0),
        index(6, "views", idx_scan=0),
        index(7, "city", predicate="is_active", idx_scan=1),  # different predicate: not a duplicate of 2
        index(8, "owner_id", "city", unique=True, idx_scan=0),  # unique: never "unused"
    ]
    issues = {(i.kind, i.index.name) for i in index_issues(indexes, "2026-01-01T00:00:00+00:00")}
    assert issues == {("DUPLICATE", "i2"), ("DUPLICATE", "i4"), ("INVALID", "i5"), ("UNUSED", "i4"), ("UNUSED", "i6")}
    detail = next(i.detail for i in index_issues(indexes) if i.index.name == "i2" and i.kind == "DUPLICATE")
    assert "app.i3" in detail and "DROP INDEX CONCURRENTLY" in detail
