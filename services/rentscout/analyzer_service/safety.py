"""Which SQL the analyzer agrees to EXPLAIN (EXPLAIN ANALYZE executes the statement).

Policy, in layers (each one alone would leave gaps; together they leave few):

1. Parse (pglast, PostgreSQL's own parser): exactly one statement, a plain SELECT. Refused anywhere in
   the tree: data-modifying CTEs (INSERT/UPDATE/DELETE/MERGE), SELECT INTO, row locks
   (FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE), LOCK, and calls to a deny-list of functions by name,
   whatever their schema: sleeps, advisory locks, notify, backend signals, dblink, server file
   access, large objects, set_config, sequences, transaction ids, server administration,
   replication, statistics resets, index maintenance, HypoPG, and functions that run SQL given
   as text (query_to_xml and friends, ts_stat, ts_rewrite).
2. Catalog (`catalog_policy`, inside the transaction, before EXPLAIN): every function the query
   names, every operator it names outside pg_catalog, the support functions of every aggregate
   among them, the functions behind explicit casts to types outside pg_catalog (cast functions and
   domain CHECK constraints), and every function a referenced view uses (pg_depend, recursively)
   is resolved; `function_verdict` below decides. Built-ins are allowed
   unless volatile (a short allow-list of harmless volatile built-ins aside); functions outside
   pg_catalog are allowed only when non-volatile and written in C (only a superuser can create
   those, so they come from extensions), or when their schema is explicitly trusted
   (RENTSCOUT_ANALYZER_TRUSTED_FUNCTION_SCHEMAS) and they are non-volatile. So a plpgsql or SQL
   function in `public` is refused even if it claims to be STABLE.
3. Execution: `BEGIN READ ONLY`, `SET LOCAL statement_timeout/lock_timeout`, parameters bound, an
   optional low-privilege role (`SET LOCAL ROLE`), and ROLLBACK always. Anything that slips through
   and tries to write fails with `read-only transaction` and is rolled back.

Known residual risks, covered only by layer 3: implicit casts to user-defined types and
row-level-security policies that call functions are not inspected.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pglast import ast, parse_sql, parser

from rentscout.runtime.logs import fingerprint as statement_fingerprint

MAX_SQL_CHARS = 100_000
MAX_PARAMS = 100
# Nesting of the parse tree (a subquery is about four levels, `a + b + c` one per operator). Deeper
# trees are refused before anything walks them recursively (here, PostgreSQL, protobuf).
MAX_DEPTH = 100

# category -> (exact names, name prefixes); names as the parser normalises them (lower case).
DENIED_FUNCTIONS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "sleep": (frozenset(), ("pg_sleep",)),
    "advisory_lock": (frozenset(), ("pg_advisory", "pg_try_advisory")),
    "notify": (frozenset({"pg_notify"}), ()),
    "backend_signal": (frozenset({"pg_cancel_backend", "pg_terminate_backend", "pg_log_backend_memory_contexts"}), ()),
    "dblink": (frozenset(), ("dblink",)),
    "file_access": (
        frozenset({"pg_stat_file", "pg_logdir_ls", "pg_current_logfile"}),
        ("pg_read_file", "pg_read_binary_file", "pg_ls_", "pg_file_"),
    ),
    "large_object": (frozenset({"loread", "lowrite"}), ("lo_",)),
    "configuration": (frozenset({"set_config", "pg_reload_conf", "pg_rotate_logfile", "pg_rotate_logfile_old", "setseed"}), ()),
    "sequence": (frozenset({"nextval", "setval"}), ()),
    "transaction_id": (
        frozenset(
            {
                "txid_current",
                "txid_current_if_assigned",
                "pg_current_xact_id",
                "pg_current_xact_id_if_assigned",
                "pg_export_snapshot",
            }
        ),
        (),
    ),
    "server_admin": (
        frozenset(
            {
                "pg_switch_wal",
                "pg_create_restore_point",
                "pg_promote",
                "pg_import_system_collations",
                "pg_stop_making_pinned_objects",
                "pg_nextoid",
                "pg_extension_config_dump",
                "pg_logical_emit_message",
            }
        ),
        ("pg_backup_", "pg_start_backup", "pg_stop_backup", "pg_wal_replay_", "binary_upgrade_"),
    ),
    "replication": (
        frozenset({"pg_drop_replication_slot", "pg_replication_slot_advance"}),
        ("pg_create_", "pg_copy_", "pg_logical_slot_", "pg_replication_origin_"),
    ),
    "statistics_reset": (frozenset({"pg_stat_statements_reset", "pg_qualstats_reset"}), ("pg_stat_reset",)),
    "index_maintenance": (frozenset({"gin_clean_pending_list", "pg_prewarm"}), ("brin_summarize", "brin_desummarize")),
    "hypothetical_index": (frozenset(), ("hypopg",)),
    "dynamic_sql": (
        frozenset({"ts_stat", "ts_rewrite", "xpath_table"}),
        ("query_to_xml", "cursor_to_xml", "table_to_xml", "schema_to_xml", "database_to_xml"),
    ),
}

# Volatile built-ins that only read (everything else volatile in pg_catalog is refused).
HARMLESS_VOLATILE_BUILTINS = frozenset(
    {
        "random",
        "random_normal",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "currval",
        "lastval",
        "pg_relation_size",
        "pg_table_size",
        "pg_indexes_size",
        "pg_total_relation_size",
        "pg_database_size",
        "pg_tablespace_size",
        "pg_blocking_pids",
        "pg_safe_snapshot_blocking_pids",
        "pg_lock_status",
        "pg_is_in_recovery",
        "pg_current_wal_lsn",
        "pg_current_wal_insert_lsn",
        "pg_current_wal_flush_lsn",
        "pg_last_wal_receive_lsn",
        "pg_last_wal_replay_lsn",
        "pg_last_xact_replay_timestamp",
        "pg_jit_available",
        "pg_partition_tree",
        "pg_partition_ancestors",
        "pg_notification_queue_usage",
        "pg_xact_commit_timestamp",
        "pg_xact_commit_timestamp_origin",
        "pg_xact_status",
        "txid_status",
        "pg_last_committed_xact",
        "pg_sequence_last_value",
        "pg_stat_have_stats",
        "pg_collation_actual_version",
        "pg_database_collation_actual_version",
        "pg_is_wal_replay_paused",
        "pg_get_wal_replay_pause_state",
        "current_query",
        "currtid2",
    }
)
HARMLESS_VOLATILE_PREFIXES = ("pg_stat_get_xact_",)
BUILTIN_SCHEMAS = frozenset({"pg_catalog", "information_schema"})
TRUSTED_LANGUAGES = frozenset({"c", "internal"})  # only superusers can create functions in these

_WRITE_STATEMENTS = {
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
}
_LOCK_STRENGTH = {
    "LCS_FORKEYSHARE": "FOR KEY SHARE",
    "LCS_FORSHARE": "FOR SHARE",
    "LCS_FORNOKEYUPDATE": "FOR NO KEY UPDATE",
    "LCS_FORUPDATE": "FOR UPDATE",
}
_OPERATOR_KINDS = {
    "AEXPR_OP",
    "AEXPR_OP_ANY",
    "AEXPR_OP_ALL",
    "AEXPR_DISTINCT",
    "AEXPR_NOT_DISTINCT",
    "AEXPR_NULLIF",
    "AEXPR_IN",
    "AEXPR_LIKE",
    "AEXPR_ILIKE",
    "AEXPR_SIMILAR",
}


class Rejected(Exception):
    """The statement is refused; `reason` is a short category (for metrics), `message` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class QualifiedName:
    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class RelationRef:
    schema: str | None
    name: str
    alias: str | None


