"""The cache on a Redis Cluster: a one-node cluster owning all 16384 slots still rejects commands and
scripts whose keys span slots (CROSSSLOT), so this proves the key layout and the operations are
Cluster-compatible, and that SCAN, pub/sub and stats work through the cluster client. Then a real
3-master cluster, a slot migrated while two replicas run, and committed changes fresh on both."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis import Redis
from redis import exceptions as redis_exceptions
from redis.crc import key_slot

from harness.cache_server import OwnRows, cache_server, settings, unique_city
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
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--cluster-port",
            str(free_port()),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(tmp_path / "nodes.conf"),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
        stats = await eventually(
            lambda: a.stub.GetCacheStats(cache_pb2.GetCacheStatsRequest()), lambda st: st.misses >= 2 and st.hits >= 1
        )
        assert stats.breaker_state == cache_pb2.BREAKER_STATE_CLOSED and stats.redis_keys > 0
        assert stats.misses >= 2 and stats.hits >= 1
        assert a.breaker_opened == 0 and b.breaker_opened == 0


@pytest.fixture
def three_masters(tmp_path: Path) -> Iterator[list[tuple[int, int]]]:
    """A real 3-master cluster (slots split in three), as (port, cluster bus port) per node."""
    try:
        binary = redis_server()
    except MissingBinary as exc:
        require(False, str(exc))
    nodes = [(free_port(), free_port()) for _ in range(3)]
    procs = [
        subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--cluster-port",
                str(bus),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(tmp_path / f"nodes-{port}.conf"),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port, bus in nodes
    ]
    try:
        clients = [Redis(host="127.0.0.1", port=port) for port, _ in nodes]
        end = time.monotonic() + 15
        for client, proc in zip(clients, procs, strict=True):
            while True:
                try:
                    client.ping()
                    break
                except (redis_exceptions.ConnectionError, redis_exceptions.BusyLoadingError):
                    if time.monotonic() > end or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
        for client, (lo, hi) in zip(clients, ((0, 5460), (5461, 10922), (10923, 16383)), strict=True):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", str(lo), str(hi))
        for port, bus in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", str(port), str(bus))
        while not all(
            "cluster_state:ok" in c.execute_command("CLUSTER", "INFO").decode()
            and c.execute_command("CLUSTER", "NODES").decode().count("master") == 3
            for c in clients
        ):
            if time.monotonic() > end + 30:
                raise TimeoutError("the 3-master cluster did not form")
            time.sleep(0.05)
        for client in clients:
            client.close()
        yield nodes
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def move_slot(nodes: list[tuple[int, int]], key: str) -> tuple[int, int]:
    """Migrate the slot of `key`, with its keys, to another master (as redis-cli --cluster reshard does);
    returns (from port, to port)."""
    slot = key_slot(key.encode())
    clients = {port: Redis(host="127.0.0.1", port=port) for port, _ in nodes}
    try:
        ids = {port: c.execute_command("CLUSTER", "MYID").decode() for port, c in clients.items()}
        owner = next(p for p, c in clients.items() if int(c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) > 0)
        target = next(p for p in clients if p != owner)
        src, dst = clients[owner], clients[target]
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[owner])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for c in (dst, src, *(c for p, c in clients.items() if p not in (owner, target))):
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        return owner, target
    finally:
        for c in clients.values():
            c.close()


async def test_freshness_on_a_three_master_cluster_with_a_slot_moved(
    service_env: dict[str, str], three_masters: list[tuple[int, int]], own_rows: OwnRows
) -> None:
    port = three_masters[0][0]
    env = {**service_env, "RENTSCOUT_REDIS_URL": f"redis://127.0.0.1:{port}/0", "RENTSCOUT_REDIS_CLUSTER": "true"}
    near_cfg = settings(near_min_accesses=1, changes_max_lag_ms=300, changes_poll_ms=50)
    far_cfg = replace(near_cfg, near_max_entries=0)
    city = unique_city("Slotsk")
    pid = await own_rows.add(city, 10_000)
    request = cache_pb2.PriceStatsRequest(city=city)
    async with cache_server(env, near_cfg) as near, cache_server(env, far_cfg) as far:
        replicas = (near, far)
        for price in (20_000, 30_000):
            for srv in replicas:
                for _ in range(3):
                    await srv.stub.PriceStats(request)
            key = (await eventually(lambda: far.stub.PriceStats(request), lambda r: r.cache.source == REDIS)).cache
            assert key.source == REDIS
            moved = move_slot(three_masters, key.key)  # while both replicas run
            assert moved[0] != moved[1]
            moved_hit = await eventually(lambda: far.stub.PriceStats(request), lambda r: r.cache.source == REDIS)
            assert moved_hit.cache.source == REDIS  # found where it moved (MOVED)
            await own_rows.conn.execute("UPDATE properties SET price = $2 WHERE id = $1", pid, price)
            await asyncio.sleep(0.32)  # the change-log bound
            for srv in replicas:
                assert [(await srv.stub.PriceStats(request)).max for _ in range(3)] == [price] * 3
        assert near.breaker_opened == 0 and far.breaker_opened == 0
