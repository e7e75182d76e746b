"""An in-process store bounded by bytes and entry count, evicting the least recently used URL.

An ``OrderedDict`` keeps URLs in use order, so lookups, uses and evictions are all O(1).
"""

from collections import OrderedDict
from collections.abc import Sequence

from ..entry import Entry
from .base import Usage

# RFC 9111 §4.1 lets a cache keep several variants per URL; a cap stops a client that sends
# endless distinct values of a varied-on field from filling the cache under one URL.
MAX_VARIANTS_PER_KEY = 32


class MemoryStore:
    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries  # 0: no bound
        self._urls: OrderedDict[str, list[Entry]] = OrderedDict()
        self._bytes = 0
        self._entries = 0
        self._evictions = 0

    def resize(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self._evict()

    async def variants(self, key: str) -> Sequence[Entry]:
        found = self._urls.get(key)
        if found is None:
            return ()
        self._urls.move_to_end(key)
        return found

    async def peek(self, key: str) -> Sequence[Entry]:
        return self._urls.get(key, ())

    async def discard(self, entry: Entry) -> bool:
        group = self._urls.get(entry.key)
        if group is None or not any(e is entry for e in group):
            return False
        self._remove_variant(group, entry)
        if not group:
            del self._urls[entry.key]
        return True

    def record_use(self, entry: Entry, now: float, *, hit: bool) -> None:
        entry.last_access = now
        if hit:
            entry.hits += 1

    async def put(self, entry: Entry) -> None:
        if entry.size > self.max_bytes:
            return
        group = self._urls.get(entry.key)
        if group is None:
            group = self._urls[entry.key] = []
        else:
            self._urls.move_to_end(entry.key)
            for old in [e for e in group if e.vary == entry.vary]:
                self._remove_variant(group, old)
            while len(group) >= MAX_VARIANTS_PER_KEY:
                self._remove_variant(group, group[0])
        group.append(entry)
        self._bytes += entry.size
        self._entries += 1
        self._evict()

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
        self._bytes = self._entries = 0
        return dropped

    async def keys(self) -> list[str]:
        return list(self._urls)

    def usage(self) -> Usage:
        return Usage(
            entries=self._entries, keys=len(self._urls), bytes=self._bytes, evictions=self._evictions
        )

    def _remove_variant(self, group: list[Entry], entry: Entry) -> None:
        group.remove(entry)
        self._forget([entry])

    def _forget(self, entries: list[Entry]) -> None:
        self._bytes -= sum(e.size for e in entries)
        self._entries -= len(entries)

    def _evict(self) -> None:
        while self._urls and (
            self._bytes > self.max_bytes or (self.max_entries and self._entries > self.max_entries)
        ):
            key, group = next(iter(self._urls.items()))
            if len(self._urls) == 1 and len(group) > 1:
                # Only the most recently used URL is left: drop its oldest variants, so that an
                # entry that fits on its own is not evicted by the very put that stored it.
                self._remove_variant(group, group[0])
                self._evictions += 1
                continue
            del self._urls[key]
            self._forget(group)
            self._evictions += len(group)
