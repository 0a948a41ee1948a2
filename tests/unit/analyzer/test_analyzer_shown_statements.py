"""Which recorded statement texts the analyzer shows, and how (sqltext.shown_statement, redact_constants)."""

from __future__ import annotations

import pytest

from rentscout.analyzer_service.slow_queries import MAX_SCANNED_CHARS, shown
from rentscout.analyzer_service.sqltext import redact_constants, shown_statement

SECRET = "Hunter2-s3cr3t"


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        (f"CREATE ROLE bob LOGIN PASSWORD '{SECRET}'", "CREATE ROLE"),
        (f"ALTER ROLE bob PASSWORD '{SECRET}'", "ALTER ROLE"),
        (f"alter user bob with encrypted password '{SECRET}'", "ALTER USER"),
        (f"CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'u', password '{SECRET}')", "CREATE USER MAPPING"),
        (f"ALTER SYSTEM SET ssl_passphrase_command = 'echo {SECRET}'", "ALTER SYSTEM SET"),
        (f"ALTER SYSTEM SET my.secret = {SECRET.replace('-', '_')}", "ALTER SYSTEM SET"),  # an unquoted value
        (f"/* {SECRET} */ SET my.secret TO '{SECRET}'", "SET"),
        (f"COPY t FROM PROGRAM 'curl -u x:{SECRET} http://h'", "COPY"),
        (f"SELECT '{SECRET}' INTO t", "SELECT INTO"),
        (f"PREPARE p AS SELECT '{SECRET}'", "PREPARE"),
    ],
)
def test_utility_statements_are_never_shown_only_their_kind(sql: str, kind: str) -> None:
    found = shown_statement(sql)
    assert found.text == "" and found.withheld.startswith(kind) and "utility" in found.withheld
    assert SECRET not in found.withheld and SECRET.replace("-", "_") not in found.withheld


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            f"/* token {SECRET} */ SELECT id FROM t WHERE a = $1 -- {SECRET}\n AND b = '{SECRET}'",
            "SELECT id FROM t WHERE a = $1  \n AND b = $2",
        ),
        (f"SELECT E'{SECRET}', U&'x', $${SECRET}$$, B'01', X'ff' ORDER BY 1", "SELECT $1, $2, $3, $4, $5 ORDER BY 1"),
        ("(SELECT 1) UNION ALL (SELECT 2)", "(SELECT 1) UNION ALL (SELECT 2)"),
        (f"WITH x AS (SELECT 1) INSERT INTO t SELECT '{SECRET}' FROM x", "WITH x AS (SELECT 1) INSERT INTO t SELECT $1 FROM x"),
        ("SELECT 'é', varchar(10) 'x' FROM t", "SELECT $1, varchar(10) $2 FROM t"),
    ],
)
def test_plannable_statements_lose_comments_and_quoted_constants(sql: str, expected: str) -> None:
    assert shown_statement(sql).text == expected


@pytest.mark.parametrize("sql", ["SELECT 1; DROP TABLE t", f"SELECT '{SECRET}", "   ", "/* only */"])
def test_several_unreadable_or_empty_statements_are_withheld(sql: str) -> None:
    found = shown_statement(sql)
    assert found.text == "" and found.withheld and SECRET not in found.withheld


def test_long_texts_are_withheld_unread_and_shown_ones_cut() -> None:
    assert shown("SELECT 1", MAX_SCANNED_CHARS + 1).withheld.startswith("statement of")
    long = "SELECT " + ", ".join(["a"] * 5000)
    assert shown(long, len(long)).text.endswith("…")


def test_index_definitions_keep_their_shape_without_their_constants() -> None:
    definition = f"CREATE INDEX i ON public.t USING btree (a) WHERE (token <> '{SECRET}'::text)"
    assert redact_constants(definition) == "CREATE INDEX i ON public.t USING btree (a) WHERE (token <> $1::text)"
