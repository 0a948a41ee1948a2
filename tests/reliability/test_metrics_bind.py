"""/metrics listens where the configuration says: on the gRPC server's address by default, or on
RENTSCOUT_METRICS_HOST; never on every interface behind the operator's back."""

from __future__ import annotations

from pathlib import Path

import psutil

from harness.servers import ServerProcess


def _ipv4(ip: str) -> str:
    """gRPC listens on dual-stack sockets: '::' is every interface, '::ffff:a.b.c.d' an IPv4 address."""
    return "0.0.0.0" if ip == "::" else ip.removeprefix("::ffff:")


def listening(server: ServerProcess, port: int) -> set[str]:
    assert server.proc is not None
    return {
        _ipv4(c.laddr.ip)
        for c in psutil.Process(server.proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_metrics_follow_the_grpc_host(service_env: dict[str, str], tmp_path: Path) -> None:
    server = ServerProcess("analyzer", service_env, tmp_path).start()  # --host 127.0.0.1
    try:
        assert listening(server, server.port) == {"127.0.0.1"}
        assert listening(server, server.metrics_port) == {"127.0.0.1"}
    finally:
        server.stop()


def test_metrics_host_setting_is_honoured(service_env: dict[str, str], tmp_path: Path) -> None:
    env = {**service_env, "RENTSCOUT_ALLOW_INSECURE": "true", "RENTSCOUT_METRICS_HOST": "127.0.0.1"}
    server = ServerProcess("analyzer", env, tmp_path, extra_args=["--host", "0.0.0.0"]).start()
    try:
        assert listening(server, server.port) == {"0.0.0.0"}  # gRPC everywhere, as asked
        assert listening(server, server.metrics_port) == {"127.0.0.1"}  # metrics only where configured
    finally:
        server.stop()