@dataclass(frozen=True)
class OffsetRef:
    """An OFFSET clause: a constant, a parameter number, or neither (an expression)."""

    value: int | None
    param: int | None


@dataclass
class ParsedQuery:
    sql: str
    statement: ast.SelectStmt
    fingerprint: str
    body: str = ""  # the statement's own text, without surrounding comments or the final semicolon
    body_offset: int = 0  # where `body` starts in `sql`
    functions: frozenset[QualifiedName] = frozenset()
    operators: frozenset[QualifiedName] = frozenset()
    casts: frozenset[QualifiedName] = frozenset()  # target types of explicit casts, outside pg_catalog
    relations: tuple[RelationRef, ...] = ()
    cte_names: frozenset[str] = frozenset()
    param_count: int = 0
    offsets: tuple[OffsetRef, ...] = field(default_factory=tuple)


def walk(node: object) -> Iterator[ast.Node]:
    """Every AST node under `node` (inclusive), depth first."""
    for current, _ in walk_depth(node):
        yield current


def walk_depth(node: object) -> Iterator[tuple[ast.Node, int]]:
    """(node, depth) for every AST node under `node`, depth first, without recursion."""
    stack: list[tuple[object, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, ast.Node):
            yield current, depth
            for member in current:
                value = getattr(current, member)
                if isinstance(value, (ast.Node, tuple, list)):
                    stack.append((value, depth + 1))
        elif isinstance(current, (tuple, list)):
            stack.extend((item, depth) for item in reversed(current))


def nesting_depth(node: object) -> int:
    """How deep the parse tree under `node` nests (list containers do not count)."""
    return max((depth for _, depth in walk_depth(node)), default=0)


def check_depth(node: object) -> None:
    if nesting_depth(node) > MAX_DEPTH:
        raise Rejected("too_deep", f"statement nests deeper than {MAX_DEPTH} levels")


def _names(items: tuple[ast.Node, ...] | None) -> list[str]:
    names: list[str] = []
    for item in items or ():
        if isinstance(item, ast.String):
            assert item.sval is not None  # the parser always names the parts of a qualified name
            names.append(item.sval)
    return names


def denied_category(name: str) -> str | None:
    """The deny-list category of a function name, or None when the name is not denied."""
    lowered = name.lower()
    for category, (exact, prefixes) in DENIED_FUNCTIONS.items():
        if lowered in exact or lowered.startswith(prefixes):
            return category
    return None


def parse_error_message(exc: parser.ParseError) -> str:
    message, position = [*exc.args, None, None][:2]
    where = f" (position {int(position) + 1})" if isinstance(position, int) else ""
    return f"{message}{where}"


def parse_select(sql: str) -> ParsedQuery:
    """Parse `sql` and apply the static rules; raises Rejected with the first problem found."""
    if not sql.strip():
        raise Rejected("empty", "is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise Rejected("too_long", f"is longer than {MAX_SQL_CHARS} characters")
    if "\x00" in sql:
        raise Rejected("syntax", "contains a NUL character")
    try:
        # libpg_query's JSON output checks its stack depth; pglast's tree building does not (a chain of
        # ~50k operators overflows the C stack), so the cheap C pass guards the other.
        parser.parse_sql_json(sql)
        statements = parse_sql(sql)
    except parser.ParseError as exc:
        if "stack depth" in str(exc) or "memory exhausted" in str(exc):  # the parser's own nesting limits
            raise Rejected("too_deep", f"statement nests deeper than {MAX_DEPTH} levels") from None
        raise Rejected("syntax", parse_error_message(exc)) from None
    except RecursionError:
        raise Rejected("too_deep", f"statement nests deeper than {MAX_DEPTH} levels") from None
    if not statements:
        raise Rejected("empty", "contains no statement (only comments or semicolons)")
    if len(statements) > 1:
        raise Rejected("multiple_statements", f"must be exactly one statement; found {len(statements)}")
    raw = statements[0]
    stmt = raw.stmt
    check_depth(stmt)
    if not isinstance(stmt, ast.SelectStmt):
        raise Rejected(*_not_select(stmt))
    start = raw.stmt_location or 0
    body = sql[start : start + raw.stmt_len] if raw.stmt_len else sql[start:]
    parsed = ParsedQuery(
        sql=sql,
        statement=stmt,
        fingerprint=statement_fingerprint(sql),
        body=body.strip(),
        body_offset=start + len(body) - len(body.lstrip()),
    )
    _inspect(parsed)
    return parsed


def _not_select(stmt: ast.Node | None) -> tuple[str, str]:
    kind = type(stmt).__name__
    if kind in _WRITE_STATEMENTS:
        return "write", f"must be a SELECT; {_WRITE_STATEMENTS[kind]} modifies data"
    if kind == "ExplainStmt":
        return "explain", "must be the bare SELECT; EXPLAIN is added by the analyzer (set analyze/buffers in the request)"
    if kind == "LockStmt":
        return "lock", "must be a SELECT; LOCK takes table locks"
    if kind == "CreateTableAsStmt":
        return "select_into", "must be a plain SELECT; CREATE TABLE AS writes a table"
    label = kind.removesuffix("Stmt") or kind
    return "not_select", f"must be a single plain SELECT; got a {label} statement"


def _inspect(parsed: ParsedQuery) -> None:
    functions: set[QualifiedName] = set()
    operators: set[QualifiedName] = set()
    casts: set[QualifiedName] = set()
    relations: list[RelationRef] = []
    ctes: set[str] = set()
    offsets: list[OffsetRef] = []
    max_param = 0
    for node in walk(parsed.statement):
        kind = type(node).__name__
        if kind in _WRITE_STATEMENTS:
            raise Rejected("write", f"contains a data-modifying {_WRITE_STATEMENTS[kind]} (in a WITH clause)")
        if isinstance(node, ast.LockStmt):
            raise Rejected("lock", "contains LOCK")
        if isinstance(node, ast.SelectStmt):
            if node.intoClause is not None:
                raise Rejected("select_into", "uses SELECT INTO, which creates a table")
            for clause in node.lockingClause or ():
                strength = getattr(clause.strength, "name", str(clause.strength))
                raise Rejected("row_lock", f"uses {_LOCK_STRENGTH.get(strength, 'a locking clause')}, which locks rows")
            if node.limitOffset is not None:
                offsets.append(_offset(node.limitOffset))
        elif isinstance(node, ast.CommonTableExpr):
            assert node.ctename is not None  # WITH always names its queries
            ctes.add(node.ctename)
            if not isinstance(node.ctequery, ast.SelectStmt):
                label = _WRITE_STATEMENTS.get(type(node.ctequery).__name__, type(node.ctequery).__name__)
                raise Rejected("write", f"contains a data-modifying {label} in WITH {node.ctename}")
        elif isinstance(node, ast.FuncCall):
            name = _qualified(_names(node.funcname))
            if (category := denied_category(name.name)) is not None:
                raise Rejected(f"function:{category}", f"calls {name}(), which is not allowed ({category.replace('_', ' ')})")
            functions.add(name)
        elif isinstance(node, ast.A_Expr):
            kind_name = getattr(node.kind, "name", str(node.kind))
            names = _names(node.name)
            if kind_name in _OPERATOR_KINDS and names:
                operators.add(_qualified(names))
            elif kind_name.startswith("AEXPR_BETWEEN") or kind_name.startswith("AEXPR_NOT_BETWEEN"):
                operators.update({QualifiedName(None, "<="), QualifiedName(None, ">=")})
        elif isinstance(node, ast.TypeCast) and node.typeName is not None:
            target = _qualified(_names(node.typeName.names))
            if target.schema != "pg_catalog" and target.name:
                casts.add(target)
        elif isinstance(node, ast.ParamRef):
            assert node.number is not None  # the parser numbers every $n
            max_param = max(max_param, node.number)
        elif isinstance(node, ast.RangeVar):
            alias = node.alias.aliasname if node.alias is not None else None
            assert node.relname is not None  # a table reference always has a name
            relations.append(RelationRef(node.schemaname, node.relname, alias))
    if max_param > MAX_PARAMS:
        raise Rejected("too_many_params", f"uses ${max_param}; at most {MAX_PARAMS} parameters are supported")
    parsed.functions = frozenset(functions)
    parsed.operators = frozenset(operators)
    parsed.casts = frozenset(casts)
    parsed.cte_names = frozenset(ctes)
    parsed.relations = tuple(r for r in relations if r.schema is not None or r.name not in ctes)
    parsed.param_count = max_param
    parsed.offsets = tuple(offsets)


def _qualified(parts: list[str]) -> QualifiedName:
    if len(parts) >= 2:
        return QualifiedName(parts[-2], parts[-1])
    return QualifiedName(None, parts[0] if parts else "")


def _offset(node: ast.Node | None) -> OffsetRef:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
        assert node.val.ival is not None  # an integer constant always has its value
        return OffsetRef(int(node.val.ival), None)
    if isinstance(node, ast.ParamRef):
        return OffsetRef(None, node.number)
    if isinstance(node, ast.TypeCast):
        return _offset(node.arg)
    return OffsetRef(None, None)


@dataclass(frozen=True)
class FunctionInfo:
    """What the catalog says about one function the statement may call."""

    schema: str
    name: str
    volatility: str  # 'i' immutable, 's' stable, 'v' volatile
    language: str
    definer: bool = False  # SECURITY DEFINER: runs with its owner's privileges


def function_verdict(fn: FunctionInfo, trusted_schemas: frozenset[str] = frozenset()) -> str | None:
    """None when `fn` may run inside an analyzed statement; otherwise why not (layer 2 of the policy)."""
    label = f"{fn.schema}.{fn.name}()"
    if (category := denied_category(fn.name)) is not None:
        return f"{label} is not allowed ({category.replace('_', ' ')})"
    volatile = fn.volatility == "v"
    if fn.definer and fn.schema not in BUILTIN_SCHEMAS:
        return f"{label} is SECURITY DEFINER; it would run with its owner's privileges, not the analyzer role's"
    if fn.schema in BUILTIN_SCHEMAS:
        if volatile and fn.name not in HARMLESS_VOLATILE_BUILTINS and not fn.name.startswith(HARMLESS_VOLATILE_PREFIXES):
            return f"{label} is a volatile built-in function that may have side effects"
        return None
    if volatile:
        return f"{label} is a volatile user-defined function; it could write or hold locks"
    if fn.schema in trusted_schemas or fn.language in TRUSTED_LANGUAGES:
        return None
    return (
        f"{label} is a {fn.language} function outside pg_catalog; only built-in and extension (C) "
        f"functions are allowed unless its schema is trusted (RENTSCOUT_ANALYZER_TRUSTED_FUNCTION_SCHEMAS)"
    )
