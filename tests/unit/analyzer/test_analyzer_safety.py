"""The static layer of the SQL safety policy and the catalog verdict, without a database."""

from __future__ import annotations

import pytest

from rentscout.analyzer_service import explain, metrics
from rentscout.analyzer_service.safety import (
    DENIED_FUNCTIONS,
    FunctionInfo,
    QualifiedName,
    Rejected,
    denied_category,
    function_verdict,
    parse_select,
)
from rentscout.analyzer_service.sqltext import check_table_name, quote_ident, tagged
from rentscout.runtime.errors import InvalidArgument

ACCEPTED = [
    "SELECT 1",
    "select * from properties where city = $1 and price between $2 and $3 order by views desc limit 10",
    "WITH top AS (SELECT id FROM properties ORDER BY views DESC LIMIT 5) SELECT * FROM top",
    "SELECT city, count(*) FROM properties GROUP BY city HAVING count(*) > 10 ORDER BY 2 DESC",
    "SELECT * FROM properties p JOIN LATERAL (SELECT 1) x ON true WHERE p.id IN (SELECT id FROM properties LIMIT 3)",
    "VALUES (1), (2)",
    "TABLE properties",
    "SELECT now(), random(), clock_timestamp(), lower('X') -- trailing comment",
    "select 1;",
]

