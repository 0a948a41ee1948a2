"""The real cache-query server process, called with the real grpcurl: a miss, then a hit, and the
correlation id and cache fields in the server's JSON log."""

from __future__ import annotations

import uuid
from pathlib import Path

from harness.grpcurl import grpcurl
from harness.servers import ServerProcess
from rentscout.cache_service.keys import FORMAT_VERSION

METHOD = "rentscout.cache.v1.CacheQueryService/PriceStats"


def test_grpcurl_sees_a_miss_then_a_hit_and_the_log_has_the_correlation_id(
    service_env: dict[str, str], grpcurl_bin: str, tmp_path: Path
) -> None:
    namespace = f"e2e{uuid.uuid4().hex[:10]}"
    server = ServerProcess("cache-query", {**service_env, "RENTSCOUT_CACHE_NAMESPACE": namespace}, tmp_path).start()
    try:
        described = grpcurl(server.target, "describe rentscout.cache.v1.CacheQueryService")
        assert "rpc PriceStats" in described.stdout, described.stderr
        replies = []
        for cid in ("e2e-cache-miss", "e2e-cache-hit"):
            out = grpcurl(
                server.target,
                METHOD,
                {"city": "Kazan", "propertyType": "PROPERTY_TYPE_APARTMENT"},
                headers={"x-correlation-id": cid},
            )
            assert out.returncode == 0, out.stderr
            replies.append(out.json())
        bad = grpcurl(server.target, METHOD, {"city": ""})
        assert bad.returncode != 0 and "InvalidArgument" in bad.stderr and "city" in bad.stderr
    finally:
        server.stop()
    miss, hit = replies
    assert int(miss["count"]) > 0 and miss["count"] == hit["count"] and miss["median"] == hit["median"]
    assert miss["cache"]["source"] == "CACHE_SOURCE_DATABASE" and not miss["cache"].get("hit", False)
    assert hit["cache"]["source"] == "CACHE_SOURCE_REDIS" and hit["cache"]["hit"] is True
    assert hit["cache"]["key"] == miss["cache"]["key"]
    assert hit["cache"]["key"].startswith(f"{namespace}:v{FORMAT_VERSION}.2:price_stats:")
    assert hit["cache"]["ttl"].endswith("s") and hit["cache"]["age"].endswith("s")
    access = {
        r["correlation.id"]: r
        for r in server.log_records()
        if r.get("event.dataset") == "rentscout.access" and r.get("rpc.method") == f"/{METHOD}"
    }
    assert access["e2e-cache-miss"]["cache.hit"] is False and access["e2e-cache-miss"]["rpc.grpc.status_code"] == "OK"
    assert access["e2e-cache-hit"]["cache.hit"] is True and access["e2e-cache-hit"]["cache.source"] == "redis"
    assert access["e2e-cache-hit"]["cache.key"] == hit["cache"]["key"]
