"""The cache's Redis operations: few round trips, Cluster-safe, bounded in time, behind a breaker.

Every operation is one round trip (a Lua script over keys sharing a hash tag, or a non-transactional
pipeline) bounded by min(Redis timeout, the RPC's remaining deadline). Failures and timeouts are
reported to the circuit breaker and surface as `RedisUnavailable`, which callers treat as a miss
(fail open to PostgreSQL); while the breaker is open no call waits on Redis at all. A write refused
because Redis is full (`noeviction`) is not a failure of Redis: it is counted
(`rentscout_cache_redis_full_total`) and surfaces as `RedisUnavailable` without moving the breaker, so
reads keep using what Redis holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rentscout.cache_service import metrics
from rentscout.cache_service.keys import KeySpace
from rentscout.resilience.breaker import CircuitBreaker, CircuitOpenError
from rentscout.runtime import deadline
from rentscout.runtime.errors import DeadlineExceeded

_log = logging.getLogger(__name__)
T = TypeVar("T")
REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError, TimeoutError)
_CLUSTER_CONCURRENCY = 32

# GET the entry and count the read in the key's access window, in one round trip. A Redis full under
# `noeviction` refuses the count (OOM): the read still answers, with a count of 0.
READ = """
local v = redis.call('GET', KEYS[1])
local ok, n = pcall(redis.call, 'INCR', KEYS[2])
if not ok then return {v, 0} end
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return {v, n}
"""
# Take the recompute lease unless the entry exists already (another replica just filled it); with
# ARGV[3] = '1' (a refresh of an entry known to be old) take it regardless. Also returns the key's
# read and invalidation counts, which choose the TTL.
ACQUIRE = """
local v = false
if ARGV[3] ~= '1' then v = redis.call('GET', KEYS[1]) end
local leased = 0
if not v and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then leased = 1 end
return {v, leased, redis.call('GET', KEYS[3]) or '0', redis.call('GET', KEYS[4]) or '0'}
"""
# Write the entry only while our lease is still the current one: an invalidation that landed while we
# computed deleted the lease, so a value computed from pre-change data is never stored.
STORE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
# Drop an entry and any lease on it (so an in-flight fill cannot write), and count the churn.
INVALIDATE = """
local n = redis.call('DEL', KEYS[1])
local l = redis.call('DEL', KEYS[2])
if n + l > 0 then
  redis.call('INCR', KEYS[3])
  if redis.call('PTTL', KEYS[3]) < 0 then redis.call('PEXPIRE', KEYS[3], ARGV[1]) end
