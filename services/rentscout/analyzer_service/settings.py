"""Settings of the analyzer service (`RENTSCOUT_ANALYZER_*`)."""

from dataclasses import dataclass

from rentscout.runtime.config import float_range, int_range, parse_bool, setting


def _names(raw: str) -> str:
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    for part in parts:
        if len(part) > 63 or not all(c.isalnum() or c in "_$" for c in part):
            raise ValueError(f"expected comma-separated schema names, got {part!r}")
    return ",".join(parts)


def _role(raw: str) -> str:
    value = raw.strip()
    if value and (len(value) > 63 or not all(c.isalnum() or c in "_$" for c in value)):
        raise ValueError(f"expected a role name (letters, digits, _ and $), got {raw!r}")
    return value


@dataclass(frozen=True)
class AnalyzerSettings:
    statement_timeout_ms: int = setting(
        "ANALYZER_STATEMENT_TIMEOUT_MS",
        10_000,
        "Budget of one AnalyzeQuery or SuggestIndexes call: all its statements together (the call's deadline when "
        "shorter), and the statement_timeout of each.",
        int_range(1, 3_600_000),
    )
    max_concurrent_statements: int = setting(
        "ANALYZER_MAX_CONCURRENT_STATEMENTS",
        4,
        "AnalyzeQuery and SuggestIndexes calls one server runs at once; more get RESOURCE_EXHAUSTED.",
        int_range(1, 1000),
    )
    work_mem_kb: int = setting(
        "ANALYZER_WORK_MEM_KB",
        4096,
        "Ceiling on work_mem of analyzed statements, per sort or hash (the session's own value when lower).",
        int_range(64, 2**31 - 1),
    )
    hash_mem_multiplier: float = setting(
        "ANALYZER_HASH_MEM_MULTIPLIER",
        2.0,
        "Ceiling on hash_mem_multiplier of analyzed statements (hash tables may use work_mem times this).",
        float_range(1.0, 1000.0),
    )
    temp_file_limit_kb: int = setting(
        "ANALYZER_TEMP_FILE_LIMIT_KB",
        1024 * 1024,
        "Ceiling on temp_file_limit of analyzed statements (needs GRANT SET ON PARAMETER temp_file_limit for a "
        "non-superuser); -1 leaves the server's own.",
        int_range(-1, 2**31 - 1),
    )
    lock_timeout_ms: int = setting(
        "ANALYZER_LOCK_TIMEOUT_MS",
        1_000,
        "lock_timeout of analyzed statements (they never wait long for locks).",
        int_range(1, 600_000),
    )
    explain_role: str = setting(
        "ANALYZER_EXPLAIN_ROLE",
        "rentscout_explain",
        "NOLOGIN role every caller-written statement runs as (SET LOCAL ROLE): SELECT on the application's tables "
        "only (migrations 0004-0005). Statement RPCs answer FAILED_PRECONDITION when the service cannot switch to it.",
        _role,
    )
    unprivileged_opt_out: bool = setting(
        "ANALYZER_RUN_AS_SERVICE_USER",
        False,
        "Unsafe opt-out: run caller-written statements with the service's own privileges (no SET ROLE). "
        "Logged as a warning at start; only for databases where the role cannot be created.",
        parse_bool,
    )
    trusted_function_schemas: str = setting(
        "ANALYZER_TRUSTED_FUNCTION_SCHEMAS",
        "",
        "Comma-separated schemas whose non-volatile SQL/plpgsql functions analyzed statements may call.",
        _names,
    )
    hypopg_min_cost_reduction: float = setting(
        "ANALYZER_HYPOPG_MIN_COST_REDUCTION",
        0.5,
        "Share of a query's cost a hypothetical index must remove to be suggested (0.5 = half).",
        float_range(0.01, 1.0),
    )
    slow_query_sample: int = setting(
        "ANALYZER_SLOW_QUERY_SAMPLE",
        25,
        "Statements from pg_stat_statements SuggestIndexes(from_slow_queries) examines.",
        int_range(1, 500),
    )
    vacuum_min_dead_rows: int = setting(
        "ANALYZER_VACUUM_MIN_DEAD_ROWS", 1_000, "Dead rows below which no VACUUM is recommended.", int_range(0, 10**12)
    )
    vacuum_dead_ratio: float = setting(
        "ANALYZER_VACUUM_DEAD_RATIO", 0.2, "Dead-row share from which VACUUM is recommended.", float_range(0.0, 1.0)
    )
    rewrite_min_bloat_bytes: int = setting(
        "ANALYZER_REWRITE_MIN_BLOAT_BYTES",
        64 * 1024 * 1024,
        "Bloat below which no rewrite (VACUUM FULL / pg_repack) is recommended.",
        int_range(0, 2**62),
    )
    rewrite_bloat_ratio: float = setting(
        "ANALYZER_REWRITE_BLOAT_RATIO",
        0.3,
        "Bloat share of the table from which a rewrite is recommended.",
        float_range(0.0, 1.0),
    )
    analyze_min_modifications: int = setting(
        "ANALYZER_ANALYZE_MIN_MODIFICATIONS",
        1_000,
        "Rows changed since the last ANALYZE below which none is recommended.",
        int_range(0, 10**12),
    )

    @property
    def trusted_schemas(self) -> frozenset[str]:
        return frozenset(filter(None, self.trusted_function_schemas.split(",")))
