"""The cache on a Redis Cluster: a one-node cluster owning all 16384 slots still rejects commands and
scripts whose keys span slots (CROSSSLOT), so this proves the key layout and the operations are
Cluster-compatible, and that SCAN, pub/sub and stats work through the cluster client."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis import exceptions as redis_exceptions

from harness.cache_server import cache_server, settings
from harness.deps import require
from harness.polling import eventually
from rentscout.cache.v1 import cache_pb2
from rentscout.devstack.binaries import MissingBinary, redis_server
from rentscout.devstack.instances import free_port

DATABASE, REDIS, NEAR = cache_pb2.CACHE_SOURCE_DATABASE, cache_pb2.CACHE_SOURCE_REDIS, cache_pb2.CACHE_SOURCE_NEAR


@pytest.fixture
def cluster_url(tmp_path: Path) -> Iterator[str]:
    try:
        binary = redis_server()
    except MissingBinary as exc:
        require(False, str(exc))
    port = free_port()
    # the cluster bus defaults to port + 10000, which may not exist for an ephemeral port: choose it
    proc = subprocess.Popen([binary, "--port", str(port), "--cluster-port", str(free_port()), "--bind", "127.0.0.1",
                             "--cluster-enabled", "yes",
                             "--cluster-config-file", str(tmp_path / "nodes.conf"), "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Redis(host="127.0.0.1", port=port)
        end = time.monotonic() + 15
        while True:
            try:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
                break
            except (redis_exceptions.ConnectionError, redis_exceptions.BusyLoadingError):
                if time.monotonic() > end or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        while client.execute_command("CLUSTER", "INFO").decode().find("cluster_state:ok") < 0:
            time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


async def test_cache_works_on_a_redis_cluster(service_env: dict[str, str], cluster_url: str) -> None:
    env = {**service_env, "RENTSCOUT_REDIS_URL": cluster_url, "RENTSCOUT_REDIS_CLUSTER": "true"}
    cfg = settings(near_min_accesses=2, listen=False, flush_interval_seconds=0.05)
    async with cache_server(env, cfg) as a, cache_server(env, cfg) as b:
        await eventually(lambda: asyncio.sleep(0, a.engine.bus.connected and b.engine.bus.connected), bool)
        assert a.engine.bus.connected and b.engine.bus.connected
        request = cache_pb2.PriceStatsRequest(city="Kazan")
        replies = await asyncio.gather(*(s.stub.PriceStats(request) for _ in range(20) for s in (a, b)))
        assert a.database_queries["price_stats"] + b.database_queries["price_stats"] == 1
        assert len({r.count for r in replies}) == 1
        assert {(await a.stub.PriceStats(request)).cache.source for _ in range(3)} <= {REDIS, NEAR}
        assert (await b.stub.PriceStats(request)).cache.source in (REDIS, NEAR)
        assert (await b.stub.PriceStats(request)).cache.source == NEAR
        await a.stub.Cities(cache_pb2.CitiesRequest())
        assert (await a.stub.Invalidate(cache_pb2.InvalidateRequest(tags=["city:Kazan"]))).keys_deleted == 1
        # b learns it from the change log within its bound: its near entry is superseded
        after = await eventually(lambda: b.stub.PriceStats(request), lambda r: r.cache.source != NEAR)
        assert after.cache.source == DATABASE
        deleted = await a.stub.Invalidate(cache_pb2.InvalidateRequest(pattern=f"{cfg.namespace}:*"))
        assert deleted.keys_deleted == 2  # Cities and the refilled Kazan entry, found by SCAN on every node
        # counters of both replicas meet in Redis (each flushes its own)
        stats = await eventually(lambda: a.stub.GetCacheStats(cache_pb2.GetCacheStatsRequest()),
                                 lambda st: st.misses >= 2 and st.hits >= 1)
        assert stats.breaker_state == cache_pb2.BREAKER_STATE_CLOSED and stats.redis_keys > 0
        assert stats.misses >= 2 and stats.hits >= 1
        assert a.breaker_opened == 0 and b.breaker_opened == 0