end
return n
"""
# Take a tag's members and delete the set atomically: a fill that adds itself afterwards lands in a
# new set (and read the database after this invalidation started).
POP_TAG = """
local m = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return m
"""
INCR_WINDOW = """
local c = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return c
"""


class RedisUnavailable(Exception):
    """Redis failed, timed out, or the breaker is open: serve without it."""


class RedisStore:
    def __init__(
        self, client: Callable[[], Redis | RedisCluster], keys: KeySpace, breaker: CircuitBreaker, timeout: float, window_ms: int
    ) -> None:
        self._client_factory = client
        self._client: Redis | RedisCluster | None = None
        self.keys = keys
        self.breaker = breaker
        self.timeout = timeout
        self.bulk_timeout = max(2.0, 8 * timeout)  # invalidations, scans, flushes (still bounded by the deadline)
        self.window_ms = window_ms
        self._scripts: dict[str, Any] = {}
        self.last_error = ""

    @property
    def client(self) -> Redis | RedisCluster:
        if self._client is None:
            self._client = self._client_factory()
            scripts = {
                "read": READ,
                "acquire": ACQUIRE,
                "store": STORE,
                "invalidate": INVALIDATE,
                "pop_tag": POP_TAG,
                "incr_window": INCR_WINDOW,
            }
            for name, lua in scripts.items():
                self._scripts[name] = self._client.register_script(lua)
        return self._client

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    def script(self, name: str) -> Any:
        _ = self.client
        return self._scripts[name]

    async def call(self, operation: str, fn: Callable[[], Awaitable[T]], cap: float | None = None) -> T:
        """Run one Redis operation within the breaker, the Redis timeout and the RPC deadline."""
        cap = self.timeout if cap is None else cap
        budget = deadline.remaining(cap)  # DeadlineExceeded is the caller's, not Redis' fault
        assert budget is not None
        try:
            permit = self.breaker.acquire()
        except CircuitOpenError:
            metrics.REDIS_BYPASSED.labels("breaker_open").inc()
            raise RedisUnavailable("the Redis circuit breaker is open") from None
        try:
            async with asyncio.timeout(budget):
                result = await fn()
        except redis.exceptions.OutOfMemoryError:
            self.breaker.release(permit)  # Redis answers: it is full, not down
            metrics.REDIS_FULL.labels(operation).inc()
            raise RedisUnavailable(f"redis {operation} refused: out of memory") from None
        except REDIS_ERRORS as exc:
            if isinstance(exc, TimeoutError) and budget < cap:
                # the caller's deadline cut Redis short: neither its failure nor a success
                self.breaker.release(permit)
                raise DeadlineExceeded("the deadline expired during a cache operation") from None
            self.last_error = f"{operation}: {type(exc).__name__}: {exc}"[:300]
            self.breaker.on_error(permit, exc)
            metrics.REDIS_ERRORS.labels(operation).inc()
            _log.debug(
                "redis %s failed: %s",
                operation,
                exc,
                extra={"fields": {"error.type": type(exc).__name__, "cache.operation": operation}},
            )
            raise RedisUnavailable(f"redis {operation} failed: {type(exc).__name__}") from exc
        except BaseException:
            self.breaker.release(permit)  # cancelled, or not Redis' fault
            raise
        self.breaker.on_success(permit)
        return result

    # -- the read path ------------------------------------------------------------------------

    async def read(self, key: str) -> tuple[bytes | None, int]:
        """(value or None, reads of the key in the window including this one)."""
        script = self.script("read")
        value, count = await self.call("read", lambda: script(keys=[key, self.keys.accesses(key)], args=[self.window_ms]))
        return value, int(count)

    async def peek(self, key: str) -> tuple[bytes | None, bool]:
        """(value or None, whether a lease on the key exists): what a waiting replica polls."""

        async def run() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.exists(self.keys.lease(key))
                return await pipe.execute()

        value, lease = await self.call("peek", run)
        return value, bool(lease)

    async def acquire(
        self, key: str, token: str, tags: Sequence[str], lease_ms: int, tag_ttl_s: int, force: bool = False
    ) -> tuple[bytes | None, bool, int, int]:
        """Try to take the recompute lease and register the key under its tags, before any database read.

        Returns (the entry if it exists now, lease taken, reads in window, invalidations in window).
        """
        script = self.script("acquire")
        keys = [key, self.keys.lease(key), self.keys.accesses(key), self.keys.churn(key)]
        args = [token, lease_ms, "1" if force else "0"]

        def tag_commands(pipe: Any) -> None:
            for tag in tags:
                pipe.sadd(self.keys.tag(tag), key)
                pipe.expire(self.keys.tag(tag), tag_ttl_s)

        async def run() -> list[Any]:
            if self.is_cluster:  # the tag sets live on other slots: send both at once

                async def register() -> None:
                    async with self.client.pipeline(transaction=False) as pipe:
                        tag_commands(pipe)
                        await pipe.execute()

                result, _ = await asyncio.gather(script(keys=keys, args=args), register())
                return list(result)
            async with self.client.pipeline(transaction=False) as pipe:
                await script(keys=keys, args=args, client=pipe)
                tag_commands(pipe)
                return list((await pipe.execute())[0])

        value, leased, reads, churn = await self.call("acquire", run)
        return value or None, bool(leased), int(reads), int(churn)

    async def store(self, key: str, token: str, value: bytes, ttl_ms: int) -> bool:
        script = self.script("store")
        return bool(await self.call("store", lambda: script(keys=[key, self.keys.lease(key)], args=[token, value, ttl_ms])))

    # -- invalidation -------------------------------------------------------------------------

    async def pop_tags(self, tags: Iterable[str]) -> list[str]:
        script = self.script("pop_tag")
        tag_list = list(tags)

        async def run() -> list[str]:
            found = await self._many([(script, [self.keys.tag(t)], []) for t in tag_list])
            return sorted({m.decode() if isinstance(m, bytes) else m for members in found for m in members})

        return await self.call("pop_tags", run, self.bulk_timeout)

    async def invalidate_keys(self, entry_keys: Sequence[str]) -> int:
        """Delete entries and their leases; returns how many entries existed."""
        if not entry_keys:
            return 0
        script = self.script("invalidate")
        calls = [(script, [k, self.keys.lease(k), self.keys.churn(k)], [self.window_ms]) for k in entry_keys]

        async def run() -> int:
            return sum(int(n) for n in await self._many(calls))

        return await self.call("invalidate", run, self.bulk_timeout)

    async def scan(self, pattern: str, keep: Callable[[str], bool] | None = None) -> list[str]:
        """Keys matching `pattern` (SCAN MATCH, batches of 1000), filtered by `keep` between batches."""

        async def run() -> list[str]:
            out = []
            async for raw in self.client.scan_iter(match=pattern, count=1000):
                key = raw.decode() if isinstance(raw, bytes) else raw
                if keep is None or keep(key):
                    out.append(key)
            return out

        return await self.call("scan", run, self.bulk_timeout)

    async def publish(self, message: bytes) -> int:
        return int(await self.call("publish", lambda: self.client.publish(self.keys.channel, message)))

    async def _many(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        """Run scripts over unrelated keys: one pipeline on a single node, parallel calls on a cluster."""
        if not calls:
            return []
        if self.is_cluster:
            sem = asyncio.Semaphore(_CLUSTER_CONCURRENCY)

            async def one(script: Any, keys: list[str], args: list[Any]) -> Any:
                async with sem:
                    return await script(keys=keys, args=args)

            return list(await asyncio.gather(*(one(*c) for c in calls)))
        async with self.client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            return list(await pipe.execute())

    # -- counters and stats -------------------------------------------------------------------

    async def flush(self, stats: dict[str, int], accesses: dict[str, int]) -> None:
        """Add locally counted stats and near-cache reads to Redis."""
        script = self.script("incr_window")

        async def run() -> None:
            if stats:
                await self._hincr(stats)
            await self._many([(script, [self.keys.accesses(k)], [n, self.window_ms]) for k, n in accesses.items()])

        await self.call("flush", run, self.bulk_timeout)

    async def _hincr(self, stats: dict[str, int]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for field, n in stats.items():
                pipe.hincrby(self.keys.stats, field, n)
            await pipe.execute()

    async def read_stats(self) -> dict[str, int]:
        raw = await self.call("stats", lambda: self.client.hgetall(self.keys.stats))
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

    async def usage(self) -> tuple[int, int]:
        """(keys in the Redis database(s), bytes of memory used)."""

        async def run() -> tuple[int, int]:
            keys = await self.client.dbsize()  # on a cluster, redis-py sums the primaries' counts
            info = await self.client.info("memory")
            if self.is_cluster:  # {node: info} per primary
                memory = (
                    sum(int(i.get("used_memory", 0)) for i in info.values())
                    if isinstance(info, dict) and all(isinstance(v, dict) for v in info.values())
                    else int(info.get("used_memory", 0))
                )
            else:
                memory = int(info.get("used_memory", 0))
            return int(keys), memory

        return await self.call("usage", run, self.bulk_timeout)
