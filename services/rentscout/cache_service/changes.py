"""What this replica knows of the change log (migration 0008), and whether a cached entry is current.

Every change to `properties` (and every explicit tag invalidation) is a row `(seq, tags)` in
`cache_changes`, a table only the migrating role writes. This module keeps, per tag, the newest seq
that touched it. An entry records `from_seq`, the position every change at or below which its fill
could see (read *before* the fill's query); it is current while no change to its tags (or `*`) has a
larger seq. Nothing here is in Redis: evicting any key can only cause a miss.

Sequence numbers are handed out before commit, so rows become visible out of order: seq 11 may commit
before seq 10. `low` (what fills record) therefore advances only over resolved positions: a position
missing below the newest row seen is a *hole*, held by a transaction still running or rolled back.
A hole first seen missing at a snapshot whose xmax was X is resolved (its transaction is gone) once a
later snapshot has xmin >= X: if that transaction committed, its row was visible to that read.

`confirmed_at` is when the last complete read of the log started: an entry may be served only while
that is at most `max_lag` ago, so a committed change reaches every answer of this replica within
`max_lag` (plus one read), whatever happened to NOTIFY, the connection or Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

ALL = "*"


@dataclass
class _Hole:
    lo: int
    hi: int  # inclusive
    xmax: int  # resolved once a snapshot's xmin reaches it


@dataclass
class ChangeLog:
    max_lag: float  # seconds: the bound (see the module docstring)
    floor: int = -1  # entries filled from below it predate what this replica read (-1: nothing read yet)
    low: int = 0  # every position <= low is resolved (applied, or never committed)
    newest: int = 0  # the largest seq applied
    confirmed_at: float = float("-inf")  # time.monotonic() at the start of the last complete read
    tag_seq: dict[str, int] = field(default_factory=dict)
    _applied: set[int] = field(default_factory=set)  # applied positions above `low`
    _holes: list[_Hole] = field(default_factory=list)

    # -- the read path ------------------------------------------------------------------------

    def confirmed(self, now: float | None = None) -> bool:
        """True while the last complete read of the log started at most `max_lag` ago."""
        return (time.monotonic() if now is None else now) - self.confirmed_at <= self.max_lag

    def current(self, from_seq: int, tags: Iterable[str]) -> bool:
        """Whether an entry filled from `from_seq` and depending on `tags` shows every applied change."""
        get = self.tag_seq.get
        if from_seq < self.floor or get(ALL, 0) > from_seq:
            return False
        return all(get(tag, 0) <= from_seq for tag in tags)

    # -- applying a read of the log -------------------------------------------------------------

    def start(self, oldest: int | None) -> None:
        """Before the first read: entries filled before the oldest retained row are unknown (pruned)."""
        self.floor = 0 if oldest is None else oldest - 1

    def reset(self) -> None:
        """Forget the positions read (the log may have been pruned past them); the next read starts over."""
        self.floor, self.low, self.newest = -1, 0, 0
        self._applied.clear()
        self._holes.clear()

    def apply(self, rows: Sequence[tuple[int, Sequence[str]]], xmin: int, xmax: int, started: float | None) -> set[str]:
        """Apply the rows a read returned (ascending), taken at a snapshot (xmin, xmax) by a read that
        started at `started`: None when the read was cut short by its batch size (then it confirms
        nothing). Returns the tags newly changed ('*' for everything)."""
        changed: set[str] = set()
        previous = self.newest
        for seq, tags in rows:
            if seq <= self.low or seq in self._applied:
                continue
            self._applied.add(seq)
            for tag in tags:
                if self.tag_seq.get(tag, 0) < seq:
                    self.tag_seq[tag] = seq
                changed.add(tag)
            if seq <= previous:
                self._fill_hole(seq)
        gap_from = previous + 1  # positions above the previous newest that this read did not return
        for seq in sorted(s for s, _ in rows if s > previous):
            if seq > gap_from:
                self._holes.append(_Hole(gap_from, seq - 1, xmax))
            gap_from = seq + 1
        self.newest = max(self.newest, gap_from - 1)
        self._holes = [h for h in self._holes if h.xmax > xmin]  # older ones: their transactions are gone
        self._advance()
        if started is not None:
            self.confirmed_at = max(self.confirmed_at, started)
        return changed

    def holes(self) -> tuple[list[int], list[int]]:
        """The unresolved ranges (first positions, last positions), for the next read."""
        return [h.lo for h in self._holes], [h.hi for h in self._holes]

    def _fill_hole(self, seq: int) -> None:
        for i, hole in enumerate(self._holes):
            if hole.lo <= seq <= hole.hi:
                pieces = [_Hole(hole.lo, seq - 1, hole.xmax), _Hole(seq + 1, hole.hi, hole.xmax)]
                self._holes[i : i + 1] = [p for p in pieces if p.lo <= p.hi]
                return

    def _advance(self) -> None:
        """Move `low` up to the first unresolved position."""
        bound = min((h.lo for h in self._holes), default=self.newest + 1) - 1
        if bound > self.low:
            self._applied = {s for s in self._applied if s > bound}
            self.low = bound

    @property
    def pending_holes(self) -> int:
        return sum(h.hi - h.lo + 1 for h in self._holes)
