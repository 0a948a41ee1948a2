"""The runtime interceptor and servicers' input checks, in memory with grpcio-testing: no server
process, no sockets, no database (every call here is answered before a query could be sent)."""

from __future__ import annotations

import grpc
import pytest

from harness import probe_service
from harness.inmemory import InMemoryServer
from rentscout.cache.v1 import cache_pb2
from rentscout.export.v1 import export_pb2
from rentscout.runtime.config import RuntimeSettings, load
from rentscout.runtime.resources import Resources
from rentscout.wire.badrequest import bad_request_violations
from rentscout.wire.metadata import CORRELATION_HEADER

READER, ADMIN = "reader-token-1", "admin-token-1"
STATS = "GetExportStatistics"


@pytest.fixture
def resources() -> Resources:
    # never started: a call that reached the database would fail, not hang
    return Resources(load(RuntimeSettings, {"RENTSCOUT_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}), "unit")


def probe(resources: Resources, auth: bool = False) -> InMemoryServer:
    """The probe service; without `auth` no tokens are configured (authentication disabled)."""
    return InMemoryServer(probe_service.create(resources), tokens={READER: "reader", ADMIN: "admin"} if auth else None)


def test_success_echoes_the_callers_correlation_id(resources: Resources) -> None:
    reply = probe(resources).unary(STATS, export_pb2.GetExportStatisticsRequest(), metadata=[(CORRELATION_HEADER, "cid-unit-1")])
    assert reply.code is grpc.StatusCode.OK and reply.response.exports_started == 1
    # a unary call echoes the ids in its trailers (they travel with the response and the status)
    assert (CORRELATION_HEADER, "cid-unit-1") in reply.trailing_metadata
    assert CORRELATION_HEADER not in dict(reply.initial_metadata)


def test_a_new_correlation_id_when_the_caller_sends_none(resources: Resources) -> None:
    reply = probe(resources).unary(STATS, export_pb2.GetExportStatisticsRequest())
    echoed = dict(reply.trailing_metadata)[CORRELATION_HEADER]
    assert isinstance(echoed, str) and len(echoed) == 36 and echoed.count("-") == 4


def test_bad_input_is_invalid_argument_with_every_field_violation(resources: Resources) -> None:
    reply = probe(resources).unary(STATS, export_pb2.GetExportStatisticsRequest(), metadata=[("x-test-action", "invalid")])
    assert reply.code is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_violations(reply.trailing_metadata) == [
        ("since", "must not be in the future"),
        ("since.nanos", "out of range"),
    ]


def test_an_unexpected_error_is_internal_without_its_text(resources: Resources) -> None:
    reply = probe(resources).unary(
        STATS, export_pb2.GetExportStatisticsRequest(), metadata=[("x-test-action", "boom"), (CORRELATION_HEADER, "cid-boom")]
    )
    assert reply.code is grpc.StatusCode.INTERNAL
    assert reply.details == "internal error (correlation id cid-boom)"
    assert "secret" not in reply.details and "Traceback" not in reply.details


@pytest.mark.parametrize(
    ("token", "method", "code"),
    [
        (None, STATS, "UNAUTHENTICATED"),
        ("not-a-known-token", STATS, "UNAUTHENTICATED"),
        (READER, STATS, "OK"),
        (READER, "PlanExport", "PERMISSION_DENIED"),  # admin only
        (ADMIN, "PlanExport", "OK"),
    ],
)
def test_auth_matrix(resources: Resources, token: str | None, method: str, code: str) -> None:
    request = export_pb2.GetExportStatisticsRequest() if method == STATS else export_pb2.PlanExportRequest()
    metadata = [("authorization", f"Bearer {token}")] if token else []
    reply = probe(resources, auth=True).unary(method, request, metadata=metadata)
    assert reply.code.name == code, reply.details


def cache(resources: Resources) -> InMemoryServer:
    from rentscout.cache_service.service import create
    from rentscout.cache_service.settings import CacheSettings

    return InMemoryServer(create(resources, settings=CacheSettings(namespace="unit")))


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (cache_pb2.InvalidateRequest(), "pattern"),  # neither a pattern nor tags
        (cache_pb2.InvalidateRequest(pattern="unit:*", tags=["city:x"]), "pattern"),  # both
        (cache_pb2.InvalidateRequest(pattern="other:*"), "pattern"),  # outside the namespace
        (cache_pb2.InvalidateRequest(pattern="unit:\x00*"), "pattern"),  # control character
    ],
)
def test_cache_invalidate_input_checks(resources: Resources, request_: cache_pb2.InvalidateRequest, field: str) -> None:
    reply = cache(resources).unary("Invalidate", request_)
    assert reply.code is grpc.StatusCode.INVALID_ARGUMENT, reply.details
    assert field in [f for f, _ in bad_request_violations(reply.trailing_metadata)]


def test_cache_price_stats_needs_a_city(resources: Resources) -> None:
    reply = cache(resources).unary("PriceStats", cache_pb2.PriceStatsRequest(city=""))
    assert reply.code is grpc.StatusCode.INVALID_ARGUMENT, reply.details
    assert [f for f, _ in bad_request_violations(reply.trailing_metadata)] == ["city"]
