"""What two of the interceptor's per-call steps cost, in-process: the RPC metrics update (in-flight up and
down, counter, histogram) and the access line (one ECS document through logging into the server's
LineHandler, on an event loop, written to a sink): in all, and the part on the response's path (`emit`
only schedules the line). Best of several repeats, in microseconds per call.

Compare with the server CPU per near-cache hit that bench/runtime_bench.py prints (hundreds of us): both
steps together are a few us, which is why they use prometheus_client and logging as they are
(docs/architecture.md, "Fast paths measured").

    .venv/bin/python bench/interceptor_parts_bench.py [--calls 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import time
import timeit


class Sink(io.StringIO):
    """A text stream that discards what it is given (a StringIO, so typed as the TextIO the handler takes)."""

    def write(self, s: str) -> int:
        return len(s)


def metrics_update_us(calls: int, repeat: int) -> float:
    from rentscout.runtime import metrics

    counts = metrics.RPCS.method("rentscout.bench.v1.Parts", "Call")
    outcome = counts.outcome("OK")

    def one() -> None:
        counts.in_flight.inc()
        counts.in_flight.dec()
        outcome.observe(0.0007)

    return min(timeit.repeat(one, number=calls, repeat=repeat)) / calls * 1e6


def access_line_us(calls: int, repeat: int) -> tuple[float, float]:
    from rentscout.runtime import logs

    logs.configure("interceptor-parts-bench", "0")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logs.LineHandler):
            handler.setStream(Sink())
    line = logs.access_line("/rentscout.cache.v1.CacheQueryService/PriceStats", "OK")
    fields = {"cache.hit": True, "cache.key": "ns:v1.2:price_stats:0123456789abcdef", "cache.source": "near"}
    ids = ("0f2a6c1e-4b7d-4c39-9d7e-1a2b3c4d5e6f", "a" * 32, "b" * 16)

    async def run() -> tuple[float, float]:
        best = scheduling = float("inf")
        for _ in range(repeat):
            started, emitting = time.perf_counter(), 0.0
            for i in range(calls):
                t0 = time.perf_counter()
                line.emit(0.0007, "ipv4:127.0.0.1:50000", "reader", fields, ids)
                emitting += time.perf_counter() - t0
                if i % 8 == 7:
                    await asyncio.sleep(0)  # the lines are logged, and written, once per loop iteration
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            best = min(best, (time.perf_counter() - started) / calls)
            scheduling = min(scheduling, emitting / calls)
        return best * 1e6, scheduling * 1e6

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"metrics update per call:  {metrics_update_us(args.calls * 10, args.repeat):6.2f} us")
    total, on_path = access_line_us(args.calls, args.repeat)
    print(f"access line per call:     {total:6.2f} us, of which on the response's path {on_path:.2f} us")


if __name__ == "__main__":
    main()
