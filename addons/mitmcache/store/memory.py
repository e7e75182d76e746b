"""An in-process store bounded by bytes and entry count, evicting the least recently used URL.

An ``OrderedDict`` keeps URLs in use order, so lookups, uses and evictions are all O(1); a heap
keeps each entry's next check time, and a tag index (tag -> the variants carrying it) is kept on
every write and removal, so a purge by tag touches only what it drops. Lookups hand out the store's own records, for speed: the
engine only reads them (the contract suite runs the engine's rules against a store that hands out
copies, ``tests/support/serialising_store.py``).
"""

import heapq
import itertools
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from ..entry import Entry, Meta, Stored
from .base import Usage, Use, Vary

# RFC 9111 §4.1 lets a cache keep several variants per URL; a cap stops a client that sends
# endless distinct values of a varied-on field from filling the cache under one URL.
MAX_VARIANTS_PER_KEY = 32
COMPACT_SLACK = 4096  # schedule items beyond twice the stored entries before a sweep


@dataclass(slots=True)
class _Record(Stored):
    check_at: float = 0.0


def _last_access(record: _Record) -> float:
    return record.meta.last_access


class MemoryStore:
    holds_everything = True

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries  # 0: no bound
        self._urls: OrderedDict[str, list[_Record]] = OrderedDict()
        self._bytes = 0
        self._sent_bytes = 0
        self._entries = 0
        self._evictions = 0
        # (check_at, sequence, key, vary, version): names, not records, so that a dropped entry's
        # body is not kept alive by its place in the schedule; stale items are skipped and swept.
        self._schedule: list[tuple[float, int, str, Vary, int]] = []
        self._sequence = itertools.count()  # tie-breaker: varies are not ordered
        # tag -> the (URL, vary) of every stored variant carrying it; bounded by the entries (each
        # tag counts in its entry's size), emptied sets removed
        self._tags: dict[str, set[tuple[str, Vary]]] = {}

    async def resize(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self._evict()

    async def variants(self, key: str) -> Sequence[Stored]:
        return self.held(key)

    def held(self, key: str) -> Sequence[Stored]:
        group = self._urls.get(key)
        if group is None:
            return ()
        self._urls.move_to_end(key)
        now = time.time()
        for record in group:
            if record.keep_until <= now:  # the schedule drops (and counts) it: not served meanwhile
                return [r for r in group if r.keep_until > now]
        return group

    async def peek(self, key: str) -> Sequence[Stored]:
        group = self._urls.get(key)
        if group is None:
            return ()
        now = time.time()
        return [r for r in group if r.keep_until > now]

    async def put(self, entry: Entry, meta: Meta, *, keep_until: float, check_at: float) -> bool:
        if entry.size > self.max_bytes:
            return False
        group = self._urls.get(entry.key)
        if group is None:
            group = self._urls[entry.key] = []
        else:
            self._urls.move_to_end(entry.key)
            for old in [r for r in group if r.entry.vary == entry.vary]:
                self._remove(group, old)
            while len(group) >= MAX_VARIANTS_PER_KEY:  # the least recently used variant goes
                self._remove(group, min(group, key=_last_access))
        group.append(_Record(entry, meta.copy(), keep_until, check_at))
        if entry.tags:
            variant = (entry.key, entry.vary)
            for tag in entry.tags:
                self._tags.setdefault(tag, set()).add(variant)
        heapq.heappush(self._schedule, (check_at, next(self._sequence), entry.key, entry.vary, entry.version))
        self._bytes += entry.size
        self._sent_bytes += entry.sent_size
        self._entries += 1
        self._evict()
        return True

    async def discard(self, key: str, vary: Vary, version: int) -> bool:
        group = self._urls.get(key)
        record = self._find(group, vary, version)
        if group is None or record is None:
            return False
        self._remove(group, record)
        if not group:
            del self._urls[key]
        return True

    async def delete(self, key: str) -> int:
        group = self._urls.pop(key, None)
        if not group:
            return 0
        self._forget(group)
        return len(group)

    async def delete_prefix(self, prefix: str) -> int:
        return sum([await self.delete(key) for key in [k for k in self._urls if k.startswith(prefix)]])

    async def clear(self) -> int:
        dropped = self._entries
        self._urls.clear()
        self._schedule.clear()
        self._tags.clear()
        self._bytes = self._entries = self._sent_bytes = 0
        return dropped

    async def keys(self) -> list[str]:
        return list(self._urls)

    # -- tags --------------------------------------------------------------------------------

    def _tagged(self, tag: str) -> list[tuple[list[_Record], _Record]]:
        found = []
        for key, vary in list(self._tags.get(tag, ())):
            group = self._urls.get(key, [])
            found += [(group, r) for r in group if r.entry.vary == vary]
        return found

    async def tagged(self, tag: str) -> Sequence[Stored]:
        now = time.time()
        return [record for _, record in self._tagged(tag) if record.keep_until > now]

    async def delete_tag(self, tag: str) -> int:
        found = self._tagged(tag)
        for group, record in found:
            self._remove(group, record)
            if not group:
                self._urls.pop(record.entry.key, None)
        return len(found)

    async def stale_tag(self, tag: str, at: float) -> int:
        found = self._tagged(tag)
        for _, record in found:
            record.entry = record.entry.expired_by(at)
            record.meta.stale_at = min(record.meta.stale_at or at, at)
            record.check_at = at
            heapq.heappush(
                self._schedule,
                (at, next(self._sequence), record.entry.key, record.entry.vary, record.entry.version),
            )
        return len(found)

    async def due(self, now: float, limit: int) -> list[Stored]:
        found: list[Stored] = []
        while self._schedule and self._schedule[0][0] <= now and len(found) < limit:
            check_at, _, key, vary, version = heapq.heappop(self._schedule)
            record = self._find(self._urls.get(key), vary, version)
            if record is not None and record.check_at == check_at:
                record.check_at = float("inf")  # handed out: due again once rescheduled
                found.append(record)
        self._compact()
        return found

    async def reschedule(self, key: str, vary: Vary, version: int, check_at: float) -> bool:
        record = self._find(self._urls.get(key), vary, version)
        if record is None:
            return False
        record.check_at = check_at
        heapq.heappush(self._schedule, (check_at, next(self._sequence), key, vary, version))
        return True

    async def record_uses(self, uses: Sequence[Use]) -> None:
        for use in uses:
            record = self._find(self._urls.get(use.key), use.vary, use.version)
            if record is None:
                continue
            meta = record.meta
            meta.last_access = max(meta.last_access, use.at)
            meta.hits += use.hits
            record.keep_until = max(record.keep_until, use.keep_until)

    async def note_refresh_failure(self, key: str, vary: Vary, version: int, retry_at: float) -> None:
        record = self._find(self._urls.get(key), vary, version)
        if record is not None:
            record.meta.refresh_failures += 1
            record.meta.retry_at = retry_at

    async def usage(self) -> Usage:
        return Usage(
            entries=self._entries,
            keys=len(self._urls),
            bytes=self._bytes,
            evictions=self._evictions,
            sent_bytes=self._sent_bytes,
            tags=len(self._tags),
        )

    # -- bookkeeping -------------------------------------------------------------------------

    @staticmethod
    def _find(group: list[_Record] | None, vary: Vary, version: int) -> _Record | None:
        for record in group or ():
            if record.entry.version == version and record.entry.vary == vary:
                return record
        return None

    def _remove(self, group: list[_Record], record: _Record) -> None:
        group.remove(record)
        self._forget([record])

    def _forget(self, records: list[_Record]) -> None:
        self._bytes -= sum(r.entry.size for r in records)
        self._sent_bytes -= sum(r.entry.sent_size for r in records)
        self._entries -= len(records)
        for record in records:
            entry = record.entry
            for tag in entry.tags:
                variants = self._tags.get(tag)
                if variants is not None:
                    variants.discard((entry.key, entry.vary))
                    if not variants:
                        del self._tags[tag]

    def _compact(self) -> None:
        """Forget the schedule of entries that are gone once it holds twice what is stored (and
        some slack), so that a flood of short-lived keys does not grow it beyond the store; one
        sweep per that many evictions keeps the cost per stored entry constant."""
        if len(self._schedule) <= 2 * self._entries + COMPACT_SLACK:
            return
        live = [
            item
            for item in self._schedule
            if (record := self._find(self._urls.get(item[2]), item[3], item[4])) is not None
            and record.check_at == item[0]
        ]
        heapq.heapify(live)
        self._schedule = live

    def _evict(self) -> None:
        while self._urls and (
            self._bytes > self.max_bytes or (self.max_entries and self._entries > self.max_entries)
        ):
            key, group = next(iter(self._urls.items()))
            if len(self._urls) == 1 and len(group) > 1:
                # Only the most recently used URL is left: drop its oldest variants, so that an
                # entry that fits on its own is not evicted by the very put that stored it.
                self._remove(group, group[0])
                self._evictions += 1
                continue
            del self._urls[key]
            self._forget(group)
            self._evictions += len(group)
