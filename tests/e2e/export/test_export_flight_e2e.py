"""End to end: Arrow Flight on the real `rentscout serve export` process: listed and described by grpcurl through
reflection, planned by grpcurl, read by pyarrow.flight with the correlation id in the access log."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from harness.grpcurl import grpcurl
from harness.polling import eventually
from harness.servers import ServerProcess

pa = pytest.importorskip("pyarrow")
fl = pytest.importorskip("pyarrow.flight")
pytestmark = pytest.mark.e2e
SERVICE = "arrow.flight.protocol.FlightService"
CID = "e2e-flight-5c1d"


@pytest.fixture
def export_process(service_env: dict[str, str], workdir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        "export",
        {
            **service_env,
            "RENTSCOUT_EXPORT_FLIGHT_ROWS_PER_ENDPOINT": "5000",
            "RENTSCOUT_EXPORT_ADVERTISED_ADDRESS": "grpc://export.e2e:50051",
        },
        workdir,
    )
    server.start()
    server.wait_serving(service=SERVICE)  # health knows the Flight service too
    yield server
    server.stop()


async def test_grpcurl_sees_flight_and_pyarrow_reads_it(export_process: ServerProcess, grpcurl_bin: str) -> None:
    listed = grpcurl(export_process.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert SERVICE in listed.stdout.split() and "rentscout.export.v1.ExportService" in listed.stdout.split()
    described = grpcurl(export_process.target, f"describe {SERVICE}")
    assert described.returncode == 0 and "rpc DoGet" in described.stdout

    info = grpcurl(export_process.target, f"{SERVICE}/GetFlightInfo", {"type": "PATH", "path": ["properties"]})
    assert info.returncode == 0, info.stderr
    endpoints = info.json()["endpoint"]
    assert len(endpoints) >= 2 and all(e["location"] == [{"uri": "grpc://export.e2e:50051"}] for e in endpoints)

    def read() -> int:
        client = fl.connect(f"grpc://{export_process.target}")
        options = fl.FlightCallOptions(headers=[(b"x-correlation-id", CID.encode())])
        rows = 0
        for endpoint in endpoints:  # grpcurl's tickets, redeemed by pyarrow
            rows += client.do_get(fl.Ticket(base64.b64decode(endpoint["ticket"]["ticket"])), options).read_all().num_rows
        return rows

    rows = await asyncio.to_thread(read)
    # every row once: the table's own count (total_records is the planner's estimate for the whole table, exact
    # only while its statistics are current, and other tests of the session change the table)
    conn = await asyncpg.connect(export_process.env["RENTSCOUT_DATABASE_URL"])
    try:
        assert rows == await conn.fetchval("SELECT count(*) FROM properties")
    finally:
        await conn.close()
    assert int(info.json()["total_records"]) > 0  # grpcurl prints proto field names

    async def access_lines() -> list[dict[str, Any]]:  # written just after each response leaves: poll for them
        return [
            r
            for r in export_process.log_records()
            if r.get("rpc.method") == f"/{SERVICE}/DoGet" and r.get("event.dataset") == "rentscout.access"
        ]

    access = await eventually(access_lines, lambda lines: len(lines) >= len(endpoints))
    assert len(access) == len(endpoints) and {r["correlation.id"] for r in access} == {CID}
    finished = [
        r for r in export_process.log_records() if r.get("message") == "export finished" and r.get("correlation.id") == CID
    ]
    assert sum(r["export.rows"] for r in finished) == rows and {r["export.format"] for r in finished} == {"arrow"}

    refused = grpcurl(export_process.target, f"{SERVICE}/ListActions", {}, verbose=True)
    assert refused.returncode != 0 and "Unimplemented" in refused.stderr and "not served here" in refused.stderr
