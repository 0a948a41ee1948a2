"""Container probe for a TLS server: `python -m rentscout.runtime.probe --port 50051 [--service NAME]`.

Kubernetes' native gRPC probes speak plaintext only, so pods serving TLS (RENTSCOUT_TLS_CERT_FILE) are probed
with this exec command instead. It dials 127.0.0.1 and verifies the server's certificate against the CA of the
mounted certificate Secret, for the name the certificate carries (`--server-name`), then calls
grpc.health.v1.Health/Check. Exit 0 when SERVING, 1 otherwise. It imports only grpc (not the CLI), so a probe
costs a fraction of `rentscout health`.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(
    port: int, service: str, ca_file: str, server_name: str, timeout: float, cert_file: str = "", key_file: str = ""
) -> str:
    """The serving status name of `service` on 127.0.0.1:`port`, over TLS verified against `ca_file`."""
    with open(ca_file, "rb") as f:
        ca = f.read()
    key = cert = None
    if cert_file and key_file:  # mTLS servers (RENTSCOUT_TLS_CLIENT_CA_FILE) want a client certificate too
        with open(key_file, "rb") as f:
            key = f.read()
        with open(cert_file, "rb") as f:
            cert = f.read()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    options = [("grpc.ssl_target_name_override", server_name), ("grpc.default_authority", server_name)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)  # type: ignore[attr-defined]
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--service", default="", help="service name; empty checks the whole server (liveness)")
    p.add_argument("--ca", default="/etc/rentscout/tls/ca.crt", help="CA of the server certificate")
    p.add_argument("--server-name", default="localhost", help="a DNS name of the server certificate")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--client-cert", default="", help="client certificate for an mTLS server")
    p.add_argument("--client-key", default="")
    args = p.parse_args(argv)
    try:
        status = check(args.port, args.service, args.ca, args.server_name, args.timeout, args.client_cert, args.client_key)
    except (grpc.RpcError, OSError) as exc:
        detail = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.RpcError) else str(exc)
        print(f"127.0.0.1:{args.port} {args.service or '(server)'}: {detail}", file=sys.stderr)
        return 1
    print(f"127.0.0.1:{args.port} {args.service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
