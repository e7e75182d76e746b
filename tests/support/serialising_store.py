"""A store that keeps every value as bytes and hands out fresh copies, as a networked store does.

It meets the storage contract (``mitmcache.store.base``) without bounds, and is what the contract
suite and the engine's own tests run against besides the memory store: anything that depended on
changing an object a lookup returned, or on object identity, fails against it.
"""

import heapq
import itertools
import time
from collections.abc import Sequence

from mitmcache.entry import Entry, Meta, Stored, as_marked
from mitmcache.store import codec
from mitmcache.store.base import Usage, Use, Vary


class SerialisingStore:
    holds_everything = False  # asked like a networked store, always

    def __init__(self, max_bytes: int = 2**40, max_entries: int = 0) -> None:
        # key -> [(entry bytes, meta bytes, keep_until, check_at)], oldest write first
        self._urls: dict[str, list[tuple[bytes, bytes, float, float]]] = {}
        self._schedule: list[tuple[float, int, str, bytes]] = []
        self._sequence = itertools.count()
        self.max_bytes, self.max_entries = max_bytes, max_entries

    @staticmethod
    def _stored(e: bytes, m: bytes, keep: float) -> Stored:
        meta = codec.decode_meta(m)
        return Stored(as_marked(codec.decode_entry(e), meta), meta, keep)

    def _read(self, key: str) -> list[Stored]:
        now = time.time()
        return [self._stored(e, m, keep) for e, m, keep, _ in self._urls.get(key, ()) if keep > now]

    def _tagged(self, tag: str) -> list[tuple[str, Entry]]:
        """(URL, entry) of every variant carrying ``tag``: a full walk, as an index is not what
        this store is for (the memory and Redis stores keep one)."""
        return [
            (key, entry)
            for key, group in self._urls.items()
            for raw, _, _, _ in group
            if tag in (entry := codec.decode_entry(raw)).tags
        ]

    async def tagged(self, tag: str) -> Sequence[Stored]:
        versions = {entry.version for _, entry in self._tagged(tag)}
        keys = {key for key, _ in self._tagged(tag)}
        return [s for key in keys for s in self._read(key) if s.entry.version in versions]

    async def delete_tag(self, tag: str) -> int:
        found = self._tagged(tag)
        for key, entry in found:
            await self.discard(key, entry.vary, entry.version)
        return len(found)

    async def stale_tag(self, tag: str, at: float) -> int:
        found = self._tagged(tag)
        for key, entry in found:

            def marked(meta: Meta) -> None:
                meta.stale_at = min(meta.stale_at or at, at)

            self._update(key, entry.vary, entry.version, marked)
            await self.reschedule(key, entry.vary, entry.version, at)
        return len(found)

    def _index(self, key: str, vary: Vary, version: int) -> int | None:
        for i, (raw, _, _, _) in enumerate(self._urls.get(key, ())):
            entry = codec.decode_entry(raw)
            if entry.vary == vary and entry.version == version:
                return i
        return None

    async def variants(self, key: str) -> Sequence[Stored]:
        return self._read(key)

    def held(self, key: str) -> Sequence[Stored]:
        return self._read(key)

    async def peek(self, key: str) -> Sequence[Stored]:
        return self._read(key)

    async def put(self, entry: Entry, meta: Meta, *, keep_until: float, check_at: float) -> bool:
        if entry.size > self.max_bytes:
            return False
        group = [
            item for item in self._urls.get(entry.key, []) if codec.decode_entry(item[0]).vary != entry.vary
        ]
        raw = codec.encode_entry(entry)
        group.append((raw, codec.encode_meta(meta), keep_until, check_at))
        self._urls[entry.key] = group
        heapq.heappush(self._schedule, (check_at, next(self._sequence), entry.key, raw))
        return True

    async def discard(self, key: str, vary: Vary, version: int) -> bool:
        index = self._index(key, vary, version)
        if index is None:
            return False
        del self._urls[key][index]
        if not self._urls[key]:
            del self._urls[key]
        return True

    async def delete(self, key: str) -> int:
        return len(self._urls.pop(key, []))

    async def delete_prefix(self, prefix: str) -> int:
        return sum([await self.delete(k) for k in [k for k in self._urls if k.startswith(prefix)]])

    async def clear(self) -> int:
        dropped = sum(len(group) for group in self._urls.values())
        self._urls.clear()
        return dropped

    async def keys(self) -> list[str]:
        return list(self._urls)

    async def due(self, now: float, limit: int) -> list[Stored]:
        found = []
        while self._schedule and self._schedule[0][0] <= now and len(found) < limit:
            check_at, _, key, raw = heapq.heappop(self._schedule)
            entry = codec.decode_entry(raw)
            index = self._index(key, entry.vary, entry.version)
            if index is None or self._urls[key][index][3] != check_at:
                continue
            e, m, keep, _ = self._urls[key][index]
            self._urls[key][index] = (e, m, keep, float("inf"))
            found.append(self._stored(e, m, keep))
        return found

    async def reschedule(self, key: str, vary: Vary, version: int, check_at: float) -> bool:
        index = self._index(key, vary, version)
        if index is None:
            return False
        e, m, keep, _ = self._urls[key][index]
        self._urls[key][index] = (e, m, keep, check_at)
        heapq.heappush(self._schedule, (check_at, next(self._sequence), key, e))
        return True

    def _update(self, key: str, vary: Vary, version: int, change, keep_until: float = 0.0) -> None:
        index = self._index(key, vary, version)
        if index is None:
            return
        e, m, keep, check = self._urls[key][index]
        meta = codec.decode_meta(m)
        change(meta)
        self._urls[key][index] = (e, codec.encode_meta(meta), max(keep, keep_until), check)

    async def record_uses(self, uses: Sequence[Use]) -> None:
        for use in uses:

            def used(meta: Meta, use: Use = use) -> None:
                meta.last_access = max(meta.last_access, use.at)
                meta.hits += use.hits

            self._update(use.key, use.vary, use.version, used, use.keep_until)

    async def note_refresh_failure(self, key: str, vary: Vary, version: int, retry_at: float) -> None:
        def failed(meta: Meta) -> None:
            meta.refresh_failures += 1
            meta.retry_at = retry_at

        self._update(key, vary, version, failed)

    async def usage(self) -> Usage:
        sizes = [len(e) for group in self._urls.values() for e, _, _, _ in group]
        sent = [codec.decode_entry(e).sent_size for group in self._urls.values() for e, _, _, _ in group]
        tags = {
            tag for group in self._urls.values() for e, _, _, _ in group for tag in codec.decode_entry(e).tags
        }
        return Usage(
            entries=len(sizes),
            keys=len(self._urls),
            bytes=sum(sizes),
            evictions=0,
            sent_bytes=sum(sent),
            tags=len(tags),
        )

    async def resize(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
