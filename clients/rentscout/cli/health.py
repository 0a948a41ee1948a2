"""`rentscout health`: gRPC health check for container probes and scripts (exit 0 when SERVING)."""

from __future__ import annotations

import argparse
import sys

import grpc

from rentscout.wire.health import check_health


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("health", help="check a server's gRPC health (exit 0 when SERVING)")
    p.add_argument("--target", default="127.0.0.1:50051", help="host:port")
    p.add_argument("--service", default="", help="service name; empty checks the whole server")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--tls-ca", help="PEM CA to verify a TLS server")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        status = check_health(args.target, args.service, args.timeout, args.tls_ca)
    except grpc.RpcError as exc:
        print(f"{args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 3
    print(f"{args.target} {args.service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1
