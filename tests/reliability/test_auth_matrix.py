"""Every RPC of every service with no token, a bad token, a reader token and an admin token: the
allowed set is exactly the documented one. Tokens and DSN passwords never reach the logs."""

from __future__ import annotations

import grpc
import pytest

from harness.rpcs import ADMIN_ONLY, all_rpcs
from harness.secrets import ADMIN_TOKEN, DB_PASSWORD, READER_TOKEN
from harness.servers import ServerProcess

DENIED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def _code(server: ServerProcess, rpc, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(server.target) as channel:
        try:
            rpc.invoke(channel, rpc.request_class()(), metadata, timeout=30)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()


@pytest.mark.parametrize("rpc", all_rpcs(), ids=lambda r: r.path)
def test_role_matrix(all_server: ServerProcess, rpc) -> None:
    assert _code(all_server, rpc, None) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(all_server, rpc, "not-a-real-token") == grpc.StatusCode.UNAUTHENTICATED
    reader = _code(all_server, rpc, READER_TOKEN)
    admin = _code(all_server, rpc, ADMIN_TOKEN)
    if rpc.path in ADMIN_ONLY:
        assert reader == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert reader not in DENIED
    assert admin not in DENIED
    # an empty request is either served or refused as the caller's mistake, never a server fault
    assert admin not in {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED}


def test_secrets_never_logged(all_server: ServerProcess) -> None:
    for rpc in all_rpcs()[:3]:
        _code(all_server, rpc, ADMIN_TOKEN)
        _code(all_server, rpc, READER_TOKEN)
        _code(all_server, rpc, "wrong-token-xyz1")
    text = all_server.log_text()
    assert "rpc " in text  # the access log is there to be checked
    for secret in (ADMIN_TOKEN, READER_TOKEN, "wrong-token-xyz1", DB_PASSWORD):
        assert secret not in text
