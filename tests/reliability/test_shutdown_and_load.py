"""SIGTERM with exports in flight, and a bounded mixed load from a separate process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.servers import ServerProcess
from rentscout.devstack.instances import PostgresInstance
from rentscout.export.v1 import export_pb2, export_pb2_grpc

LOADGEN = Path(__file__).resolve().parents[1] / "harness" / "loadgen.py"


def _connections(pg: PostgresInstance, app: str) -> int:
    return int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'").strip())


def test_sigterm_with_exports_in_flight(service_env: dict[str, str], pg_instance: PostgresInstance,
                                        tmp_path: Path) -> None:
    env = {**service_env, "RENTSCOUT_SHUTDOWN_GRACE_SECONDS": "2"}
    doomed = ServerProcess("export", env, tmp_path / "a").start()
    spare = ServerProcess("export", env, tmp_path / "b").start()
    request = export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_JSONL, rows_per_chunk=100)
    received: list[bytes] = []
    token, code = "", None
    try:
        with grpc.insecure_channel(doomed.target) as ch, grpc.insecure_channel(doomed.target) as probe_ch:
            watch = health_pb2_grpc.HealthStub(probe_ch).Watch(
                health_pb2.HealthCheckRequest(service="rentscout.export.v1.ExportService"), timeout=30)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            flipped: list[float] = []

            def follow() -> None:
                try:
                    for reply in watch:
                        if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                            flipped.append(time.monotonic())
                except grpc.RpcError:
                    pass  # the watch ends when the server goes away

            watcher = threading.Thread(target=follow)
            watcher.start()
            stream = export_pb2_grpc.ExportServiceStub(ch).ExportProperties(request, timeout=60)
            try:
                for i, message in enumerate(stream):
                    if message.HasField("chunk"):
                        received.append(bytes(message.chunk.data))
                        token = message.chunk.resume_token
                    if i == 3:
                        sent_at = time.monotonic()
                        doomed.signal()
                    if i >= 3:
                        time.sleep(0.05)  # a slow consumer: it cannot finish within the 2 s grace
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
            watcher.join(10)
            assert flipped and flipped[0] - sent_at < 1.0, "health did not flip to NOT_SERVING at once"
        assert doomed.proc.wait(30) == 0
        assert code != grpc.StatusCode.OK, "a slow 20k-row stream cannot finish within the grace period"
        # the client continues elsewhere with the last resume token it received
        with grpc.insecure_channel(spare.target) as ch:
            rest = export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_JSONL, rows_per_chunk=100,
                                                      resume_token=token)
            for message in export_pb2_grpc.ExportServiceStub(ch).ExportProperties(rest, timeout=60):
                if message.HasField("chunk"):
                    received.append(bytes(message.chunk.data))
    finally:
        doomed.stop()
        spare.stop()
    ids = [json.loads(line)["id"] for line in b"".join(received).splitlines()]
    expected = [int(x) for x in pg_instance.psql("SELECT id FROM properties ORDER BY id").split()]
    assert ids == expected  # every row exactly once, in order
    assert hashlib.sha256(b"".join(received)).hexdigest()  # bytes are whole lines
    assert _connections(pg_instance, "rentscout-export") == 0  # nothing leaked by either process


def test_bounded_mixed_load(service_env: dict[str, str], tmp_path: Path) -> None:
    env = {**service_env, "RENTSCOUT_EXPORT_MAX_CONCURRENT": "32"}
    server = ServerProcess("all", env, tmp_path).start()
    samples: list[float] = []
    try:
        proc = psutil.Process(server.proc.pid)
        load = subprocess.Popen([sys.executable, str(LOADGEN), "--target", server.target, "--seconds", "20",
                                 "--clients", "32"], stdout=subprocess.PIPE, text=True)
        while load.poll() is None:
            samples.append(proc.memory_info().rss / 2**20)
            time.sleep(0.5)
        out, _ = load.communicate(timeout=60)
        result = json.loads(out)
        assert server.proc.poll() is None
    finally:
        server.stop()
    print(f"\nload: {result['requests']} requests, {result['rps']} rps, p50 {result['p50_ms']} ms, "
          f"p99 {result['p99_ms']} ms, errors {result['errors']}, rows exported {result['rows_exported']}, "
          f"RSS {samples[len(samples) // 4]:.0f} -> {samples[-1]:.0f} MiB (max {max(samples):.0f})")
    assert load.returncode == 0
    assert result["errors"] == 0, result["codes"]
    assert result["requests"] > 1000 and result["rows_exported"] > 0
    warm = samples[len(samples) // 4]  # after warm-up (caches filled, pools open)
    assert samples[-1] - warm < 40, f"memory grew from {warm:.0f} to {samples[-1]:.0f} MiB"
