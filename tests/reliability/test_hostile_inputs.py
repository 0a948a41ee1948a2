"""Property-based hostile input: random and extreme messages for every RPC get a success or a precise
client-error status (never UNKNOWN/INTERNAL, never a traceback), the server stays up, the data stays."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.dbstate import data_fingerprint
from harness.hostile import messages
from harness.rpcs import all_rpcs
from harness.secrets import ADMIN_TOKEN
from harness.servers import ServerProcess
from rentscout.devstack.instances import PostgresInstance

CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
EXAMPLES_PER_RPC = 30
TRIED: dict[str, int] = {}


@pytest.mark.parametrize("rpc", all_rpcs(), ids=lambda r: r.path)
def test_hostile_requests(all_server: ServerProcess, pg_instance: PostgresInstance, rpc) -> None:
    before = data_fingerprint(pg_instance)
    metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)

    @settings(
        max_examples=EXAMPLES_PER_RPC,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(request=messages(rpc.method.input_type), cid=st.sampled_from(["", "x" * 500, "ok-id", "\u00e9\u00e9"]))
    def check(request, cid: str) -> None:
        TRIED[rpc.path] = TRIED.get(rpc.path, 0) + 1
        md = [*metadata, ("x-correlation-id", cid)] if cid.isascii() and cid else metadata
        with grpc.insecure_channel(all_server.target, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]) as channel:
            try:
                rpc.invoke(channel, request, md, timeout=30)
                code, details = grpc.StatusCode.OK, ""
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
        assert code in CLIENT_ERRORS, f"{rpc.path} -> {code.name}: {details[:300]}"
        assert "Traceback" not in details and 'File "' not in details
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert ":" in details  # names the field and the problem
        assert all_server.process.poll() is None, "the server died"

    check()
    assert data_fingerprint(pg_instance) == before
    # hypothesis stops early only when it has exhausted the request space (e.g. empty messages)
    assert TRIED[rpc.path] >= (EXAMPLES_PER_RPC if rpc.method.input_type.fields else 4)


RAW_EXAMPLES_PER_RPC = 25


@pytest.mark.parametrize("rpc", all_rpcs(), ids=lambda r: r.path)
def test_raw_undecodable_bytes(all_server: ServerProcess, rpc) -> None:
    """Arbitrary bytes as the request (identity serializer): decodable ones are ordinary requests, the
    rest get INVALID_ARGUMENT naming the request type; never UNKNOWN, INTERNAL or a traceback."""
    metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    type_name = rpc.method.input_type.full_name
    undecodable = [0]

    @settings(max_examples=RAW_EXAMPLES_PER_RPC, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(
        payload=st.one_of(
            st.binary(max_size=64), st.sampled_from([b"\xff" * 8, b"\x0a\x02\xc3\x28", b"\x0a\x7f", b"\x08", b"\x12\x01"])
        )
    )
    def check(payload: bytes) -> None:
        with grpc.insecure_channel(all_server.target) as channel:
            factory = channel.unary_stream if rpc.streaming else channel.unary_unary
            call: grpc.UnaryStreamMultiCallable[bytes, bytes] | grpc.UnaryUnaryMultiCallable[bytes, bytes] = factory(
                rpc.path, request_serializer=None, response_deserializer=None
            )
            try:
                result = call(payload, metadata=metadata, timeout=30)
                if rpc.streaming:
                    list(result)
                code, details = grpc.StatusCode.OK, ""
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
        assert code in CLIENT_ERRORS, f"{rpc.path} <- {payload!r}: {code.name}: {details[:300]}"
        assert "Traceback" not in details and "DecodeError" not in details and "<class" not in details
        if code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request: "):
            assert type_name in details
            undecodable[0] += 1
        assert all_server.process.poll() is None, "the server died"

    check()
    assert undecodable[0] > 0, "some of the payloads were undecodable"
