"""Index candidates from a query's AST and the column statistics, and index hygiene findings (pure logic).

Column order follows the usual B-tree rule: equality columns first (the most selective first, by
`pg_stats`: n_distinct and null_frac), then one range column, then the ORDER BY columns when no
range column stands in their way. A candidate whose columns are already the leading columns of an
existing valid, non-partial B-tree index is "covered" and never suggested.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pglast import ast

from rentscout.analyzer_service.safety import walk
from rentscout.analyzer_service.sqltext import quote_ident

EQ, RANGE, ORDER = "eq", "range", "order"
DEFAULT_EQ_SELECTIVITY = 0.005  # PostgreSQL's DEFAULT_EQ_SEL, used when a column has no statistics
MAX_COLUMNS = 4
HEURISTIC_MAX_SELECTIVITY = 0.1  # without HypoPG: equality columns must keep at most 10% of the rows
HEURISTIC_MIN_ROWS = 1000  # tables smaller than this do not need an index to be fast
_RANGE_OPS = {"<", ">", "<=", ">="}


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class ColumnUse:
    relation: Relation
    column: str
    kind: str  # eq, range, order
    descending: bool = False


@dataclass(frozen=True)
class ColumnStats:
    null_frac: float = 0.0
    n_distinct: float = 0.0  # as pg_stats: > 0 a count, < 0 minus a fraction of the rows
    correlation: float | None = None
    avg_width: int = 8

    def distinct(self, reltuples: float) -> float:
        if self.n_distinct > 0:
            return self.n_distinct
        if self.n_distinct < 0:
            return max(1.0, -self.n_distinct * max(reltuples, 1.0))
        return 0.0

    def eq_selectivity(self, reltuples: float) -> float:
        distinct = self.distinct(reltuples)
        if distinct <= 0:
            return DEFAULT_EQ_SELECTIVITY
        return max(0.0, 1.0 - self.null_frac) / distinct


@dataclass
class Candidate:
    relation: Relation
    eq: tuple[str, ...]
    rest: tuple[str, ...]
    selectivity: float  # estimated share of rows the equality columns keep (1.0 when none)
    reason: str = ""
    descending: tuple[str, ...] = ()  # columns to declare DESC (mixed-direction ORDER BY only)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.eq + self.rest

    @property
    def key(self) -> tuple[int, tuple[str, ...]]:
        return self.relation.oid, self.columns

    def column_sql(self) -> str:
        return ", ".join(quote_ident(c) + (" DESC" if c in self.descending else "") for c in self.columns)

    def index_name(self) -> str:
        base = f"{self.relation.name}_{'_'.join(self.columns)}_idx"
        return base if len(base) <= 63 else f"{base[:54]}_{hashlib.sha1(base.encode()).hexdigest()[:8]}"

    def create_statement(self) -> str:
        return f"CREATE INDEX CONCURRENTLY {quote_ident(self.index_name())} ON {self.relation.qualified} ({self.column_sql()});"

    def hypothetical_statement(self) -> str:
        return f"CREATE INDEX ON {self.relation.qualified} ({self.column_sql()})"


@dataclass(frozen=True)
class IndexInfo:
    oid: int
    schema: str
    name: str
    table: str  # schema.table
    table_oid: int
    columns: tuple[str | None, ...]  # key then INCLUDE columns; None for an expression
    key_count: int
    unique: bool
    primary: bool
    valid: bool
    constraint: bool
    am: str
    predicate: str | None
    expressions: str | None
    definition: str
    size_bytes: int
    idx_scan: int

    @property
    def keys(self) -> tuple[str | None, ...]:
        return self.columns[: self.key_count]

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class IndexIssue:
    kind: str  # DUPLICATE, UNUSED, INVALID
    index: IndexInfo
    detail: str


# -- AST -> column uses --------------------------------------------------------------------------


@dataclass
class _Scope:
    items: dict[str, Relation] = field(default_factory=dict)  # alias or name -> relation
    relations: list[Relation] = field(default_factory=list)


def _from_items(node: object, resolve: Mapping[tuple[str | None, str], Relation], ctes: frozenset[str], scope: _Scope) -> None:
    if isinstance(node, (tuple, list)):
        for item in node:
            _from_items(item, resolve, ctes, scope)
    elif isinstance(node, ast.RangeVar):
        if node.relname is None or (node.schemaname is None and node.relname in ctes):
            return  # a CTE (a nameless RangeVar cannot occur, and would not resolve)
        rel = resolve.get((node.schemaname, node.relname))
        if rel is None:
            return
        alias = node.alias.aliasname if node.alias is not None else None
        scope.items[alias if alias is not None else node.relname] = rel
        scope.relations.append(rel)
    elif isinstance(node, ast.JoinExpr):
        _from_items(node.larg, resolve, ctes, scope)
        _from_items(node.rarg, resolve, ctes, scope)


def _join_quals(node: object) -> list[ast.Node]:
    out: list[ast.Node] = []
    if isinstance(node, (tuple, list)):
        for item in node:
            out += _join_quals(item)
    elif isinstance(node, ast.JoinExpr):
        out += _join_quals(node.larg) + _join_quals(node.rarg)
        if node.quals is not None:
            out.append(node.quals)
    return out


def _conjuncts(node: ast.Node | None) -> list[ast.Node]:
    if node is None:
        return []
    if isinstance(node, ast.BoolExpr) and getattr(node.boolop, "name", "") == "AND_EXPR":
        return [part for arg in node.args or () for part in _conjuncts(arg)]
    return [node]


def _is_value(node: object) -> bool:
    """A constant, parameter or expression of those (no column of the same query level)."""
    if isinstance(node, (ast.A_Const, ast.ParamRef, ast.SQLValueFunction)):
        return True
    if isinstance(node, ast.TypeCast):
        return _is_value(node.arg)
    if isinstance(node, ast.FuncCall):
        return all(_is_value(arg) for arg in node.args or ())
    if isinstance(node, ast.A_Expr):
        sides = [s for s in (node.lexpr, node.rexpr) if s is not None]
        return all(_is_value(s) if not isinstance(s, tuple) else all(_is_value(x) for x in s) for s in sides)
    if isinstance(node, ast.SubLink):
        return getattr(node.subLinkType, "name", "") == "EXPR_SUBLINK"
    if isinstance(node, (tuple, list)):
        return all(_is_value(x) for x in node)
    return False


def _column(node: object, scope: _Scope, columns_of: Mapping[int, frozenset[str]]) -> tuple[Relation, str] | None:
    if not isinstance(node, ast.ColumnRef):
        return None
    fields = node.fields or ()
    parts = [f.sval for f in fields if isinstance(f, ast.String) and f.sval is not None]
    if len(parts) != len(fields) or not parts:
        return None  # `t.*`
    column = parts[-1]
    if len(parts) >= 2:
        rel = scope.items.get(parts[-2])
        if rel is None or (len(parts) == 3 and rel.schema != parts[0]):
            return None
        return (rel, column) if column in columns_of.get(rel.oid, frozenset()) else None
    owners = [r for r in dict.fromkeys(scope.relations) if column in columns_of.get(r.oid, frozenset())]
    return (owners[0], column) if len(owners) == 1 else None


def column_uses(
    statement: ast.SelectStmt,
    resolve: Mapping[tuple[str | None, str], Relation],
    columns_of: Mapping[int, frozenset[str]],
    ctes: frozenset[str] = frozenset(),
) -> list[ColumnUse]:
    """Indexable column uses of every SELECT level of `statement` (each level has its own FROM)."""
    uses: list[ColumnUse] = []
    for select in walk(statement):
        if not isinstance(select, ast.SelectStmt) or select.fromClause is None:
            continue
        scope = _Scope()
        _from_items(select.fromClause, resolve, ctes, scope)
        if not scope.relations:
            continue
        for pred in _conjuncts(select.whereClause) + [c for q in _join_quals(select.fromClause) for c in _conjuncts(q)]:
            uses += _predicate_uses(pred, scope, columns_of)
        uses += _order_uses(select, scope, columns_of)
    return list(dict.fromkeys(uses))


def _predicate_uses(pred: ast.Node, scope: _Scope, columns_of: Mapping[int, frozenset[str]]) -> list[ColumnUse]:
    if isinstance(pred, ast.NullTest):
        col = _column(pred.arg, scope, columns_of)
        is_null = getattr(pred.nulltesttype, "name", "") == "IS_NULL"
        return [ColumnUse(col[0], col[1], EQ)] if col and is_null else []
    if not isinstance(pred, ast.A_Expr):
        return []
    kind = getattr(pred.kind, "name", "")
    op = pred.name[-1].sval if pred.name and isinstance(pred.name[-1], ast.String) else ""
    left, right = _column(pred.lexpr, scope, columns_of), _column(pred.rexpr, scope, columns_of)
    if kind == "AEXPR_OP" and op == "=":
        if left and right:  # a join: each side is an equality lookup for the other
            return [ColumnUse(left[0], left[1], EQ), ColumnUse(right[0], right[1], EQ)]
        col = left if left and _is_value(pred.rexpr) else right if right and _is_value(pred.lexpr) else None
        return [ColumnUse(col[0], col[1], EQ)] if col else []
    if kind == "AEXPR_OP" and op in _RANGE_OPS:
        col = left if left and _is_value(pred.rexpr) else right if right and _is_value(pred.lexpr) else None
        return [ColumnUse(col[0], col[1], RANGE)] if col else []
    if kind in ("AEXPR_IN", "AEXPR_OP_ANY") and op == "=" and left and _is_value(pred.rexpr):
        return [ColumnUse(left[0], left[1], EQ)]
    if kind in ("AEXPR_BETWEEN", "AEXPR_BETWEEN_SYM") and left and _is_value(pred.rexpr):
        return [ColumnUse(left[0], left[1], RANGE)]
    return []


def _order_uses(select: ast.SelectStmt, scope: _Scope, columns_of: Mapping[int, frozenset[str]]) -> list[ColumnUse]:
    cols = []
    for sort in select.sortClause or ():
        col = _column(sort.node, scope, columns_of)
        if col is None:
            return []  # an expression or output-column position: one index cannot serve this ORDER BY
        cols.append(ColumnUse(col[0], col[1], ORDER, getattr(sort.sortby_dir, "name", "") == "SORTBY_DESC"))
    if len({c.relation for c in cols}) > 1:
        return []
    return cols


# -- candidates ----------------------------------------------------------------------------------


def _describe(column: str, stats: ColumnStats | None, reltuples: float) -> str:
    if stats is None:
        return f"{column} (no statistics)"
    distinct = stats.distinct(reltuples)
    text = f"{column} (~{distinct:.0f} distinct"
    if stats.null_frac > 0:
        text += f", {100 * stats.null_frac:.0f}% null"
    if stats.correlation is not None:
        text += f", correlation {stats.correlation:.2f}"
    return text + ")"


def build_candidates(
    uses: Iterable[ColumnUse], stats: Mapping[tuple[int, str], ColumnStats], reltuples: Mapping[int, float]
) -> list[Candidate]:
    """Candidates per relation: the full composite, and narrower variants worth comparing."""
    by_rel: dict[Relation, list[ColumnUse]] = {}
    for use in uses:
        by_rel.setdefault(use.relation, []).append(use)
    out: list[Candidate] = []
    for rel, rel_uses in by_rel.items():
        rows = reltuples.get(rel.oid, 0.0)

        def sel(column: str, rel: Relation = rel, rows: float = rows) -> float:
            st = stats.get((rel.oid, column))
            return st.eq_selectivity(rows) if st else DEFAULT_EQ_SELECTIVITY

        def distinct(column: str, rel: Relation = rel, rows: float = rows) -> float:
            st = stats.get((rel.oid, column))
            return st.distinct(rows) if st else 0.0

        eq = sorted(dict.fromkeys(u.column for u in rel_uses if u.kind == EQ), key=lambda c: (sel(c), c))
        ranges = sorted(
            dict.fromkeys(u.column for u in rel_uses if u.kind == RANGE and u.column not in eq), key=lambda c: (-distinct(c), c)
        )
        order = [u for u in rel_uses if u.kind == ORDER]
        rest: list[str] = []
        if ranges:
            rest.append(ranges[0])
            if order and order[0].column == ranges[0]:
                rest += [u.column for u in order[1:] if u.column not in eq and u.column not in rest]
        else:
            rest += [u.column for u in order if u.column not in eq and u.column not in rest]
        mixed = len({u.descending for u in order}) > 1
        desc = tuple(u.column for u in order if u.descending) if mixed else ()
        variants: list[tuple[list[str], list[str]]] = [(eq, rest)]
        if eq and rest:
            variants.append((eq, []))
        if len(eq) >= 2:
            variants.append((eq[:1], []))
        if not eq and len(rest) > 1:
            variants.append(([], rest[:1]))
        seen: set[tuple[str, ...]] = set()
        for e, r in variants:
            e, r = e[:MAX_COLUMNS], r[: max(0, MAX_COLUMNS - len(e))]
            cols = tuple(e + r)
            if not cols or cols in seen:
                continue
            seen.add(cols)
            selectivity = math.prod(sel(c) for c in e) if e else 1.0
            parts = []
            if e:
                parts.append("equality on " + ", ".join(_describe(c, stats.get((rel.oid, c)), rows) for c in e))
            range_cols = [c for c in r if c in ranges]
            if range_cols:
                parts.append("range on " + ", ".join(_describe(c, stats.get((rel.oid, c)), rows) for c in range_cols))
            order_cols = [c for c in r if c not in range_cols]
            if order_cols:
                parts.append("ORDER BY " + ", ".join(order_cols))
            reason = f"{'; '.join(parts)}; keeps about {100 * selectivity:.2g}% of {rows:.0f} rows" if e else "; ".join(parts)
            out.append(Candidate(rel, tuple(e), tuple(r), selectivity, reason, tuple(c for c in desc if c in cols)))
    return out


def covered_by(candidate: Candidate, indexes: Iterable[IndexInfo]) -> IndexInfo | None:
    """The existing index whose leading columns already serve `candidate`, if any."""
    eq, rest = set(candidate.eq), list(candidate.rest)
    for index in indexes:
        if index.table_oid != candidate.relation.oid or not index.valid or index.predicate or index.am != "btree":
            continue
        keys = list(index.keys)
        if len(keys) < len(candidate.columns):
            continue
        if set(keys[: len(eq)]) == eq and keys[len(eq) : len(eq) + len(rest)] == rest:
            return index
    return None


def heuristic_keep(candidate: Candidate, reltuples: float) -> bool:
    """Without HypoPG: worth suggesting on statistics alone?"""
    if reltuples < HEURISTIC_MIN_ROWS:
        return False
    return not candidate.eq or candidate.selectivity <= HEURISTIC_MAX_SELECTIVITY


def estimate_index_bytes(candidate: Candidate, stats: Mapping[tuple[int, str], ColumnStats], reltuples: float) -> int:
    """B-tree size estimate: (tuple header + line pointer + aligned key data) per row at 90% leaf fill."""
    width = sum(
        stats[(candidate.relation.oid, c)].avg_width if (candidate.relation.oid, c) in stats else 8 for c in candidate.columns
    )
    per_row = 8 + 4 + int(math.ceil((width + 1) / 8.0) * 8)
    usable = 8192 - 24 - 16
    rows_per_page = max(1, int(usable * 0.9 // per_row))
    leaf_pages = math.ceil(max(reltuples, 0.0) / rows_per_page)
    return int((leaf_pages + max(1, leaf_pages // 256) + 1) * 8192)


# -- hygiene -------------------------------------------------------------------------------------


def index_issues(indexes: Sequence[IndexInfo], stats_reset: str | None = None) -> list[IndexIssue]:
    """Invalid, duplicate (covered by another index) and unused indexes."""
    issues: list[IndexIssue] = []
    for index in indexes:
        if not index.valid:
            issues.append(
                IndexIssue(
                    "INVALID",
                    index,
                    (
                        f"invalid (a failed CREATE INDEX CONCURRENTLY?): it costs writes and serves no reads; "
                        f"DROP INDEX CONCURRENTLY {quote_ident(index.schema)}.{quote_ident(index.name)}; then re-create it"
                    ),
                )
            )
    for index in indexes:
        if (other := redundant_with(index, indexes)) is not None:
            issues.append(
                IndexIssue(
                    "DUPLICATE",
                    index,
                    (
                        f"its columns are a leading part of {other.display} ({other.definition}), which serves the same "
                        f"lookups; consider DROP INDEX CONCURRENTLY {quote_ident(index.schema)}.{quote_ident(index.name)}"
                    ),
                )
            )
    since = f"since statistics were reset at {stats_reset}" if stats_reset else "since statistics were last reset"
    for index in indexes:
        if index.valid and index.idx_scan == 0 and not (index.unique or index.primary or index.constraint):
            issues.append(
                IndexIssue(
                    "UNUSED",
                    index,
                    (
                        f"never used by a query {since} ({index.size_bytes} bytes maintained on every write); "
                        f"check replicas before dropping it"
                    ),
                )
            )
    return issues


def redundant_with(index: IndexInfo, indexes: Iterable[IndexInfo]) -> IndexInfo | None:
    if not index.valid or index.unique or index.primary or index.constraint or index.expressions:
        return None
    if len(index.columns) > index.key_count:
        return None  # INCLUDE columns make it more than a prefix
    for other in indexes:
        if other.oid == index.oid or other.table_oid != index.table_oid or not other.valid or other.am != index.am:
            continue
        if other.predicate != index.predicate or other.expressions:
            continue
        if tuple(other.keys[: len(index.keys)]) != index.keys:
            continue
        identical = tuple(other.keys) == index.keys
        if identical and not (other.unique or other.primary) and other.oid > index.oid:
            continue  # two identical plain indexes: report only the newer one
        return other
    return None
