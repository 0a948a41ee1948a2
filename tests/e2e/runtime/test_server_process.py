"""Real `rentscout serve` processes driven with the real grpcurl binary, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.grpcurl import grpcurl
from harness.servers import ServerProcess

SERVICES = (
    "rentscout.export.v1.ExportService",
    "arrow.flight.protocol.FlightService",
    "rentscout.cache.v1.CacheQueryService",
    "rentscout.analyzer.v1.AnalyzerService",
)


def test_list_health_correlation_and_sigterm(service_env: dict[str, str], grpcurl_bin: str, tmp_path: Path) -> None:
    server = ServerProcess("all", service_env, tmp_path).start()
    try:
        listed = grpcurl(server.target, "list")
        assert listed.returncode == 0, listed.stderr
        assert set(listed.stdout.split()) == {
            *SERVICES,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        described = grpcurl(server.target, "describe rentscout.export.v1.ExportService")
        for version in ("v1", "v1alpha"):  # both reflection services describe themselves, messages included
            service = grpcurl(server.target, f"describe grpc.reflection.{version}.ServerReflection")
            assert service.returncode == 0, service.stderr
            assert (
                f"rpc ServerReflectionInfo ( stream .grpc.reflection.{version}.ServerReflectionRequest ) "
                f"returns ( stream .grpc.reflection.{version}.ServerReflectionResponse )"
            ) in service.stdout
            message = grpcurl(server.target, f"describe grpc.reflection.{version}.ServerReflectionResponse")
            assert message.returncode == 0 and "file_descriptor_response" in message.stdout, message.stderr
            # and the service itself answers over the wire (grpcurl 1.8 reflects over v1alpha, then calls v1)
            info = grpcurl(
                server.target, f"grpc.reflection.{version}.ServerReflection/ServerReflectionInfo", {"list_services": ""}
            )
            assert info.returncode == 0, info.stderr
            answered = {s["name"] for s in info.json()["list_services_response"]["service"]}
            assert {*SERVICES, f"grpc.reflection.{version}.ServerReflection"} <= answered
        assert "rpc ExportProperties" in described.stdout and "stream" in described.stdout
        assert grpcurl(server.target, "grpc.health.v1.Health/Check").json() == {"status": "SERVING"}
        for name in SERVICES:
            assert grpcurl(server.target, "grpc.health.v1.Health/Check", {"service": name}).json() == {"status": "SERVING"}
        call = grpcurl(
            server.target, "rentscout.cache.v1.CacheQueryService/Cities", {}, headers={"x-correlation-id": "abc"}, verbose=True
        )
        # a unary call echoes it in its response trailers (grpcurl -v prints them after the message)
        trailers = call.stdout.split("Response trailers received:", 1)
        assert len(trailers) == 2 and "x-correlation-id: abc" in trailers[1], call.stdout
        server.signal()
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    records = server.log_records()
    tagged = [r for r in records if r.get("correlation.id") == "abc"]
    assert any(
        r.get("event.dataset") == "rentscout.access" and r["rpc.method"] == "/rentscout.cache.v1.CacheQueryService/Cities"
        for r in tagged
    )
    messages = [r["message"] for r in records]
    assert any(m.startswith("shutting down") for m in messages) and messages[-1] == "stopped"
    assert all(r["@timestamp"].endswith("Z") and r["service.name"] == "rentscout-all" for r in records)


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    env = {**os.environ, "RENTSCOUT_DB_POOL_MAX_SIZE": "lots"}
    out = subprocess.run(
        [sys.executable, "-m", "rentscout.main", "serve", "export"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "RENTSCOUT_DB_POOL_MAX_SIZE: expected an integer" in out.stderr
