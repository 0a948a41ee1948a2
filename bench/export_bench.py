"""Export benchmark: the gRPC export against PostgreSQL's own COPY, on the same table in one run.

    .venv/bin/python bench/export_bench.py [--rows 1000000] [--repeat 3] [--rss-rows 5000000 | --no-large]

Starts a private PostgreSQL (rentscout.devstack) with --rows seeded listings, then measures, interleaved
and best of --repeat:
  psql-csv   psql -c "\\copy (SELECT * FROM properties ORDER BY id) TO STDOUT CSV"      (CSV baseline)
  pg-json    psql -c "COPY (SELECT row_to_json(p) FROM properties p ORDER BY id) TO STDOUT" (JSONL baseline)
  adbc       the ADBC PostgreSQL driver's fetch_arrow_table() of "SELECT * FROM properties ORDER BY id"
             in its own process (connect included)                                         (Arrow baseline)
  grpc-*     `rentscout serve export` as its own process, a client in another process reading the stream
             and discarding the bytes, for CSV, JSONL and JSON; for Arrow the client decodes every chunk
             into pyarrow RecordBatches (as ADBC's result is Arrow data)
  cx-1, cx-2 ConnectorX read_sql(return_type="arrow") with 1 and 2 partitions (partition_on id)
  flight-Ne  pyarrow.flight reading every endpoint of GetFlightInfo(for_path("properties")) at once, from an
             export server whose FlightInfo has N endpoints (1, 2, 4)
  sdk-flight SyncExportClient.export_arrow(flight=True).read_all(): the SDK over Flight, one stream at a time
and prints rows/s and ratios, and the CPU seconds each run took in PostgreSQL, the export server and the
client: their sum over the machine's cores bounds the wall time from below. Then it reads the export
server's peak RSS (VmHWM) after exporting all --rows in every format, grows the table to --rss-rows and
does the same with a fresh server process.
Goals: CSV >= 1.0x psql-csv; JSONL >= 1.3x pg-json; flight (all endpoints) >= 0.95x adbc and >= 1.0x cx-2;
sdk-flight >= 1.0x cx-1; the service's CPU (PostgreSQL + server + client) <= 1.25x adbc's; peak RSS < 200 MB
and within 10% from 1M to 5M rows. From the CPU seconds per stage the bench prints the wall time the stages would
allow with a core each at 1, 2 and 4 endpoints.
With a private PostgreSQL it also starts a streaming standby of it (pg_basebackup -R) and a second export
server reading from it (RENTSCOUT_DATABASE_READ_URL): grpc-csv-standby against grpc-csv on the primary,
same rows (checked), as a ratio (--no-standby skips it).
On a shared 2-core machine the absolute figures are noisy; the ratios are measured in the same run.

    .venv/bin/python bench/export_bench.py --flaky [--rows 1000000] [--repeat 1]

--flaky (see `flaky_main`): the CLI exports all --rows as CSV to a file once straight from the export
server, and once through tests/harness/flakyproxy.py resetting every connection after a random 1-4 MB;
checks both files hold every id once, and prints both times, their ratio and the resumes (--repeat N:
N interleaved rounds and the median ratio, as the machine's load varies from minute to minute).
Goal: through the proxy within 2x the direct time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMATS = {"csv": 1, "json": 2, "jsonl": 3, "arrow": 4}
ADBC_SQL = "SELECT * FROM properties ORDER BY id"
CSV_SQL = "\\copy (SELECT * FROM properties ORDER BY id) TO STDOUT CSV"
JSON_SQL = "COPY (SELECT row_to_json(p) FROM properties p ORDER BY id) TO STDOUT"


def client_main(target: str, fmt: str) -> None:
    """Consume one export and discard the bytes; print rows, bytes and seconds as JSON."""
    import grpc

    from rentscout.export.v1 import export_pb2, export_pb2_grpc
    from rentscout.wire.formats import by_enum

    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)]) as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        grpc.channel_ready_future(ch).result(timeout=10)
        decode = None
        if fmt == "arrow":
            from rentscout.wire.formats.arrow import ArrowDecoder

            decode = ArrowDecoder().feed
        started = time.perf_counter()
        rows = nbytes = 0
        request = export_pb2.ExportPropertiesRequest(format=by_enum(FORMATS[fmt]).enum)
        for msg in stub.ExportProperties(request):
            if msg.HasField("chunk"):
                if decode is None:
                    rows += msg.chunk.rows
                else:
                    rows += sum(batch.num_rows for batch in decode(msg.chunk.data))
                nbytes += len(msg.chunk.data)
        elapsed = time.perf_counter() - started
    print(json.dumps({"rows": rows, "bytes": nbytes, "seconds": elapsed}))


def adbc_main(dsn: str) -> None:
    """The ADBC PostgreSQL driver reading the table into Arrow (COPY BINARY, decoded in C++)."""
    import adbc_driver_postgresql.dbapi as adbc

    started = time.perf_counter()
    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(ADBC_SQL)
        table = cur.fetch_arrow_table()
    elapsed = time.perf_counter() - started
    print(json.dumps({"rows": table.num_rows, "bytes": table.nbytes, "seconds": elapsed}))


def run_adbc(dsn: str, expect_rows: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--adbc", dsn], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["rows"] != expect_rows:
        raise RuntimeError(f"adbc read {result['rows']} rows, expected {expect_rows}")
    return float(result["seconds"])


def psql_exe() -> str:
    from rentscout.devstack.binaries import postgres_bindir

    local = postgres_bindir() / "psql"
    return str(local) if local.exists() else (shutil.which("psql") or "psql")


def run_psql(dsn: str, sql: str) -> float:
    """Timed like the gRPC client (from a ready connection to the last byte): psql says `ready` on stderr once
    connected (unbuffered, before the data), and the clock stops at the end of its output, not at its exit."""
    proc = subprocess.Popen(
        [psql_exe(), dsn, "-X", "-q", "-c", "\\warn ready", "-c", sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    if proc.stderr.readline().strip() != b"ready":
        raise RuntimeError(f"psql did not connect: {proc.stderr.read().decode(errors='replace')}")
    started = time.perf_counter()
    while proc.stdout.read(1 << 20):
        pass
    elapsed = time.perf_counter() - started
    if proc.wait():
        raise RuntimeError(f"psql failed: {proc.stderr.read().decode(errors='replace')}")
    return elapsed


def run_client(target: str, fmt: str, expect_rows: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--client", target, fmt], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["rows"] != expect_rows:
        raise RuntimeError(f"grpc-{fmt} exported {result['rows']} rows, expected {expect_rows}")
    return float(result["seconds"])


class Server:
    """`rentscout serve export` in its own process; peak RSS from /proc/<pid>/status (VmHWM)."""

    def __init__(
        self, dsn: str, workdir: Path, read_url: str = "", max_concurrent: int = 8, extra_env: dict[str, str] | None = None
    ) -> None:
        from rentscout.devstack.instances import free_port

        self.port = free_port()
        self.log = (workdir / f"export-{self.port}.log").open("wb")
        env = {
            **os.environ,
            "RENTSCOUT_DATABASE_URL": dsn,
            "RENTSCOUT_LOG_LEVEL": "warning",
            "RENTSCOUT_EXPORT_TOKEN_SECRET": "bench",
            "RENTSCOUT_DATABASE_READ_URL": read_url,
            "RENTSCOUT_EXPORT_MAX_CONCURRENT": str(max_concurrent),
            **(extra_env or {}),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rentscout.main",
                "serve",
                "export",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--metrics-port",
                "0",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait(self, timeout: float = 30) -> None:
        import grpc
        from grpc_health.v1 import health_pb2

        from rentscout.wire.health import health_stub

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("export server exited")
            try:
                with grpc.insecure_channel(self.target) as ch:
                    reply = health_stub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError("export server not serving")

    def status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_replayed(primary: str, replica: str, timeout: float = 120) -> None:
    """Until the standby has replayed everything the primary wrote (the seed)."""
    import asyncpg

    async def wait() -> None:
        p, r = await asyncpg.connect(primary), await asyncpg.connect(replica)
        try:
            target = await p.fetchval("SELECT pg_current_wal_insert_lsn()")
            end = time.monotonic() + timeout
            while not await r.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target):
                if time.monotonic() > end:
                    raise TimeoutError("the standby did not catch up")
                await asyncio.sleep(0.2)
        finally:
            await p.close()
            await r.close()

    asyncio.run(wait())


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, reaped: bool = False) -> float:
    """User + system CPU seconds of a live process (0 once it is gone); `reaped`: plus those of its children
    that have exited (the postmaster's: backends of connections that closed)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11 : 15 if reaped else 13]) / _TICK


POSTMASTER: list[int] = []  # the benchmarked cluster's postmaster pid, when known (else every postgres process)


def postmaster_of(dsn: str) -> int | None:
    """The pid of the postmaster listening on the DSN's port (from its command line), if it runs here."""
    from urllib.parse import urlsplit

    port = str(urlsplit(dsn).port or 5432)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() != "postgres":
                    continue
                args = (proc / "cmdline").read_bytes().split(b"\0")
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if (proc.parent / str(ppid) / "comm").exists() and (
                    proc.parent / str(ppid) / "comm"
                ).read_text().strip() == "postgres":
                    continue  # a backend, not the postmaster
                if any(a == port.encode() or a == f"port={port}".encode() for a in args) or any(
                    a.endswith(b"-p" + port.encode()) for a in args
                ):
                    return int(proc.name)
            except (OSError, ValueError, IndexError):
                continue
    return None


def postgres_cpu() -> float:
    """CPU seconds of the benchmarked cluster: its postmaster with its reaped children (backends of connections
    that closed) and its live children; without a known postmaster, of every postgres process on the machine
    (other clusters on a shared machine then add noise)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() != "postgres":
                    continue
                pid = int(proc.name)
                if POSTMASTER:
                    ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    if pid != POSTMASTER[0] and ppid != POSTMASTER[0]:
                        continue
                total += process_cpu(pid, reaped=True)
            except (OSError, ValueError):
                continue
    return total


def cpu_now(server_pids: list[int]) -> tuple[float, float, float]:
    """(the benchmarked PostgreSQL, the export servers, this process's finished children: the clients, psql and
    ADBC runs), in CPU seconds: where a run's work went, whatever the wall clock says."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return postgres_cpu(), sum(process_cpu(p) for p in server_pids), children.ru_utime + children.ru_stime


def table_rows(dsn: str) -> int:
    out = subprocess.run(
        [psql_exe(), dsn, "-X", "-At", "-c", "SELECT count(*) FROM properties"], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def seed_to(dsn: str, rows: int) -> None:
    from rentscout.db.migrate import migrate
    from rentscout.db.seed import seed

    asyncio.run(migrate(dsn))
    present = table_rows(dsn)
    if present < rows:
        started = time.perf_counter()
        asyncio.run(seed(dsn, rows - present))
        subprocess.run([psql_exe(), dsn, "-X", "-q", "-c", "VACUUM ANALYZE properties"], check=True)
        print(f"seeded {rows - present} rows in {time.perf_counter() - started:.1f}s", flush=True)
    elif present > rows:
        raise SystemExit(f"the table already holds {present} rows (> --rows {rows})")


# -- Arrow Flight, ConnectorX and the SDK over Flight -------------------------------------------------------


def flight_main(target: str) -> None:
    """pyarrow.flight (no RentScout code): GetFlightInfo for the table, every endpoint read at once."""
    import concurrent.futures

    import pyarrow.flight as fl

    started = time.perf_counter()
    client = fl.connect(f"grpc://{target}")
    info = client.get_flight_info(fl.FlightDescriptor.for_path("properties"))
    with concurrent.futures.ThreadPoolExecutor(len(info.endpoints)) as pool:
        tables = list(pool.map(lambda ep: client.do_get(ep.ticket).read_all(), info.endpoints))
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": sum(t.num_rows for t in tables),
                "bytes": sum(t.nbytes for t in tables),
                "seconds": elapsed,
                "endpoints": len(info.endpoints),
            }
        )
    )


