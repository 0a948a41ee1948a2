"""The analyzer's SQL safety against a real server process: every statement that could write, lock,
wait, escape or leak is refused with a client-error status, and the database is unchanged."""

from __future__ import annotations

import grpc
import pytest

from harness.dbstate import data_fingerprint
from harness.secrets import ADMIN_TOKEN
from harness.servers import ServerProcess
from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.devstack.instances import PostgresInstance

HOSTILE_SQL = [
    "DELETE FROM properties",
    "UPDATE properties SET price = 0",
    "INSERT INTO properties (source) VALUES ('avito')",
    "WITH gone AS (DELETE FROM properties RETURNING id) SELECT count(*) FROM gone",
    "SELECT * INTO stolen FROM properties",
    "CREATE TABLE t AS SELECT 1",
    "SELECT * FROM properties FOR UPDATE",
    "SELECT * FROM properties FOR SHARE",
    "LOCK TABLE properties",
    "SELECT 1; DELETE FROM properties",
    "SELECT pg_sleep(5)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_notify('c', 'x')",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_cancel_backend(1)",
    "SELECT set_config('statement_timeout', '0', false)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT nextval('properties_id_seq')",
    "SELECT query_to_xml('DELETE FROM properties RETURNING 1', true, true, '')",
    "SELECT rentscout_rel_evil()",  # a plpgsql function that writes, created below
    "COPY properties TO STDOUT",
    "EXPLAIN ANALYZE DELETE FROM properties",
    "",
    "SELEC broken syntax",
]


@pytest.fixture(scope="module")
def evil_function(pg_instance: PostgresInstance):
    pg_instance.psql(
        "CREATE OR REPLACE FUNCTION rentscout_rel_evil() RETURNS int LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN DELETE FROM properties WHERE id = 1; RETURN 1; END $$;"
    )
    yield
    pg_instance.psql("DROP FUNCTION IF EXISTS rentscout_rel_evil()")


@pytest.mark.parametrize("sql", HOSTILE_SQL)
def test_hostile_statement_is_refused(all_server: ServerProcess, pg_instance: PostgresInstance, evil_function, sql: str) -> None:
    before = data_fingerprint(pg_instance)
    with grpc.insecure_channel(all_server.target) as ch:
        stub = analyzer_pb2_grpc.AnalyzerServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.AnalyzeQuery(
                analyzer_pb2.AnalyzeQueryRequest(sql=sql, analyze=True, buffers=True),
                metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
                timeout=20,
            )
    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION), (
        f"{sql!r} -> {err.value.code().name}: {err.value.details()}"
    )
    assert "Traceback" not in (err.value.details() or "")
    assert data_fingerprint(pg_instance) == before
    assert all_server.process.poll() is None
