"""grpc.aio channels the way the SDK wants them: client-side round-robin, no built-in retries,
keepalive, bounded messages, optional TLS / mutual TLS.

Targets: `host:port`, or `dns:///host:port` to resolve every address of a name. On Kubernetes,
point clients at the *headless* Service (`clusterIP: None`), e.g.
`dns:///rentscout-export-headless.rentscout.svc.cluster.local:50051` (see k8s/README.md):
gRPC keeps one long-lived HTTP/2 connection per address, so behind a normal ClusterIP Service
(L4, one virtual IP) a client would pin all its calls to one pod; with the headless Service's
per-pod A records and `round_robin`, calls spread over every pod, and the servers'
`max_connection_age` makes clients re-resolve and pick up new pods.

gRPC's own retries are disabled (`grpc.enable_retries=0`): the SDK retries (one retry layer, so a
failing call is never retried attempts x attempts times).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from rentscout.wire.version import VERSION

DEFAULT_MAX_RECEIVE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TlsConfig:
    """Server verification (`ca_file`, else the system roots) and, for mTLS, a client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Expected server name when it differs from the target's host (e.g. connecting by IP).
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("TLS client certificate and key must be given together (mutual TLS)")

        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file), private_key=read(self.key_file), certificate_chain=read(self.cert_file)
        )


@dataclass(frozen=True)
class ChannelConfig:
    load_balancing: str = "round_robin"
    keepalive_time: float = 30.0  # the servers accept pings every 5 s or more
    keepalive_timeout: float = 10.0
    keepalive_without_calls: bool = True
    max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
    # gRPC backs off reconnecting up to 120 s by default; a breaker probing after its recovery
    # timeout would then fail on the channel's backoff rather than on the server. Keep it short.
    initial_reconnect_backoff: float = 0.5
    max_reconnect_backoff: float = 5.0
    tls: TlsConfig | None = None
    extra_options: tuple[tuple[str, str | int], ...] = field(default=())

    def options(self) -> list[tuple[str, str | int]]:
        service_config: dict[str, list[dict[str, dict[str, str]]]] = {"loadBalancingConfig": [{self.load_balancing: {}}]}
        opts: list[tuple[str, str | int]] = [
            ("grpc.enable_retries", 0),
            ("grpc.service_config", json.dumps(service_config)),
            ("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_without_calls)),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.initial_reconnect_backoff_ms", int(self.initial_reconnect_backoff * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(self.initial_reconnect_backoff * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(self.max_reconnect_backoff * 1000)),
            ("grpc.primary_user_agent", f"rentscout-sdk/{VERSION}"),
        ]
        if self.tls and self.tls.server_name:
            opts.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return opts + list(self.extra_options)


def create_channel(target: str, config: ChannelConfig | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel bound to the running event loop."""
    config = config or ChannelConfig()
    if config.tls is not None:
        return grpc.aio.secure_channel(target, config.tls.credentials(), options=config.options())
    return grpc.aio.insecure_channel(target, options=config.options())
