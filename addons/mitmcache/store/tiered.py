"""A bounded in-process tier in front of a shared store (Redis; a local disk store can reuse it).

Fresh hits are served from this process's memory, at the memory store's speed; anything else -- a
miss, a stale copy (whose fate depends on uses counted by every process) -- is read from the shared
store and kept here for the next hit. Writes go to both. Housekeeping (``peek``, ``keys``, the
schedule) reads the shared store, which is the truth while it is reachable; this tier's own
schedule only drops copies whose lifetime ended.

Other processes change the shared store too: whoever wires this tier calls ``drop``,
``drop_prefix``, ``drop_tag`` and ``drop_all`` when they announce a change, and ``restored`` when notifications
may have been lost (the tier is emptied before it is used again). A read that overlaps a drop is
not kept, so a copy read just before another process replaced it cannot outlive the notification.

When the shared store is unavailable (``Unavailable``) the tier carries on alone -- the memory
store with its own schedule -- and nothing fails; ``lost`` re-arms its schedule so that the copies
it holds are checked (refreshed or dropped) as any memory store's are.
"""

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core import run_eagerly
from ..entry import Entry, Meta, Stored
from .base import Read, Store, Usage, Use, Vary
from .memory import MemoryStore

HOUSEKEEPING_BATCH = 10_000


LOCAL, SHARED = "tier-local", "tier-shared"  # Cache-Status details


@dataclass(slots=True)
class SharedCopy(Stored):
    """A variant as the shared store returned it (its copy here is a separate record)."""


class Unavailable(Exception):
    """The shared store cannot be used now: fall back to the in-process tier, never fail."""


