"""Runtime benchmark: what the shared server runtime costs per call, against a bare RPC of the same server.

Standalone: starts a private PostgreSQL (seeded with --rows listings) and Redis, and three server
processes of the real runtime (`rentscout serve cache-query`: ServiceHost, RuntimeInterceptor, access
log at info level to a file, tracing on with no exporter):
  A  cache-query (near cache + Redis) plus an echo service registered through a generic handler
     (bytes in, bytes out); the same process also runs a bare grpc.aio server (same transport
     options, no interceptor) with the same echo on a second port
  B  cache-query with the near cache off: every hit is a Redis round trip
  C  cache-query with the cache disabled: every call runs the SQL (a miss)
The baseline is A's own grpc.health.v1.Health/Check, on the same channel as A's cache hits. The
RPCs take turns in small blocks (rotating which goes first) so that machine noise hits them alike;
figures are client-observed (a grpc.aio client in this process, generated stubs). Throughput is
measured at 1, 16 and 64 concurrent callers on one channel.

Goals (figures, never test assertions): near-cache hit p50 <= 1.2x Health/Check, p99 <= 1.5x; the
interceptor adds <= 15% to the echo's p50; at 64 callers near-hit throughput >= 0.8x Health/Check.

    .venv/bin/python bench/runtime_bench.py [--rows 100000] [--calls 4000] [--profile SECONDS]

--profile samples server A with py-spy (when installed) under a mixed hit + health load and prints
its top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TypeAlias

import grpc
from benchlib import Call, Figures, fmt, interleaved, load_note, stack

# a method called without (de)serializers: bytes cross as they are
RawCall: TypeAlias = "grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]"

ECHO_SERVICE, ECHO_METHOD, ECHO_IDS_METHOD = "rentscout.bench.v1.Echo", "Echo", "EchoIds"
ECHO_REPLY = b"\x08\x01"  # a tiny message: the RPC costs only what the server and transport add
HOT_CITY = "Moscow"


# -- server side (a subprocess running this file with --serve) ----------------------------------


def echo_handlers() -> grpc.GenericRpcHandler:
    """Echo (bytes in, bytes out: no (de)serializers), and EchoIds, which also echoes a fresh correlation id
    and traceparent in its trailers, as the runtime does for a unary call (with the response and status)."""
    from rentscout.wire.correlation import new_correlation_id

    async def echo(request: bytes, ctx: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return ECHO_REPLY

    async def echo_ids(request: bytes, ctx: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        trace_id = new_correlation_id().replace("-", "")
        ctx.set_trailing_metadata(
            (("x-correlation-id", new_correlation_id()), ("traceparent", f"00-{trace_id}-{trace_id[:16]}-01"))
        )
        return ECHO_REPLY

    return grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {ECHO_METHOD: grpc.unary_unary_rpc_method_handler(echo), ECHO_IDS_METHOD: grpc.unary_unary_rpc_method_handler(echo_ids)},
    )


def serve(port: int, bare_port: int) -> None:
    from rentscout.cache_service.service import create
    from rentscout.runtime import logs
    from rentscout.runtime.config import RuntimeSettings, load
    from rentscout.runtime.server import ServiceHost, ServiceSpec, server_options

    settings = load(RuntimeSettings)
    logs.configure("rentscout-runtime-bench", "bench", settings.log_level)
    echo = ServiceSpec(name=ECHO_SERVICE, register=lambda server: server.add_generic_rpc_handlers((echo_handlers(),)))
    host = ServiceHost([create, lambda resources: echo], settings, label="bench", host="127.0.0.1", port=port, metrics_port=None)

    async def main() -> None:
        bare = None
        if bare_port:  # the same echo and transport options, without the runtime's interceptor
            bare = grpc.aio.server(options=server_options(settings))
            bare.add_generic_rpc_handlers((echo_handlers(),))
            bare.add_insecure_port(f"127.0.0.1:{bare_port}")
            await bare.start()
        try:
            await host.run_until_signal()
        finally:
            if bare is not None:
                await bare.stop(0)

    asyncio.run(main())


# -- profile ------------------------------------------------------------------------------------


def top_frames(raw: Path, n: int = 15) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")" for f in stack_text.split(";") if f
        ]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; self time:"]
    lines += [f"    {c / total:6.1%}  {name}" for name, c in own.most_common(n)]
    lines.append("  inclusive (the frame or anything it called):")
    lines += [f"    {c / total:6.1%}  {name}" for name, c in inclusive.most_common(n + 10)]
    return "\n".join(lines)


def start_spy(pid: int, seconds: float) -> tuple[subprocess.Popen[bytes], Path] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("\nprofile: py-spy is not installed (pip install py-spy); skipped")
        return None
    out = Path(tempfile.mkdtemp(prefix="rentscout-profile-")) / "server-a.txt"
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ), out


def report_spy(proc: subprocess.Popen[bytes], out: Path, title: str) -> None:
    _, err = proc.communicate()
    if not out.exists():
        print(f"\nprofile: py-spy failed: {err.decode(errors='replace').strip()[:300]}")
        return
    print(f"\nprofile of {title}:")
    print(top_frames(out))
    shutil.rmtree(out.parent, ignore_errors=True)


async def profile(pid: int, seconds: float, calls: dict[str, Call]) -> None:
    spy = start_spy(pid, seconds)
    if spy is None:
        return
    figures = {name: Figures() for name in calls}
    while spy[0].poll() is None:
        await interleaved(calls, figures, 320, 160, concurrency=16)
    report_spy(*spy, f"server A under {' + '.join(calls)} at 16 callers ({seconds:.0f}s, py-spy)")


# -- client side --------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    from grpc_health.v1 import health_pb2

    from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
    from rentscout.devstack.instances import free_port
    from rentscout.wire.health import health_stub

    async with stack(args.rows, "rentscout-runtime-bench-") as st:
        bare_port = free_port()
        a = st.server(__file__, "A-near", st.env(), ["--bare-port", str(bare_port)])
        b = st.server(__file__, "B-redis", st.env(RENTSCOUT_CACHE_NEAR_MAX_ENTRIES="0"))
        c = st.server(__file__, "C-miss", st.env(RENTSCOUT_CACHE_ENABLED="false"))
        for s in st.servers:
            await s.wait_ready()
        bare_channel = grpc.aio.insecure_channel(f"127.0.0.1:{bare_port}")
        try:
            health = health_stub(a.channel)
            check = health_pb2.HealthCheckRequest()
            stub_a, stub_b, stub_c = (cache_pb2_grpc.CacheQueryServiceStub(s.channel) for s in (a, b, c))
            echo_a: RawCall = a.channel.unary_unary(f"/{ECHO_SERVICE}/{ECHO_METHOD}")
            echo_bare: RawCall = bare_channel.unary_unary(f"/{ECHO_SERVICE}/{ECHO_METHOD}")
            echo_ids: RawCall = bare_channel.unary_unary(f"/{ECHO_SERVICE}/{ECHO_IDS_METHOD}")
            request = cache_pb2.PriceStatsRequest(city=HOT_CITY)
            body = request.SerializeToString()
            fast: dict[str, Call] = {
                "Health/Check (baseline)": lambda: health.Check(check),
                "echo, runtime interceptor": lambda: echo_a(body),
                "echo, no interceptor": lambda: echo_bare(body),
                "echo, no interceptor, ids echoed": lambda: echo_ids(body),
                "PriceStats near-cache hit": lambda: stub_a.PriceStats(request),
                "PriceStats Redis hit": lambda: stub_b.PriceStats(request),
            }
            miss_name = "PriceStats miss (cache off)"
            pids = {name: (b if "Redis" in name else a).proc.pid for name in fast} | {miss_name: c.proc.pid}
            for _ in range(30):  # connect, fill the cache, admit the key to A's near cache
                warm: list[Call] = [*fast.values(), lambda: stub_c.PriceStats(request)]
                for call in warm:
                    await call()
            sources = [(await stub.PriceStats(request)).cache.source for stub in (stub_a, stub_b, stub_c)]
            assert sources == [cache_pb2.CACHE_SOURCE_NEAR, cache_pb2.CACHE_SOURCE_REDIS, cache_pb2.CACHE_SOURCE_DATABASE], (
                sources
            )
            if args.profile:
                await profile(
                    a.proc.pid,
                    args.profile,
                    {"near hit": fast["PriceStats near-cache hit"], "health": fast["Health/Check (baseline)"]},
                )
                if args.profile_only:
                    return 0

            print(f"measuring ({load_note()}) ...", flush=True)
            seq = {name: Figures() for name in [*fast, miss_name]}
            for r in range(args.rounds):
                await interleaved(fast, seq, args.calls // args.rounds, args.block, servers=pids)
                await interleaved(
                    {miss_name: lambda: stub_c.PriceStats(request)},
                    seq,
                    args.miss_calls // args.rounds,
                    max(1, args.miss_calls // args.rounds),
                    servers=pids,
                )
                print(f"sequential round {r + 1}/{args.rounds} done", flush=True)
            parallel = {
                "Health/Check (baseline)": fast["Health/Check (baseline)"],
                "PriceStats near-cache hit": fast["PriceStats near-cache hit"],
            }
            rates: dict[int, dict[str, Figures]] = {}
            for conc in (1, 16, 64):
                rates[conc] = {name: Figures() for name in parallel}
                await interleaved(
                    parallel, rates[conc], args.throughput_calls, max(conc * 10, 160), concurrency=conc, servers=pids
                )
            still_near = (await stub_a.PriceStats(request)).cache.source == cache_pb2.CACHE_SOURCE_NEAR
            print(f"done ({load_note()}); A still answers from the near cache: {still_near}")
        finally:
            await bare_channel.close()

    base = seq["Health/Check (baseline)"]
    print(
        f"\n{'RPC (sequential, one caller)':<34} {'p50':>12} {'p99':>12} {'p50 / base':>11} {'p99 / base':>11}"
        f" {'server CPU/call':>16}"
    )
    for name, f in seq.items():
        print(
            f"{name:<34} {fmt(f.p50)} {fmt(f.p99)} {f.p50 / base.p50:10.2f}x {f.p99 / base.p99:10.2f}x {fmt(f.cpu_per_call):>16}"
        )
    print(f"(calls per RPC: {len(base.latencies)}, miss: {len(seq[miss_name].latencies)}; {args.rows:,} rows)")
    print(f"\n{'throughput (one channel)':<34} {'1 caller':>12} {'16 callers':>12} {'64 callers':>12}")
    for name in parallel:
        print(f"{name:<34} " + " ".join(f"{rates[c][name].rps:8.0f} rps" for c in rates))
    for name in parallel:
        print(
            f"{'  server CPU/call, ' + name.split(' (')[0].replace('PriceStats ', ''):<34} "
            + " ".join(f"{fmt(rates[c][name].busy_cpu_per_call[0])}" for c in rates)
        )
    print(
        f"{'near hit / Health/Check':<34} "
        + " ".join(f"{rates[c]['PriceStats near-cache hit'].rps / rates[c]['Health/Check (baseline)'].rps:11.2f}x" for c in rates)
    )

    near, echo, bare = seq["PriceStats near-cache hit"], seq["echo, runtime interceptor"], seq["echo, no interceptor"]

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    p50_ratio, p99_ratio = near.p50 / base.p50, near.p99 / base.p99
    added = echo.p50 / bare.p50 - 1
    tp64 = rates[64]["PriceStats near-cache hit"].rps / rates[64]["Health/Check (baseline)"].rps
    print()
    print(f"near hit / Health/Check, p50:       {p50_ratio:6.2f}x  (goal <= 1.2x)   {verdict(p50_ratio <= 1.2)}")
    print(f"near hit / Health/Check, p99:       {p99_ratio:6.2f}x  (goal <= 1.5x)   {verdict(p99_ratio <= 1.5)}")
    print(
        f"interceptor's share of echo p50:    {added:+6.1%}   (goal <= +15%)  {verdict(added <= 0.15)}"
        f"   (p99 {echo.p99 / bare.p99 - 1:+.1%})"
    )
    ids = seq["echo, no interceptor, ids echoed"]
    print(
        f"  of which echoing the ids (trailers):  {ids.p50 / bare.p50 - 1:+6.1%}"
        f" (server CPU {fmt(ids.cpu_per_call - bare.cpu_per_call).strip()} of"
        f" {fmt(echo.cpu_per_call - bare.cpu_per_call).strip()} per call)"
    )
    print(f"near hit / Health/Check, 64 callers: {tp64:5.2f}x  (goal >= 0.8x)   {verdict(tp64 >= 0.8)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="listings in the private PostgreSQL")
    parser.add_argument("--calls", type=int, default=4000, help="sequential calls per fast RPC (split over rounds)")
    parser.add_argument("--miss-calls", type=int, default=100, help="sequential calls of the miss")
    parser.add_argument("--rounds", type=int, default=4, help="sequential measurement rounds")
    parser.add_argument("--block", type=int, default=50, help="calls per RPC before the next one takes its turn")
    parser.add_argument("--throughput-calls", type=int, default=6400, help="calls per RPC and concurrency level")
    parser.add_argument("--profile", type=float, default=0, metavar="SECONDS", help="py-spy server A first")
    parser.add_argument("--profile-only", action="store_true", help="stop after the profile")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bare-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.bare_port)
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
