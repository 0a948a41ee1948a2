"""Requests that cannot be decoded get INVALID_ARGUMENT naming the request type, on every RPC of every
service the servers host (health and reflection included): raw bytes through a generic channel call."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor as d
from grpc_health.v1 import health_pb2

from harness.polling import wait_until
from harness.rpcs import all_rpcs
from harness.secrets import ADMIN_TOKEN
from harness.servers import ServerProcess

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
CORRUPT = b"\xff\xff\xff\xff"  # a field tag whose varint never ends


def bad_utf8(descriptor: d.Descriptor) -> bytes | None:
    """A message whose first string field holds bytes that are not UTF-8 (None: no string field)."""
    for field in descriptor.fields:
        if field.type == d.FieldDescriptor.TYPE_STRING:
            return bytes([(field.number << 3) | 2, 2]) + b"\xc3\x28"
    return None


def call_raw(
    channel: grpc.Channel, path: str, payload: bytes, *, server_streaming: bool, client_streaming: bool = False
) -> grpc.RpcError:
    """Send `payload` as the request bytes (identity serializers) and return the error."""
    try:
        if client_streaming:
            call: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
                path, request_serializer=None, response_deserializer=None
            )
            list(call(iter([payload]), metadata=ADMIN, timeout=10))
        elif server_streaming:
            stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                path, request_serializer=None, response_deserializer=None
            )
            list(stream(payload, metadata=ADMIN, timeout=10))
        else:
            unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                path, request_serializer=None, response_deserializer=None
            )
            unary(payload, metadata=ADMIN, timeout=10)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{path} accepted undecodable bytes {payload!r}")


def assert_invalid(err: grpc.RpcError, type_name: str) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    details = err.details() or ""
    assert details.startswith("request: ") and type_name in details, details
    assert "DecodeError" not in details and "<class" not in details and "Traceback" not in details


@pytest.mark.parametrize("rpc", all_rpcs(), ids=lambda r: r.path)
def test_undecodable_bytes_to_every_rpc(all_server: ServerProcess, rpc) -> None:
    payloads = [CORRUPT]
    utf8 = bad_utf8(rpc.method.input_type)
    if utf8 is not None:
        payloads.append(utf8)
    with grpc.insecure_channel(all_server.target) as channel:
        for payload in payloads:
            assert_invalid(call_raw(channel, rpc.path, payload, server_streaming=rpc.streaming), rpc.method.input_type.full_name)
        if utf8 is not None:
            err = call_raw(channel, rpc.path, utf8, server_streaming=rpc.streaming)
            assert "UTF-8" in (err.details() or "")  # the reason, in protobuf's words
    assert all_server.process.poll() is None


def test_undecodable_bytes_to_health_and_reflection(all_server: ServerProcess) -> None:
    with grpc.insecure_channel(all_server.target) as channel:
        for path, streaming in (("/grpc.health.v1.Health/Check", False), ("/grpc.health.v1.Health/Watch", True)):
            # types-grpcio-health-checking types DESCRIPTOR as upb's Descriptor: the same runtime class
            for payload in (CORRUPT, bad_utf8(health_pb2.HealthCheckRequest.DESCRIPTOR)):  # type: ignore[arg-type]
                assert payload is not None
                assert_invalid(call_raw(channel, path, payload, server_streaming=streaming), "grpc.health.v1.HealthCheckRequest")
        for version in ("v1", "v1alpha"):
            err = call_raw(
                channel,
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                CORRUPT,
                server_streaming=True,
                client_streaming=True,
            )
            assert_invalid(err, "ServerReflectionRequest")
        # and the server still answers well-formed calls
        check: grpc.UnaryUnaryMultiCallable[bytes, health_pb2.HealthCheckResponse] = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=None,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        reply = check(b"", timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_an_undecodable_request_is_logged_as_invalid_argument(all_server: ServerProcess) -> None:
    path = "/rentscout.cache.v1.CacheQueryService/Cities"
    with grpc.insecure_channel(all_server.target) as channel:
        cities: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            path, request_serializer=None, response_deserializer=None
        )
        try:
            cities(CORRUPT, metadata=(*ADMIN, ("x-correlation-id", "undecodable-1")), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT

    def logged() -> bool:
        return any(
            r.get("correlation.id") == "undecodable-1" and r.get("rpc.grpc.status_code") == "INVALID_ARGUMENT"
            for r in all_server.log_records()
        )

    assert wait_until(logged, 10), "the access log has the call with its status"
