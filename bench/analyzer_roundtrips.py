"""Round trips to PostgreSQL per AnalyzeQuery, and where the time of one call goes. Not a test: prints figures.

    .venv/bin/python bench/analyzer_roundtrips.py [--calls 100] [--distinct]

The analyzer (in this process, as in analyzer_bench.py) talks to a private PostgreSQL through a relay in
a process of its own, which records every chunk each way with the monotonic clock. A round trip is a
run of client-to-server bytes followed by the server's answer; for each one the relay's record gives
the frontend messages sent (Q simple query, P parse, D describe, H flush, B bind, E execute, S sync),
the server's time to first answer byte, and the client's time before it sent (Python, asyncpg, gRPC).
The relay adds a hop each way, so its absolute times are above analyzer_bench.py's; the counts are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from analyzer_bench import PARAMS, QUERIES  # the statements the ratio is measured on

from harness.servers import in_process
from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.analyzer_service.service import create
from rentscout.db.migrate import migrate
from rentscout.db.seed import seed
from rentscout.devstack.instances import PostgresInstance, free_port

Event = tuple[int, str, float, bytes]  # (connection number, "c" client->server or "s", monotonic time, bytes)


def relay(listen_port: int, target_port: int, pipe: multiprocessing.connection.Connection) -> None:
    """Forward 127.0.0.1:listen_port to target_port, recording every chunk; `pipe` gets the record on request."""
    events: list[Event] = []
    counter = iter(range(1_000_000))

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int, side: str) -> None:
        try:
            while data := await reader.read(65536):
                events.append((number, side, time.monotonic(), data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = next(counter)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pump(reader, up_writer, number, "c"), pump(up_reader, writer, number, "s"))

    async def serve() -> None:
        server = await asyncio.start_server(accept, "127.0.0.1", listen_port)
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(pipe.fileno(), ready.set)
        pipe.send("ready")
        async with server:
            while True:
                await ready.wait()
                ready.clear()
                while pipe.poll():
                    if pipe.recv() == "stop":
                        return
                    pipe.send(events[:])
                    events.clear()

    asyncio.run(serve())


def frontend_messages(data: bytes, started: bool) -> tuple[list[str], bool]:
    """Message type letters in a client chunk (asyncpg writes whole messages). Before the startup packet
    (no type byte) is seen, the chunk is the startup packet or an SSL request."""
    out, i = [], 0
    if not started:
        return ["startup"], data[4:8] != b"\x04\xd2\x16\x2f"  # 80877103: SSLRequest, startup follows
    while i + 5 <= len(data):
        kind = chr(data[i])
        length = int.from_bytes(data[i + 1 : i + 5], "big")
        out.append(kind)
        i += 1 + length
    return out, True


@dataclass
class Trip:
    connection: int
    messages: list[str]
    sent: float  # last client byte
    answered: float  # first server byte after it
    client_before: float  # client time before sending (since the previous answer's last byte on that connection)


@dataclass
class Call:
    started: float
    ended: float
    trips: list[Trip] = field(default_factory=list)


def trips_of(events: list[Event]) -> list[Trip]:
    started: dict[int, bool] = {}
    last_server: dict[int, float] = {}
    open_trip: dict[int, Trip] = {}
    out: list[Trip] = []
    for number, side, at, data in sorted(events, key=lambda e: e[2]):
        if side == "c":
            messages, started[number] = frontend_messages(data, started.get(number, False))
            trip = open_trip.get(number)
            if trip is None:
                trip = Trip(number, [], at, 0.0, at - last_server.get(number, at))
                open_trip[number] = trip
            trip.messages += messages
            trip.sent = at
        else:
            last_server[number] = at
            trip = open_trip.pop(number, None)
            if trip is not None:
                trip.answered = at
                out.append(trip)
    return out


async def measure(dsn: str, calls: int, distinct: bool, pipe: multiprocessing.connection.Connection) -> list[Call]:
    params = [analyzer_pb2.QueryParam(int_value=PARAMS[0]), analyzer_pb2.QueryParam(string_value=PARAMS[1])]
    out: list[Call] = []
    async with (
        in_process([create], {"RENTSCOUT_DATABASE_URL": dsn, "RENTSCOUT_LOG_LEVEL": "warning"}) as host,
        grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
    ):
        stub = analyzer_pb2_grpc.AnalyzerServiceStub(channel)
        for i in range(calls + 20):  # the first 20 warm caches and pools
            n = 1 if i % 2 == 0 else 2
            sql = f"{QUERIES[i % 2]} /* round {i} */" if distinct else QUERIES[i % 2]
            if i == 20:
                pipe.send("dump")
                pipe.recv()
            started = time.monotonic()
            await stub.AnalyzeQuery(analyzer_pb2.AnalyzeQueryRequest(sql=sql, params=params[:n], analyze=True, buffers=True))
            if i >= 20:
                out.append(Call(started, time.monotonic()))
            await asyncio.sleep(0.005)  # a release still running belongs to the call before
        pipe.send("dump")
        events: list[Event] = pipe.recv()
    for trip in trips_of(events):
        for call in out:
            if call.started <= trip.sent <= call.ended + 0.004:
                call.trips.append(trip)
    for call in out:  # the service's readiness probe has a connection of its own: only the call's counts
        if call.trips:
            ours = Counter(t.connection for t in call.trips).most_common(1)[0][0]
            call.trips = [t for t in call.trips if t.connection == ours]
    return out


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):6.3f} ms" if values else "     -   "


async def bare_round_trip(dsn: str, rounds: int = 400) -> float:
    """Median time of one `SELECT 1` (a cached statement: one round trip), directly and without the relay."""
    conn = await asyncpg.connect(dsn)
    try:
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            await conn.fetchval("SELECT 1")
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)
    finally:
        await conn.close()


def report(calls: list[Call]) -> None:
    counts = Counter(len(c.trips) for c in calls)
    print(
        f"round trips per AnalyzeQuery: {dict(sorted(counts.items()))} (median {statistics.median(len(c.trips) for c in calls)})"
    )
    shapes = Counter(tuple(" ".join(t.messages) for t in c.trips) for c in calls)
    shape, seen = shapes.most_common(1)[0]
    print(f"most common sequence ({seen} of {len(calls)} calls):")
    typical = [c for c in calls if tuple(" ".join(t.messages) for t in c.trips) == shape]
    for k, messages in enumerate(shape):
        server = [c.trips[k].answered - c.trips[k].sent for c in typical]
        client = [c.trips[k].client_before for c in typical]
        print(f"  {k + 1}. {messages:<28} server to first byte {ms(server)}   client before it {ms(client)}")
    for other, count in shapes.most_common()[1:4]:
        print(f"  also ({count} calls): {' | '.join(other)}")
    print(f"call (client-observed, through the relay): {ms([c.ended - c.started for c in calls])}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--distinct", action="store_true", help="a statement never seen before in every call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rentscout-bench-") as tmp:
        pg = PostgresInstance(Path(tmp) / "pg")
        pg.start()
        ours, theirs = multiprocessing.Pipe()
        port = free_port()
        proc = multiprocessing.get_context("spawn").Process(target=relay, args=(port, pg.port, theirs), daemon=True)
        proc.start()
        try:
            ours.recv()
            await migrate(pg.dsn)
            await seed(pg.dsn, 20_000)
            print(f"one round trip (SELECT 1, cached, no relay): {1000 * await bare_round_trip(pg.dsn):.3f} ms")
            calls = await measure(pg.dsn.replace(f":{pg.port}/", f":{port}/"), args.calls, args.distinct, ours)
            report(calls)
        finally:
            ours.send("stop")
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
            pg.destroy()


if __name__ == "__main__":
    asyncio.run(main())
