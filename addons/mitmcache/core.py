"""What the engine's parts share: the store, coordination, the upstream client, the counters and
the settings, and the one way an entry is written (with its lifetime and first check time).

``Engine`` (engine.py) is the facade the addon, the control plane and the commands call; its parts
(``Lookup``, ``Refresher``, ``ExpiryScheduler``) each get this ``Core``.
"""

import asyncio
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from .coalesce import Coalescer, HitForMiss, HitForMissMemory, Inflight
from .compression import THREAD_ABOVE_BYTES, encode_now, worth_coding
from .config import Settings
from .counters import Count, Counters
from .entry import Entry, Meta, Stored
from .generations import InvalidationBus, LocalGenerations
from .policy.fields import Fields
from .policy.key import matches
from .policy.lifecycle import first_check, keep_until, kept_while_asked
from .store.base import Store, Use
from .upstream import Upstream

_eager_tasks: set[asyncio.Task[Any]] = set()


def run_eagerly[T](coro: Coroutine[Any, Any, T]) -> T | None:
    """Run a coroutine from synchronous code (a ``configure`` hook, a command): started eagerly, so
    an in-memory store's work is done before this returns (its result); a networked store's
    finishes in the background (None). Without a running loop (tests), to completion."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    task = asyncio.Task(coro, loop=loop, eager_start=True)
    if task.done():
        return task.result()
    _eager_tasks.add(task)
    task.add_done_callback(_eager_tasks.discard)
    return None


def select(variants: Sequence[Stored], request_fields: Fields) -> Stored | None:
    """The stored response for a request: RFC 9111 §4.1, of several matching ones the most recent."""
    for stored in reversed(variants):
        vary = stored.entry.vary
        if not vary or matches(vary, request_fields):
            return stored
    return None


@dataclass
class Core:
    settings: Callable[[], Settings]
    store: Store
    upstream: Upstream
    coalescer: Coalescer = field(default_factory=Inflight)
    hit_for_miss: HitForMissMemory = field(default_factory=HitForMiss)
    bus: InvalidationBus = field(default_factory=LocalGenerations)
    counters: Counters = field(default_factory=Counters)
    # Answers from the store since the last flush, by stored version: [stored, last use, hits]. One
    # slot per version, updated in place, so a hot key's hits allocate nothing (flush_uses writes them).
    uses: dict[int, list] = field(default_factory=dict)
    # Which tier of a tiered store a lookup's answer came from (store.tiered), for Cache-Status.
    tier: Callable[[Stored], str | None] = lambda stored: None

    async def write(self, entry: Entry, meta: Meta, *, encoded: bool = False) -> Entry | None:
        """Store a version (compressed where ``cache_compress`` says so, unless the caller already
        ``encode``d it) with the lifetime policy gives it and its first check time; returns the
        entry as stored, None when it was not."""
        lifecycle = self.settings().lifecycle
        keep = keep_until(entry, lifecycle)
        check = first_check(entry, keep, lifecycle, random.uniform(0.8, 1.0))
        if not encoded:
            entry = await self.encode(entry)
        # The store evicts by use: it must know the latest. Checked here as well as in flush_uses,
        # so that the usual stored miss, with no uses noted, awaits no coroutine for nothing.
        if self.uses:
            await self.flush_uses()
        return entry if await self.store.put(entry, meta, keep_until=keep, check_at=check) else None

    async def encode(self, entry: Entry) -> Entry:
        """The entry as it is stored: compressed once here, so that no hit compresses anything. A
        large body is compressed in a thread, which awaits: a caller that checks the key's
        generation before writing encodes first, so that no invalidation slips in between."""
        settings = self.settings()
        coding = settings.coding
        if coding is None or not worth_coding(entry, coding, settings.compress_min_bytes):
            return entry
        if len(entry.body) > THREAD_ABOVE_BYTES:
            coded = await asyncio.to_thread(encode_now, entry, coding)
        else:
            coded = encode_now(entry, coding)
        if coded.coding is not None:
            self.counters.add(Count.STORED_COMPRESSED)
        return coded

    def note_use(self, stored: Stored, now: float, *, hit: bool) -> None:
        """A client was answered from ``stored``: noted without an await (a hit's budget), written to
        the store by ``flush_uses``."""
        slot = self.uses.get(id(stored))
        if slot is None or slot[0] is not stored:
            self.uses[id(stored)] = [stored, now, int(hit)]
        else:
            slot[1] = now
            slot[2] += hit

    async def flush_uses(self) -> None:
        """Write the uses noted since the last flush: each keeps its entry stored through the
        refresh window after it (policy.lifecycle.kept_while_asked)."""
        if not self.uses:
            return
        noted, self.uses = self.uses, {}
        lifecycle = self.settings().lifecycle
        uses = [
            Use(s.entry.key, s.entry.vary, s.entry.version, at, hits, kept_while_asked(at, lifecycle))
            for s, at, hits in noted.values()
        ]
        await self.store.record_uses(uses)

    @staticmethod
    def meta_after(previous: Meta | None, now: float) -> Meta:
        """The metadata of a new version: the use history carries over, failures do not."""
        if previous is None:
            return Meta(stored_at=now, last_access=now)
        return Meta(stored_at=now, last_access=previous.last_access, hits=previous.hits)