REJECTED = [
    ("", "empty"),
    ("  -- only a comment", "empty"),
    ("SELECT 1; SELECT 2", "multiple_statements"),
    ("SELECT 1; DELETE FROM properties", "multiple_statements"),
    ("DELETE FROM properties", "write"),
    ("INSERT INTO properties (id) VALUES (1)", "write"),
    ("UPDATE properties SET views = 0", "write"),
    ("MERGE INTO properties p USING properties q ON p.id = q.id WHEN MATCHED THEN DELETE", "write"),
    ("WITH d AS (DELETE FROM properties RETURNING id) SELECT * FROM d", "write"),
    ("WITH u AS (UPDATE properties SET views = 1 RETURNING id) SELECT count(*) FROM u", "write"),
    ("SELECT * FROM (WITH i AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT * FROM i) s", "write"),
    ("SELECT * INTO newtable FROM properties", "select_into"),
    ("CREATE TABLE x AS SELECT 1", "select_into"),
    ("SELECT * FROM properties FOR UPDATE", "row_lock"),
    ("SELECT * FROM properties FOR NO KEY UPDATE", "row_lock"),
    ("SELECT * FROM properties FOR SHARE", "row_lock"),
    ("SELECT * FROM properties FOR KEY SHARE SKIP LOCKED", "row_lock"),
    ("SELECT * FROM (SELECT * FROM properties FOR UPDATE) s", "row_lock"),
    ("LOCK TABLE properties", "lock"),
    ("EXPLAIN ANALYZE SELECT 1", "explain"),
    ("COPY properties TO STDOUT", "not_select"),
    ("SET work_mem = '1GB'", "not_select"),
    ("DO $$ BEGIN PERFORM 1; END $$", "not_select"),
    ("SELEC 1", "syntax"),
    ("SELECT pg_sleep(1)", "function:sleep"),
    ("SELECT PG_SLEEP(1)", "function:sleep"),
    ("SELECT pg_catalog.pg_sleep_for('1 minute')", "function:sleep"),
    ('SELECT "pg_sleep"(1)', "function:sleep"),
    ("SELECT id FROM properties ORDER BY pg_sleep(0.1)", "function:sleep"),
    ("SELECT * FROM pg_sleep(1)", "function:sleep"),
    ("SELECT pg_advisory_lock(1)", "function:advisory_lock"),
    ("SELECT pg_try_advisory_xact_lock(1)", "function:advisory_lock"),
    ("SELECT pg_notify('c', 'x')", "function:notify"),
    ("SELECT pg_cancel_backend(1)", "function:backend_signal"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "function:backend_signal"),
    ("SELECT * FROM dblink('host=x', 'delete from t') AS t(x int)", "function:dblink"),
    ("SELECT dblink_exec('delete from t')", "function:dblink"),
    ("SELECT pg_read_file('/etc/passwd')", "function:file_access"),
    ("SELECT pg_read_binary_file('/etc/passwd')", "function:file_access"),
    ("SELECT pg_ls_dir('.')", "function:file_access"),
    ("SELECT pg_stat_file('postgresql.conf')", "function:file_access"),
    ("SELECT lo_import('/etc/passwd')", "function:large_object"),
    ("SELECT lo_export(1, '/tmp/x')", "function:large_object"),
    ("SELECT set_config('work_mem', '1GB', false)", "function:configuration"),
    ("SELECT pg_reload_conf()", "function:configuration"),
    ("SELECT pg_rotate_logfile()", "function:configuration"),
    ("SELECT nextval('properties_id_seq')", "function:sequence"),
    ("SELECT setval('properties_id_seq', 1)", "function:sequence"),
    ("SELECT txid_current()", "function:transaction_id"),
    ("SELECT pg_current_xact_id()", "function:transaction_id"),
    ("SELECT query_to_xml('delete from properties returning 1', true, true, '')", "function:dynamic_sql"),
    ("SELECT cursor_to_xml('c', 1, true, true, '')", "function:dynamic_sql"),
    ("SELECT table_to_xml('properties', true, true, '')", "function:dynamic_sql"),
    ("SELECT ts_stat('select 1')", "function:dynamic_sql"),
    ("SELECT hypopg_create_index('create index on properties (city)')", "function:hypothetical_index"),
    ("SELECT pg_stat_statements_reset()", "function:statistics_reset"),
    ("SELECT pg_stat_reset()", "function:statistics_reset"),
    ("SELECT pg_switch_wal()", "function:server_admin"),
    ("SELECT pg_create_logical_replication_slot('s', 'test_decoding')", "function:replication"),
    ("SELECT brin_summarize_new_values('i'::regclass)", "function:index_maintenance"),
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_plain_selects_are_accepted(sql: str) -> None:
    parsed = parse_select(sql)
    assert len(parsed.fingerprint) == 16


@pytest.mark.parametrize(("sql", "reason"), REJECTED)
def test_hostile_statements_are_rejected_with_their_reason(sql: str, reason: str) -> None:
    with pytest.raises(Rejected) as err:
        parse_select(sql)
    assert err.value.reason == reason, err.value.message
    assert err.value.message


def test_every_deny_list_category_is_exercised() -> None:
    exercised = {reason.split(":", 1)[1] for _, reason in REJECTED if reason.startswith("function:")}
    assert exercised == set(DENIED_FUNCTIONS)


def test_syntax_errors_carry_a_one_based_position() -> None:
    with pytest.raises(Rejected) as err:
        parse_select("SELECT * FORM properties")
    assert "syntax error" in err.value.message and "(position 10)" in err.value.message


def test_oversized_and_nul_statements_are_rejected() -> None:
    with pytest.raises(Rejected, match="longer than"):
        parse_select("SELECT " + "1," * 60_000 + "1")
    with pytest.raises(Rejected, match="NUL"):
        parse_select("SELECT 1\x00")


def test_parse_collects_functions_operators_relations_params_and_offsets() -> None:
    parsed = parse_select(
        "WITH recent AS (SELECT * FROM public.properties WHERE updated_at > now() - interval '1 day') "
        "SELECT r.city, lower(r.title) FROM recent r JOIN properties p ON p.id = r.id "
        "WHERE r.price BETWEEN $1 AND $3 AND r.city OPERATOR(myschema.===) 'x' ORDER BY 1 OFFSET $2"
    )
    assert QualifiedName(None, "now") in parsed.functions and QualifiedName(None, "lower") in parsed.functions
    assert QualifiedName("myschema", "===") in parsed.operators
    assert QualifiedName(None, "<=") in parsed.operators  # from BETWEEN
    assert {(r.schema, r.name) for r in parsed.relations} == {("public", "properties"), (None, "properties")}
    assert parsed.cte_names == {"recent"}
    assert parse_select("SELECT 1::int, 'x'::text, 'a'::app.mood, 2::app.mood[]").casts == {
        QualifiedName(None, "text"),
        QualifiedName("app", "mood"),
    }
    assert parsed.param_count == 3
    assert [(o.value, o.param) for o in parsed.offsets] == [(None, 2)]
    assert [(o.value, o.param) for o in parse_select("SELECT 1 OFFSET 5000").offsets] == [(5000, None)]


def test_too_many_parameters_are_rejected() -> None:
    with pytest.raises(Rejected, match=r"\$101"):
        parse_select("SELECT $101")


def test_denied_category_matches_exact_names_and_prefixes() -> None:
    assert denied_category("pg_sleep_until") == "sleep"
    assert denied_category("LO_UNLINK") == "large_object"
    assert denied_category("lower") is None
    assert denied_category("log") is None
    assert denied_category("pg_stat_get_xact_numscans") is None


@pytest.mark.parametrize(
    ("fn", "allowed"),
    [
        (FunctionInfo("pg_catalog", "lower", "i", "internal"), True),
        (FunctionInfo("pg_catalog", "random", "v", "internal"), True),
        (FunctionInfo("pg_catalog", "pg_stat_get_xact_numscans", "v", "internal"), True),
        (FunctionInfo("pg_catalog", "pg_logical_emit_message", "v", "internal"), False),
        (FunctionInfo("pg_catalog", "gin_clean_pending_list", "v", "internal"), False),
        (FunctionInfo("pg_catalog", "some_new_volatile_builtin", "v", "internal"), False),
        (FunctionInfo("public", "similarity", "i", "c"), True),  # an extension's C function
        (FunctionInfo("public", "dblink", "v", "c"), False),
        (FunctionInfo("public", "my_writer", "v", "plpgsql"), False),
        (FunctionInfo("public", "claims_stable", "s", "plpgsql"), False),
        (FunctionInfo("public", "sql_helper", "i", "sql"), False),
        (FunctionInfo("public", "pg_sleep", "i", "sql"), False),  # a shadowing name is still denied
    ],
)
def test_function_verdict(fn: FunctionInfo, allowed: bool) -> None:
    assert (function_verdict(fn) is None) is allowed


def test_trusted_schemas_allow_non_volatile_functions_only() -> None:
    trusted = frozenset({"app"})
    assert function_verdict(FunctionInfo("app", "helper", "s", "plpgsql"), trusted) is None
    assert "volatile" in (function_verdict(FunctionInfo("app", "writer", "v", "plpgsql"), trusted) or "")


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("properties", True),
        ("public.properties", True),
        ('"Mixed Case"', True),
        ('"sch"."t""q"', True),
        (" properties ", True),
        ("", False),
        ("properties; DROP TABLE properties", False),
        ("a.b.c", False),
        ("pg_sleep(1)", False),
        ("properties--", False),
        ("'properties'", False),
        ('"unterminated', False),
        ("x" * 64, False),
    ],
)
def test_table_name_check(name: str, ok: bool) -> None:
    assert (check_table_name(name) is None) is ok


def test_quoting_and_tagging() -> None:
    assert quote_ident('we"ird') == '"we""ird"'
    assert tagged("SELECT 1") == "SELECT /* rentscout-analyzer */ 1"
    assert tagged("\nSELECT\n1").startswith("SELECT /* rentscout-analyzer */")


def test_a_statement_vetted_again_is_parsed_once_and_a_refusal_every_time() -> None:
    sql = "SELECT id FROM properties WHERE city = $1 /* vet-cache */"
    assert explain.vet(sql) is explain.vet(sql)  # the same parse, not a new one
    long_sql = sql + " " * explain.VET_CACHE_MAX_CHARS
    assert explain.vet(long_sql) is not explain.vet(long_sql)  # too long to keep
    refused = "SELECT pg_sleep(1) /* vet-cache */"
    counter = metrics.REJECTED.labels("function:sleep")
    before = counter._value.get()
    for _ in range(2):
        with pytest.raises(InvalidArgument):
            explain.vet(refused)
    assert counter._value.get() == before + 2
