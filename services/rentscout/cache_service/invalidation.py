"""Invalidation: by tag, by key pattern (SCAN), from PostgreSQL's NOTIFYs, and from other replicas.

An invalidation deletes entries and their leases in Redis (so a fill in flight cannot store), forgets
the keys in this process at once (near cache, fills in flight) and publishes them on the bus, so every
other replica's near cache drops them too (`forget_local` is the bus' callback).

Automatic invalidation: migration 0003's triggers NOTIFY at commit with the cities and types a
statement touched; the listener hands batches to `on_changes`. Changes made while nobody listened
were missed, so `on_listen` drops everything after a reconnection, and at first start unless another
replica's listener heartbeat is alive.

Redis unreachable: the invalidation is remembered in `deferred` and applied by the next flush; until
then the read path bypasses Redis and the near cache, so a thawed Redis never serves an entry it
should have lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rentscout.cache_service import bus
from rentscout.cache_service.keys import CITIES_TAG, TYPES_TAG, city_tag, parse_glob, popular_tag
from rentscout.cache_service.stats import CacheStats
from rentscout.cache_service.store import RedisStore, RedisUnavailable
from rentscout.runtime import logs
from rentscout.runtime.errors import DeadlineExceeded
from rentscout.runtime.replicas import CommitWatermark

_log = logging.getLogger(__name__)
HEARTBEAT_TTL_MS = 3000  # a listener refreshes it every second while connected


class LocalCopy(Protocol):
    """State in this process that an invalidation must reach at once (near cache, fills in flight)."""

    def forget(self, keys: list[str] | None) -> None:
        """Drop what is held for `keys` (None: everything)."""
        ...


@dataclass
class DeferredInvalidations:
    """Invalidations that could not reach Redis yet. True while any is pending: the cache is bypassed."""

    everything: bool = False
    tags: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)  # members of tag sets already popped

    def __bool__(self) -> bool:
        return self.everything or bool(self.tags) or bool(self.keys)


def changed_tags(changes: Iterable[Mapping[str, Any]]) -> set[str] | None:
    """The tags a batch of change notifications touches (None: everything)."""
    tags: set[str] = set()
    for change in changes:
        if change.get("all"):
            return None
        # a change that cannot move price statistics (views, titles ...) only touches popular lists
        tag = city_tag if change.get("prices", True) or change.get("counts") else popular_tag
        tags |= {tag(str(c)) for c in change.get("cities") or ()}
        if change.get("counts"):
            tags |= {CITIES_TAG, TYPES_TAG}
    return tags


class Invalidation:
    def __init__(self, store: RedisStore, stats: CacheStats, local: Sequence[LocalCopy],
                 watermark: CommitWatermark | None = None) -> None:
        self._store = store
        self._watermark = watermark
        self._keys = store.keys
        self._stats = stats
        self._local = tuple(local)
        self.deferred = DeferredInvalidations()

    # -- explicit invalidation ----------------------------------------------------------------

    async def invalidate_tags(self, tags: Iterable[str], trigger: str) -> int:
        """Drop every entry registered under any of `tags` (and any fill of one in flight)."""
        keys = await self._store.pop_tags(tags)
        try:
            deleted = await self._store.invalidate_keys(keys)
        except RedisUnavailable:
            self.deferred.keys.update(keys)  # the tag sets are gone: remember their members
            self.forget_local(None)
            raise
        await self._announce(keys, deleted, trigger)
        return deleted

    async def invalidate_pattern(self, pattern: str, trigger: str = "pattern") -> int:
        """Drop entries whose key matches a Redis glob: SCAN, never KEYS; in-flight fills included.

        Redis is asked only for the pattern's literal prefix (SCAN MATCH `prefix*`, linear in Redis);
        the glob itself is matched here by `Glob.matches`, in bounded time per key, batch by batch,
        so neither Redis nor this event loop ever runs a backtracking match. Raises GlobError."""
        glob = parse_glob(pattern)
        keys = {k for k in await self._store.scan(glob.scan_pattern, glob.matches) if self._keys.is_entry(k)}
        def lease_matches(lease: str) -> bool:
            entry_key = self._keys.entry_of_lease(lease)
            return entry_key is not None and glob.matches(entry_key)

        for lease in await self._store.scan(self._keys.all_leases_pattern, lease_matches):
            entry_key = self._keys.entry_of_lease(lease)
            if entry_key:
                keys.add(entry_key)
        ordered = sorted(keys)
        deleted = await self._store.invalidate_keys(ordered)
        await self._announce(ordered, deleted, trigger)
        return deleted

    async def invalidate_all(self, trigger: str) -> int:
        deleted = await self.invalidate_pattern(self._keys.all_entries_pattern, trigger)
        await self._announce(None, 0, trigger, count=False)
        return deleted

    async def invalidate_deferrable(self, tags: set[str] | None, trigger: str) -> int:
        """Invalidate `tags` (None: everything), or (Redis unreachable) remember it and bypass the
        cache until it succeeds; RedisUnavailable still reaches the caller."""
        try:
            return await (self.invalidate_all(trigger) if tags is None else self.invalidate_tags(sorted(tags), trigger))
        except RedisUnavailable:
            if tags is None:
                self.deferred.everything = True
            else:
                self.deferred.tags |= tags
            self.forget_local(None)
            _log.warning("Redis unreachable: invalidation deferred; serving from PostgreSQL until it is applied",
                         extra={"fields": {**logs.ecs_event("database", "change"), "cache.tags": sorted(tags) if tags else ["*"],
                                           "cache.trigger": trigger}})
            raise

    async def apply_deferred(self) -> None:
        """Apply what `invalidate_deferrable` could not (the flush loop calls it while any is pending)."""
        pending = self.deferred
        if pending.everything:
            await self.invalidate_all("deferred")
            pending.everything = False
            pending.tags.clear()
            pending.keys.clear()
        if pending.keys:
            keys = sorted(pending.keys)
            await self._announce(keys, await self._store.invalidate_keys(keys), "deferred")
            pending.keys -= set(keys)
        if pending.tags:
            tags = set(pending.tags)
            await self.invalidate_tags(sorted(tags), "deferred")
            pending.tags -= tags
        _log.info("deferred invalidations applied; cache back in use")

    async def _announce(self, keys: list[str] | None, deleted: int, trigger: str, count: bool = True) -> None:
        """Forget the keys here at once, then tell every replica (None: everything)."""
        self.forget_local(keys)
        _log.debug("cache invalidated", extra={"fields": {
            **logs.ecs_event("database", "change"), "event.action": "cache-invalidate", "cache.trigger": trigger,
            "cache.keys_deleted": deleted, "cache.keys": len(keys) if keys is not None else None,
            "cache.all_keys": keys is None}})
        if count:
            self._stats.invalidated(trigger, deleted)
        if keys is None or keys:
            try:
                await self._store.publish(bus.message(keys))
            except RedisUnavailable:
                _log.warning("could not broadcast an invalidation; other replicas' near caches expire on their own")

    # -- in this process, and from other replicas ---------------------------------------------

    def forget_local(self, keys: list[str] | None) -> None:
        """Drop `keys` (None: everything) from this process' near cache and fills in flight; also
        the callback of the invalidation bus, for what other replicas invalidated."""
        for copy in self._local:
            copy.forget(keys)

    # -- PostgreSQL LISTEN callbacks ------------------------------------------------------------

    async def on_changes(self, changes: Sequence[Mapping[str, Any]]) -> None:
        """NOTIFYs from the properties trigger (see migration 0003), merged into one invalidation."""
        tags = changed_tags(changes)
        if tags is not None and not tags:
            return
        if self._watermark is not None:  # before dropping: no fill after this may read an older standby
            await self._watermark.advance()
        with contextlib.suppress(RedisUnavailable):
            await self.invalidate_deferrable(tags, "notify")

    async def on_listen(self, first: bool) -> None:
        """LISTEN is active. Changes made while nobody listened were missed: drop everything after a
        reconnection, and at first start unless another replica's listener is alive (heartbeat)."""
        if first:
            try:
                if await self._store.listener_alive():
                    return
            except RedisUnavailable:
                pass
            reason = "no other replica was listening for changes"
        else:
            reason = "this replica's listener reconnected"
        if self._watermark is not None:  # whatever was missed is older than this
            await self._watermark.advance()
        _log.warning("dropping every cache entry: %s (changes may have been missed)", reason)
        with contextlib.suppress(RedisUnavailable):
            await self.invalidate_deferrable(None, "listener_gap")

    async def listener_heartbeat(self) -> None:
        with contextlib.suppress(RedisUnavailable, DeadlineExceeded):
            await self._store.listener_heartbeat(HEARTBEAT_TTL_MS)