class TieredStore:
    holds_everything = False  # the shared tier below may hold what this process does not

    def __init__(
        self, local: MemoryStore, shared: Store, available: Callable[[], bool] = lambda: True
    ) -> None:
        self.local = local
        self.shared = shared
        self._available = available
        self._changes = 0  # drops seen: a shared read that overlapped one is not kept here
        self._reading: dict[str, asyncio.Future[Sequence[Stored]]] = {}

    # -- notifications ---------------------------------------------------------------------------

    def drop(self, key: str) -> None:
        self._changes += 1
        run_eagerly(self.local.delete(key))

    def drop_prefix(self, prefix: str) -> None:
        self._changes += 1
        run_eagerly(self.local.delete_prefix(prefix))

    def drop_tag(self, tag: str) -> None:
        self._changes += 1
        run_eagerly(self.local.delete_tag(tag))

    def drop_all(self) -> None:
        self._changes += 1
        run_eagerly(self.local.clear())

    def restored(self) -> None:
        """Notifications may have been lost: nothing held here can be trusted."""
        self.drop_all()

    def lost(self) -> None:
        """The shared store went away: this tier schedules its own copies from now on."""
        run_eagerly(self._rearm(time.time()))

    async def _rearm(self, now: float) -> None:
        for key in await self.local.keys():
            for stored in await self.local.peek(key):
                entry = stored.entry
                await self.local.reschedule(key, entry.vary, entry.version, now)

    # -- reading ---------------------------------------------------------------------------------

    def held(self, key: str) -> Sequence[Stored]:
        """The in-process tier's copies while they are fresh; else the shared store is asked."""
        held = self.local.held(key)
        return held if held and _fresh(held, time.time()) else ()

    async def variants(self, key: str) -> Sequence[Stored]:
        held = await self.local.variants(key)
        if held and _fresh(held, time.time()) or not self._available():
            return held
        reading = self._reading.get(key)
        if reading is None:  # one read of a URL at a time: a herd on a cold key is one round trip
            reading = self._reading[key] = asyncio.ensure_future(self._read_shared(key, held, time.time()))
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        return await asyncio.shield(reading)

    async def _read_shared(self, key: str, held: Sequence[Stored], began: float) -> Sequence[Stored]:
        """The shared store's variants, as a ``Read`` that began ``began``: the lookups that joined
        it late get that time, not their own."""
        changes = self._changes
        try:
            found = await self.shared.variants(key)
        except Unavailable:
            return held
        if changes == self._changes:
            await self._keep(key, found)
        return Read([SharedCopy(s.entry, s.meta, s.keep_until) for s in found], began)

    @staticmethod
    def tier_of(stored: Stored) -> str:
        return SHARED if isinstance(stored, SharedCopy) else LOCAL

    async def _keep(self, key: str, found: Sequence[Stored]) -> None:
        await self.local.delete(key)
        for stored in found:
            await self.local.put(
                stored.entry, stored.meta, keep_until=stored.keep_until, check_at=stored.keep_until
            )

    async def peek(self, key: str) -> Sequence[Stored]:
        if self._available():
            try:
                return await self.shared.peek(key)
            except Unavailable:
                pass
        return await self.local.peek(key)

    async def keys(self) -> list[str]:
        if self._available():
            try:
                return await self.shared.keys()
            except Unavailable:
                pass
        return await self.local.keys()

    # -- writing ---------------------------------------------------------------------------------

    async def put(self, entry: Entry, meta: Meta, *, keep_until: float, check_at: float) -> bool:
        if self._available():
            try:
                stored = await self.shared.put(entry, meta, keep_until=keep_until, check_at=check_at)
            except Unavailable:
                pass
            else:
                await self.local.put(entry, meta, keep_until=keep_until, check_at=keep_until)
                return stored
        return await self.local.put(entry, meta, keep_until=keep_until, check_at=check_at)

    async def discard(self, key: str, vary: Vary, version: int) -> bool:
        held = await self.local.discard(key, vary, version)
        if self._available():
            try:
                return await self.shared.discard(key, vary, version)
            except Unavailable:
                pass
        return held

    async def delete(self, key: str) -> int:
        held = await self.local.delete(key)
        return await self._shared_count(lambda: self.shared.delete(key), held)

    async def delete_prefix(self, prefix: str) -> int:
        held = await self.local.delete_prefix(prefix)
        return await self._shared_count(lambda: self.shared.delete_prefix(prefix), held)

    async def clear(self) -> int:
        held = await self.local.clear()
        return await self._shared_count(self.shared.clear, held)

    # -- tags ------------------------------------------------------------------------------------

    async def tagged(self, tag: str) -> Sequence[Stored]:
        if self._available():
            try:
                return await self.shared.tagged(tag)
            except Unavailable:
                pass
        return await self.local.tagged(tag)

    async def delete_tag(self, tag: str) -> int:
        self._changes += 1  # a shared read under way must not keep what this drops
        held = await self.local.delete_tag(tag)
        return await self._shared_count(lambda: self.shared.delete_tag(tag), held)

    async def stale_tag(self, tag: str, at: float) -> int:
        """Marked in the shared store; the copies held here are dropped, to be read again marked."""
        if self._available():
            try:
                marked = await self.shared.stale_tag(tag, at)
            except Unavailable:
                pass
            else:
                self._changes += 1
                await self.local.delete_tag(tag)
                return marked
        return await self.local.stale_tag(tag, at)

    async def _shared_count(self, change, held: int) -> int:
        if self._available():
            try:
                return await change()
            except Unavailable:
                pass
        return held

    # -- the schedule ----------------------------------------------------------------------------

    async def due(self, now: float, limit: int) -> list[Stored]:
        if self._available():
            try:
                found = await self.shared.due(now, limit)
            except Unavailable:
                pass
            else:
                await self._local_housekeeping(now)
                return found
        return await self.local.due(now, limit)

    async def _local_housekeeping(self, now: float) -> None:
        """While the shared store keeps the schedule, copies here are only dropped when they end."""
        for stored in await self.local.due(now, HOUSEKEEPING_BATCH):
            entry = stored.entry
            if stored.keep_until <= now:
                await self.local.discard(entry.key, entry.vary, entry.version)
            else:
                await self.local.reschedule(entry.key, entry.vary, entry.version, stored.keep_until)

    async def reschedule(self, key: str, vary: Vary, version: int, check_at: float) -> bool:
        if self._available():
            try:
                return await self.shared.reschedule(key, vary, version, check_at)
            except Unavailable:
                pass
        return await self.local.reschedule(key, vary, version, check_at)

    # -- metadata --------------------------------------------------------------------------------

    async def record_uses(self, uses: Sequence[Use]) -> None:
        await self.local.record_uses(uses)
        if self._available():
            try:
                await self.shared.record_uses(uses)
            except Unavailable:
                pass

    async def note_refresh_failure(self, key: str, vary: Vary, version: int, retry_at: float) -> None:
        await self.local.note_refresh_failure(key, vary, version, retry_at)
        if self._available():
            try:
                await self.shared.note_refresh_failure(key, vary, version, retry_at)
            except Unavailable:
                pass

    async def usage(self) -> Usage:
        """This process's tier: stats stay per process (``shared_usage``: the shared tier's)."""
        return await self.local.usage()

    async def shared_usage(self) -> Usage | None:
        if self._available():
            try:
                return await self.shared.usage()
            except Unavailable:
                pass
        return None

    async def resize(self, max_bytes: int, max_entries: int) -> None:
        await self.local.resize(max_bytes, max_entries)


def _fresh(held: Sequence[Stored], now: float) -> bool:
    """Whether every copy held here may be served as it is (else the shared store's uses decide)."""
    return all(s.entry.expires_at > now and not s.entry.no_cache for s in held)
