"""Invalidation: by tag (through the change log), by key pattern (SCAN), and the cleanup of Redis.

Correctness rests on the change log alone (changes.py): an entry older than a change to one of its
tags is a miss on every replica, whatever Redis still holds. An explicit tag invalidation therefore
appends a row to the log (as a property change's trigger does), then reads the log here, so when the
RPC returns this replica serves nothing older, and every other replica within the change-log bound.

Deleting the superseded entries from Redis is only housekeeping (memory, and the `keys_deleted`
count): it goes through tag sets, a best-effort index that eviction may shrink; entries it misses
are still never served, and expire. The first replica to pop a tag set does the work.

A pattern invalidation has no tags: it deletes the matching entries and their leases in Redis (a
fill in flight then cannot store) and announces the keys on the bus, so other replicas' near caches
drop them too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from rentscout.cache_service import bus, listener
from rentscout.cache_service.changes import ALL
from rentscout.cache_service.keys import parse_glob
from rentscout.cache_service.listener import ChangeFeed
from rentscout.cache_service.stats import CacheStats
from rentscout.cache_service.store import RedisStore, RedisUnavailable
from rentscout.runtime import logs
from rentscout.runtime.database import Database
from rentscout.runtime.errors import DeadlineExceeded

_log = logging.getLogger(__name__)


class LocalCopy(Protocol):
    """State in this process that a pattern invalidation must reach at once (near cache, fills in flight)."""

    def forget(self, keys: list[str] | None) -> None:
        """Drop what is held for `keys` (None: everything)."""
        ...


class Invalidation:
    def __init__(
        self, store: RedisStore, stats: CacheStats, local: Sequence[LocalCopy], db: Database, feed: ChangeFeed, timeout: float
    ) -> None:
        self._store = store
        self._keys = store.keys
        self._stats = stats
        self._local = tuple(local)
        self._db = db
        self._feed = feed
        self._timeout = timeout
        self._dirty: set[str] = set()  # tags changed whose Redis entries are not deleted yet
        self._cleaner: asyncio.Task[None] | None = None

    # -- by tag ---------------------------------------------------------------------------------

    async def invalidate_tags(self, tags: Iterable[str], trigger: str) -> int:
        """Log the tags as changed, apply the log here; returns the entries deleted from Redis now.

        Raises the database's error when the change cannot be logged (nothing was invalidated)."""
        tag_list = sorted(set(tags))
        await listener.append(self._db, tag_list, self._timeout)
        try:  # before reading the log back, whose cleanup would otherwise take (and count) them first
            deleted = await self._delete_tagged(tag_list, trigger)
        except (RedisUnavailable, DeadlineExceeded):
            deleted = 0  # superseded entries are misses anyway, and expire
            self._stats.invalidated(trigger, 0)
        await self._feed.catch_up(self._db)
        return deleted

    def changed(self, tags: set[str]) -> None:
        """The change feed applied changes to `tags`: delete their entries from Redis in the background."""
        self._dirty |= tags
        if self._cleaner is None or self._cleaner.done():
            self._cleaner = asyncio.create_task(self._clean(), name="cache-cleanup")

    async def _clean(self) -> None:
        while self._dirty:
            tags, self._dirty = self._dirty, set()
            try:
                if ALL in tags:
                    await self.invalidate_pattern(self._keys.all_entries_pattern, "notify")
                else:
                    await self._delete_tagged(sorted(tags), "notify")
            except (RedisUnavailable, DeadlineExceeded):
                return  # housekeeping only: the log keeps them from being served
            except Exception:  # never let housekeeping die on a bug
                _log.exception("cache cleanup failed")
                return

    async def _delete_tagged(self, tags: list[str], trigger: str) -> int:
        keys = await self._store.pop_tags(tags)
        deleted = await self._store.invalidate_keys(keys)
        self._counted(trigger, deleted, len(keys))
        return deleted

    def _counted(self, trigger: str, deleted: int, keys: int) -> None:
        self._stats.invalidated(trigger, deleted)
        _log.debug(
            "cache invalidated",
            extra={
                "fields": {
                    **logs.ecs_event("database", "change"),
                    "event.action": "cache-invalidate",
                    "cache.trigger": trigger,
                    "cache.keys_deleted": deleted,
                    "cache.keys": keys,
                    "cache.all_keys": False,
                }
            },
        )

    def stop(self) -> asyncio.Task[None] | None:
        self._dirty.clear()
        return self._cleaner

    # -- by pattern -----------------------------------------------------------------------------

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
        self.forget_local(ordered)
        self._counted(trigger, deleted, len(ordered))
        if ordered:
            try:
                await self._store.publish(bus.message(ordered))
            except RedisUnavailable:
                _log.warning("could not broadcast an invalidation; other replicas' near caches expire on their own")
        return deleted

    def forget_local(self, keys: list[str] | None) -> None:
        """Drop `keys` (None: everything) from this process' near cache and fills in flight; also
        the callback of the invalidation bus, for what other replicas invalidated by pattern."""
        for copy in self._local:
            copy.forget(keys)
