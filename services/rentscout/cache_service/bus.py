"""Invalidations broadcast to every replica over Redis pub/sub, so near caches drop what Redis dropped.

Classic pub/sub reaches every node of a Redis Cluster, so one channel serves both deployments.
While this replica is not subscribed (Redis down, reconnecting) it may miss messages, so its near
cache is switched off and emptied until the subscription is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import orjson
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from rentscout.cache_service import metrics
from rentscout.cache_service.store import REDIS_ERRORS, RedisStore
from rentscout.runtime import logs

_log = logging.getLogger(__name__)
PING_INTERVAL = 5.0


def message(keys: list[str] | None) -> bytes:
    """`None` means everything."""
    return orjson.dumps({"all": True} if keys is None else {"keys": keys})


def parse(data: bytes) -> list[str] | None:
    doc = orjson.loads(data)
    return None if doc.get("all") else [str(k) for k in doc.get("keys", [])]


class InvalidationBus:
    def __init__(
        self, store: RedisStore, on_keys: Callable[[list[str] | None], None], on_state: Callable[[bool], None], timeout: float
    ) -> None:
        self._store = store
        self._on_keys = on_keys
        self._on_state = on_state
        self._timeout = max(timeout, 0.5)
        self.connected = False
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def _set(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            metrics.INVALIDATION_BUS_UP.set(1 if connected else 0)
            lost = not connected and not self._stopped  # closed by our own shutdown: nothing for an operator to do
            _log.log(
                logging.WARNING if lost else logging.INFO,
                "invalidation channel %s",
                "subscribed: near cache on"
                if connected
                else "lost: near cache off until resubscribed"
                if lost
                else "closed: the service is stopping",
                extra={"fields": {**logs.ecs_event("database", "info" if connected else "error"), "cache.bus.up": connected}},
            )
            self._on_state(connected)

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopped:
            pubsub = None
            try:
                client = self._store.client
                async with asyncio.timeout(self._timeout):
                    if isinstance(client, RedisCluster):
                        await client.initialize()  # the cluster client learns its slots lazily; pub/sub needs them
                    pubsub = client.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(self._store.keys.channel)
                self._set(True)
                backoff = 0.1
                last_ping = last_heard = time.monotonic()
                while not self._stopped:
                    msg = await pubsub.get_message(timeout=1.0)
                    now = time.monotonic()
                    if msg is not None:
                        last_heard = now
                        if msg.get("type") == "message":
                            self._deliver(msg["data"])
                    if now - last_heard > 2 * PING_INTERVAL + self._timeout:  # pings unanswered: silently dead
                        raise redis.exceptions.ConnectionError("no answer to pings on the invalidation channel")
                    if now - last_ping > PING_INTERVAL:
                        async with asyncio.timeout(self._timeout):
                            await pubsub.ping()
                        last_ping = now
            except REDIS_ERRORS as exc:
                _log.debug("invalidation channel error: %s", exc, extra={"fields": {"error.type": type(exc).__name__}})
            finally:
                self._set(False)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(self._timeout):
                            await pubsub.aclose()
            if not self._stopped:
                await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _deliver(self, data: bytes) -> None:
        try:
            keys = parse(data)
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            _log.warning("ignoring a malformed invalidation message")
            return
        self._on_keys(keys)