def sdk_flight_main(target: str) -> None:
    """The SDK's export_arrow() over Flight, one stream at a time."""
    from rentscout.sdk import SyncExportClient

    started = time.perf_counter()
    with SyncExportClient(target) as client:
        table = client.export_arrow(flight=True).read_all()
    elapsed = time.perf_counter() - started
    print(json.dumps({"rows": table.num_rows, "bytes": table.nbytes, "seconds": elapsed}))


def connectorx_main(dsn: str, partitions: int) -> None:
    """ConnectorX read_sql into Arrow, with `partitions` partitions on id."""
    import connectorx as cx

    started = time.perf_counter()
    if partitions > 1:
        table = cx.read_sql(
            dsn, ADBC_SQL.replace(" ORDER BY id", ""), return_type="arrow", partition_on="id", partition_num=partitions
        )
    else:
        table = cx.read_sql(dsn, ADBC_SQL, return_type="arrow")
    elapsed = time.perf_counter() - started
    print(json.dumps({"rows": table.num_rows, "bytes": table.nbytes, "seconds": elapsed}))


def run_json(args: list[str], name: str, expect_rows: int) -> float:
    """One measured subprocess of this script (`args` after the script), checked to read every row."""
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["rows"] != expect_rows:
        raise RuntimeError(f"{name} read {result['rows']} rows, expected {expect_rows}")
    return float(result["seconds"])


