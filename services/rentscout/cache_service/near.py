"""The in-process near cache: a small LRU of ready-to-send entries for the hottest keys.

Whether an entry is current is the change log's decision (changes.py; the read path asks it on every
near hit), so a change needs nothing from here. Pattern invalidations have no log row: they travel on
the invalidation channel, so the near cache is only used while subscribed to it, and `epoch` grows on
every one: a Redis read or fill that started before one may not insert what it read (the race where
the message overtakes an in-flight read of the old value).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from rentscout.cache_service.entry import Entry


class NearCache:
    def __init__(self, max_entries: int, max_age: float) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self.enabled = False
        self.epoch = 0
        self._data: OrderedDict[str, tuple[Entry, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, now: float) -> Entry | None:
        item = self._data.get(key)
        if item is None:
            return None
        if now >= item[1]:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[0]

    def put(self, entry: Entry, epoch: int, now: float) -> bool:
        """Insert unless disabled or an invalidation happened since `epoch` was read."""
        if not self.enabled or self.max_entries <= 0 or epoch != self.epoch or entry.ttl <= 0:
            return False
        until = min(entry.expires, now + self.max_age)
        if until <= now:
            return False
        self._data[entry.key] = (entry, until)
        self._data.move_to_end(entry.key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
        return True

    def discard(self, keys: Iterable[str]) -> None:
        self.epoch += 1
        for key in keys:
            self._data.pop(key, None)

    def clear(self) -> None:
        self.epoch += 1
        self._data.clear()

    def forget(self, keys: list[str] | None) -> None:
        """An invalidation of `keys` (None: everything)."""
        if keys is None:
            self.clear()
        else:
            self.discard(keys)

    def set_enabled(self, enabled: bool) -> None:
        """Turning it off (or on again after an outage) forgets everything: messages may have been missed."""
        if enabled != self.enabled:
            self.clear()
        self.enabled = enabled