FLIGHT_ENDPOINTS = (1, 2, 4)


def flight_servers(dsn: str, workdir: Path, rows: int) -> dict[int, Server]:
    """An export server per endpoint count, its FlightInfo cut into that many endpoints."""
    return {
        n: Server(
            dsn,
            workdir,
            extra_env={
                "RENTSCOUT_EXPORT_FLIGHT_ROWS_PER_ENDPOINT": str(max(1000, -(-rows // n))),
                "RENTSCOUT_EXPORT_FLIGHT_MAX_ENDPOINTS": str(n),
            },
        )
        for n in FLIGHT_ENDPOINTS
    }


def flight_measures(dsn: str, servers: dict[int, Server], sdk_server: Server, rows: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [
        ("cx-1", lambda: run_json(["--connectorx", dsn, "1"], "cx-1", rows)),
        ("cx-2", lambda: run_json(["--connectorx", dsn, "2"], "cx-2", rows)),
    ]
    for n, server in servers.items():
        out.append((f"flight-{n}e", lambda s=server, n=n: run_json(["--flight", s.target], f"flight-{n}e", rows)))
    out.append(("sdk-flight", lambda: run_json(["--sdk-flight", sdk_server.target], "sdk-flight", rows)))
    return out


FLIGHT_RATIOS = (
    ("cx-1", None),
    ("cx-2", None),
    *((f"flight-{n}e", "adbc") for n in FLIGHT_ENDPOINTS),
    *((f"flight-{n}e", "cx-2") for n in FLIGHT_ENDPOINTS),
    ("sdk-flight", "cx-1"),
    ("sdk-flight", "adbc"),
)


def report_flight(
    rows: int, best: dict[str, float], rounds: list[dict[str, float]], cpu: dict[str, list[tuple[float, float, float]]]
) -> None:
    """Flight against its baselines, its CPU per 1M rows by stage, and the wall time the stages would allow."""
    print(f"\nArrow Flight ({rows:,} rows): ratios of the best times (median of per-round ratios)")
    for name, base in FLIGHT_RATIOS:
        ratio = "baseline"
        if base:
            paired = statistics.median(r[base] / r[name] for r in rounds)
            ratio = f"{best[base] / best[name]:.2f}x {base} (median per round {paired:.2f}x)"
        print(f"  {name:16s} {best[name]:6.2f}s {rows / best[name]:>12,.0f} rows/s   {ratio}")
    scale = 1_000_000 / rows

    def stages(name: str) -> tuple[float, float, float]:
        pg, srv, cli = (statistics.median(c[i] for c in cpu[name]) * scale for i in range(3))
        return pg, srv, cli

    adbc_total = sum(stages("adbc"))
    print("\nCPU seconds per 1M rows (median): PostgreSQL, export server, client; total against ADBC's (PostgreSQL + client)")
    for name in ("adbc", "cx-1", "cx-2", *(f"flight-{n}e" for n in FLIGHT_ENDPOINTS), "sdk-flight", "grpc-arrow"):
        pg, srv, cli = stages(name)
        total = pg + srv + cli
        print(
            f"  {name:16s} postgres {pg:5.2f}  server {srv:5.2f}  client {cli:5.2f}  total {total:5.2f} "
            f"({total / adbc_total:.2f}x adbc)"
        )
    # a core per stage and endpoint: PostgreSQL backends, server readers and client streams all split n ways
    pg, srv, cli = stages("flight-1e")
    print(
        "\nwall time per 1M rows the Flight stages allow with a core each (max stage / endpoints), "
        "from flight-1e's CPU; ADBC's single connection allows max(postgres, client)"
    )
    a_pg, _, a_cli = stages("adbc")
    print(f"  adbc             {max(a_pg, a_cli):5.2f}s")
    for n in FLIGHT_ENDPOINTS:
        print(
            f"  flight {n} endpoint{'s' if n > 1 else ' '}  {max(pg, srv, cli) / n:5.2f}s  "
            f"({max(a_pg, a_cli) / (max(pg, srv, cli) / n):.2f}x adbc)"
        )


def flight_peak_rss(dsn: str, workdir: Path, rows: int) -> int:
    """Peak RSS kB of a fresh export server after Flight-exporting every row (2 endpoints, read at once)."""
    server = Server(dsn, workdir, extra_env={"RENTSCOUT_EXPORT_FLIGHT_ROWS_PER_ENDPOINT": str(max(1000, rows // 2))})
    try:
        run_json(["--flight", server.target], "flight", rows)
        return server.status_kb("VmHWM")
    finally:
        server.stop()


def peak_rss(dsn: str, workdir: Path, rows: int) -> tuple[int, int]:
    """(peak RSS kB after exporting everything in each format, RSS kB when idle at start)."""
    server = Server(dsn, workdir)
    try:
        idle = server.status_kb("VmRSS")
        for fmt in FORMATS:
            run_client(server.target, fmt, rows)
        return server.status_kb("VmHWM"), idle
    finally:
        server.stop()


def cli_export(target: str, out: Path) -> tuple[float, dict[str, object]]:
    """`rentscout export --format csv` of the whole table in its own process: wall seconds and its --json summary."""
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rentscout.main",
            "export",
            "--format",
            "csv",
            "-o",
            str(out),
            "--target",
            target,
            "--json",
            "--no-progress",
            "--resume-timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"rentscout export failed ({proc.returncode}): {proc.stderr.strip()}")
    return seconds, json.loads(proc.stdout)


def csv_ids(path: Path) -> list[int]:
    with path.open("rb") as f:
        f.readline()  # the header
        return [int(line.split(b",", 1)[0]) for line in f]


def flaky_main(dsn: str, workdir: Path, rows: int, repeat: int = 1) -> None:
    """The CLI's export through a proxy that resets every connection after 1-4 MB, against the same export direct.

    `repeat` rounds of (direct, through the proxy), interleaved, so both see the same machine load; each round's
    ratio, and their median, are printed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import asyncpg

    from harness.flakyproxy import in_thread

    async def table_ids() -> list[int]:
        conn = await asyncpg.connect(dsn)
        try:
            return [r[0] for r in await conn.fetch("SELECT id FROM properties ORDER BY id")]
        finally:
            await conn.close()

    expected = asyncio.run(table_ids())
    server = Server(dsn, workdir)
    out = workdir / "flaky.csv"
    ratios = []
    try:
        for r in range(1, repeat + 1):
            direct, summary = cli_export(server.target, out)
            if csv_ids(out) != expected:
                raise RuntimeError("the direct export does not hold every id once")
            print(
                f"round {r}: direct                  {direct:6.2f}s  {summary['rows']:,} rows, {summary['resumes']} resumes",
                flush=True,
            )
            with in_thread(server.port, reset_bytes=(1_000_000, 4_000_000)) as proxy:
                flaky, summary = cli_export(proxy.target, out)
            ids = csv_ids(out)
            if ids != expected:
                raise RuntimeError(f"through the proxy: {len(ids)} ids, {len(set(ids))} distinct, expected {len(expected)}")
            ratios.append(flaky / direct)
            print(
                f"round {r}: resetting every 1-4 MB  {flaky:6.2f}s  {summary['rows']:,} rows, {summary['resumes']} "
                f"resumes ({proxy.resets} resets by the proxy, {proxy.bytes_down / 1e6:,.0f} MB forwarded): "
                f"{ratios[-1]:.2f}x",
                flush=True,
            )
    finally:
        server.stop()
    print(
        f"\n{rows:,} rows as CSV through the CLI, through the resetting proxy: {statistics.median(ratios):.2f}x the "
        f"direct time (median of {repeat} round(s); goal <= 2x); every id exactly once in every file"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best time of each is kept")
    p.add_argument("--rss-rows", type=int, default=5_000_000, help="second table size for the peak RSS check")
    p.add_argument("--no-large", action="store_true", help="skip the peak RSS check at --rss-rows")
    p.add_argument("--no-standby", action="store_true", help="skip the streaming-standby comparison")
    p.add_argument("--dsn", help="use this database (its properties table is grown to --rows) instead of a private one")
    p.add_argument("--flaky", action="store_true", help="only the CLI export through a proxy resetting every 1-4 MB")
    p.add_argument("--client", nargs=2, metavar=("TARGET", "FORMAT"), help=argparse.SUPPRESS)
    p.add_argument("--adbc", metavar="DSN", help=argparse.SUPPRESS)
    p.add_argument("--flight", metavar="TARGET", help=argparse.SUPPRESS)
    p.add_argument("--sdk-flight", metavar="TARGET", help=argparse.SUPPRESS)
    p.add_argument("--connectorx", nargs=2, metavar=("DSN", "PARTITIONS"), help=argparse.SUPPRESS)
    p.add_argument("--no-flight", action="store_true", help="skip the Flight, ConnectorX and SDK-over-Flight runs")
    args = p.parse_args()
    if args.flight:
        flight_main(args.flight)
        return
    if args.sdk_flight:
        sdk_flight_main(args.sdk_flight)
        return
    if args.connectorx:
        connectorx_main(args.connectorx[0], int(args.connectorx[1]))
        return
    if args.client:
        client_main(*args.client)
        return
    if args.adbc:
        adbc_main(args.adbc)
        return

    workdir = Path(tempfile.mkdtemp(prefix="export-bench-"))
    pg = None
    standby = None
    dsn = args.dsn
    if dsn is None:
        from rentscout.devstack.instances import PostgresInstance

        pg = PostgresInstance(workdir / "pg").start()
        dsn = pg.dsn
    try:
        seed_to(dsn, args.rows)
        if (postmaster := postmaster_of(dsn)) is not None:
            POSTMASTER.append(postmaster)
        rows = args.rows
        if args.flaky:
            flaky_main(dsn, workdir, rows, args.repeat)
            return
        if pg is not None and not args.no_standby:
            standby = pg.standby(workdir / "standby").start()
            wait_replayed(dsn, standby.dsn)
        server = Server(dsn, workdir)
        replica_server = Server(dsn, workdir, read_url=standby.dsn) if standby is not None else None
        measures: list[tuple[str, Callable[[], float]]] = [
            ("psql-csv", lambda: run_psql(dsn, CSV_SQL)),
            ("grpc-csv", lambda: run_client(server.target, "csv", rows)),
            ("pg-json", lambda: run_psql(dsn, JSON_SQL)),
            ("grpc-jsonl", lambda: run_client(server.target, "jsonl", rows)),
            ("grpc-json", lambda: run_client(server.target, "json", rows)),
            ("adbc", lambda: run_adbc(dsn, rows)),
            ("grpc-arrow", lambda: run_client(server.target, "arrow", rows)),
        ]
        if replica_server is not None:
            measures.append(("grpc-csv-standby", lambda: run_client(replica_server.target, "csv", rows)))
        fservers = {} if args.no_flight else flight_servers(dsn, workdir, rows)
        if fservers:
            measures += flight_measures(dsn, fservers, server, rows)
        best: dict[str, float] = {}
        rounds: list[dict[str, float]] = []
        cpu: dict[str, list[tuple[float, float, float]]] = {}
        pids = (
            [server.proc.pid]
            + ([replica_server.proc.pid] if replica_server is not None else [])
            + [s.proc.pid for s in fservers.values()]
        )
        try:
            for r in range(args.repeat):
                rounds.append({})
                for name, fn in measures:
                    before = cpu_now(pids)
                    seconds = fn()
                    after = cpu_now(pids)
                    cpu.setdefault(name, []).append((after[0] - before[0], after[1] - before[1], after[2] - before[2]))
                    best[name] = min(best.get(name, seconds), seconds)
                    rounds[-1][name] = seconds
                    print(f"round {r + 1}: {name:16s} {seconds:6.2f}s", flush=True)
        finally:
            server.stop()
            for fserver in fservers.values():
                fserver.stop()
            if replica_server is not None:
                replica_server.stop()
            if standby is not None:  # not needed for the memory check below
                standby.destroy()
                standby = None
        print(
            f"\n{rows:,} rows, best of {args.repeat} (rows/s; speed ratio to its baseline: of the best times, "
            f"and the median of the ratios within each round)"
        )
        for name, base in (
            ("psql-csv", None),
            ("grpc-csv", "psql-csv"),
            ("pg-json", None),
            ("grpc-jsonl", "pg-json"),
            ("grpc-json", "pg-json"),
            ("adbc", None),
            ("grpc-arrow", "adbc"),
            *((("grpc-csv-standby", "grpc-csv"),) if replica_server is not None else ()),
        ):
            ratio = "baseline"
            if base:
                paired = statistics.median(r[base] / r[name] for r in rounds)
                ratio = f"{best[base] / best[name]:.2f}x {base} (median per round {paired:.2f}x)"
            print(f"  {name:16s} {best[name]:6.2f}s {rows / best[name]:>12,.0f} rows/s   {ratio}")
        cores = os.cpu_count() or 1
        print(
            f"\nCPU seconds of one run (median): PostgreSQL, export server, client (psql/ADBC/gRPC client); "
            f"their sum / {cores} cores is the least wall time this machine allows"
        )
        for name, _ in measures:
            pg_s, srv_s, cli_s = (statistics.median(c[i] for c in cpu[name]) for i in range(3))
            print(
                f"  {name:16s} postgres {pg_s:5.2f}  server {srv_s:5.2f}  client {cli_s:5.2f}  "
                f"-> >= {(pg_s + srv_s + cli_s) / cores:4.2f}s wall (best {best[name]:.2f}s)"
            )
        if fservers:
            report_flight(rows, best, rounds, cpu)
        peak1, idle1 = peak_rss(dsn, workdir, rows)
        flight1 = 0 if args.no_flight else flight_peak_rss(dsn, workdir, rows)
        if flight1:
            print(f"\nexport server peak RSS after a Flight export of {rows:,} rows: {flight1 / 1024:.1f} MB")
        print(
            f"\nexport server peak RSS after exporting {rows:,} rows x{len(FORMATS)} formats: {peak1 / 1024:.1f} MB "
            f"(idle at start {idle1 / 1024:.1f} MB)"
        )
        if not args.no_large and args.rss_rows > rows:
            seed_to(dsn, args.rss_rows)
            peak5, idle5 = peak_rss(dsn, workdir, args.rss_rows)
            if flight1:
                flight5 = flight_peak_rss(dsn, workdir, args.rss_rows)
                print(
                    f"export server peak RSS after a Flight export of {args.rss_rows:,} rows: {flight5 / 1024:.1f} MB; "
                    f"growth {100 * (flight5 - flight1) / flight1:+.1f}%"
                )
            print(
                f"export server peak RSS after exporting {args.rss_rows:,} rows x{len(FORMATS)} formats: {peak5 / 1024:.1f} MB "
                f"(idle at start {idle5 / 1024:.1f} MB); growth {100 * (peak5 - peak1) / peak1:+.1f}%"
            )
    finally:
        if standby is not None:
            standby.destroy()
        if pg is not None:
            pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
