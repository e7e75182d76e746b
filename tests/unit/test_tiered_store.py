"""The tiered store: a bounded in-process tier in front of a shared store (store/tiered.py)."""

import asyncio
import time

import pytest

from mitmcache.entry import Meta
from mitmcache.store.base import read_began
from mitmcache.store.memory import MemoryStore
from mitmcache.store.tiered import LOCAL, SHARED, TieredStore, Unavailable
from tests.support.entries import stored_entry
from tests.support.serialising_store import SerialisingStore

LATER = time.time() + 3600


class Shared(SerialisingStore):
    """A shared store that counts reads and can be made unavailable."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.up = True
        self.during_read = None  # called while a read is under way

    async def variants(self, key):
        if not self.up:
            raise Unavailable("down")
        self.reads += 1
        if self.during_read:
            self.during_read()
        return await super().variants(key)

    async def put(self, entry, meta, *, keep_until, check_at):
        if not self.up:
            raise Unavailable("down")
        return await super().put(entry, meta, keep_until=keep_until, check_at=check_at)


@pytest.fixture
def shared() -> Shared:
    return Shared()


@pytest.fixture
def tiered(shared: Shared) -> TieredStore:
    return TieredStore(MemoryStore(2**30, 0), shared, lambda: shared.up)


async def put_shared(shared: Shared, key: str = "http://h/a", **fields):
    entry = stored_entry(key, response_time=time.time(), **fields)
    await shared.put(entry, Meta(stored_at=1.0), keep_until=LATER, check_at=LATER)
    return entry


async def test_a_miss_here_is_read_from_the_shared_store_and_kept_for_the_next_hit(tiered, shared):
    entry = await put_shared(shared)
    (first,) = await tiered.variants(entry.key)
    (second,) = await tiered.variants(entry.key)
    assert first.entry == second.entry == entry and shared.reads == 1
    assert (tiered.tier_of(first), tiered.tier_of(second)) == (SHARED, LOCAL)


async def test_a_lookup_that_joins_a_shared_read_under_way_learns_when_that_read_began(tiered, shared):
    """One read of a URL at a time: a lookup that joins it late has an answer as old as the read,
    and a claim must count from then (shared_coordination.SharedCoalescer.claim)."""
    release = asyncio.Event()
    original = shared.variants

    async def slow_variants(key):
        await release.wait()
        return await original(key)

    shared.variants = slow_variants
    first_called = time.time()
    first = asyncio.ensure_future(tiered.variants("http://h/cold"))
    await asyncio.sleep(0.05)
    joined_called = time.time()
    joined = asyncio.ensure_future(tiered.variants("http://h/cold"))
    await asyncio.sleep(0)
    release.set()
    first_read, joined_read = await first, await joined
    assert first_read == joined_read == []
    assert first_called <= read_began(joined_read, joined_called) < joined_called


async def test_a_copy_held_here_was_read_when_it_was_asked_for(tiered, shared):
    entry = await put_shared(shared)
    await tiered.variants(entry.key)
    asked = time.time()
    assert read_began(await tiered.variants(entry.key), asked) == asked


async def test_a_stale_copy_here_is_read_again_from_the_shared_store(tiered, shared):
    entry = await put_shared(shared, lifetime=0.0)
    await tiered.variants(entry.key)
    await tiered.variants(entry.key)
    assert shared.reads == 2  # what to do with a stale copy depends on every process's uses


async def test_a_dropped_url_is_read_again(tiered, shared):
    entry = await put_shared(shared)
    await tiered.variants(entry.key)
    tiered.drop(entry.key)
    await tiered.variants(entry.key)
    assert shared.reads == 2


@pytest.mark.parametrize("how", ["prefix", "all", "restored"])
async def test_a_purge_a_clear_or_lost_notifications_empty_the_tier(tiered, shared, how):
    entry = await put_shared(shared)
    await tiered.variants(entry.key)
    {"prefix": lambda: tiered.drop_prefix("http://h/"), "all": tiered.drop_all, "restored": tiered.restored}[
        how
    ]()
    assert (await tiered.local.usage()).entries == 0


async def test_a_read_that_overlapped_a_drop_is_not_kept(tiered, shared):
    entry = await put_shared(shared)
    shared.during_read = lambda: tiered.drop(entry.key)  # another process changed it meanwhile
    await tiered.variants(entry.key)
    assert (await tiered.local.usage()).entries == 0


async def test_writes_go_to_both_tiers(tiered, shared):
    entry = stored_entry("http://h/w", response_time=time.time())
    assert await tiered.put(entry, Meta(stored_at=1.0), keep_until=LATER, check_at=LATER)
    assert [s.entry for s in await shared.peek(entry.key)] == [entry]
    assert [s.entry for s in await tiered.local.peek(entry.key)] == [entry]


async def test_without_the_shared_store_the_tier_carries_on_alone(tiered, shared):
    shared.up = False
    entry = stored_entry("http://h/alone", response_time=time.time())
    assert await tiered.put(entry, Meta(stored_at=1.0), keep_until=LATER, check_at=time.time() - 1)
    assert [s.entry for s in await tiered.variants(entry.key)] == [entry]
    assert [s.entry for s in await tiered.due(time.time(), 10)] == [entry]  # its own schedule


async def test_when_the_shared_store_goes_away_the_copies_here_are_checked(tiered, shared):
    entry = await put_shared(shared)
    await tiered.variants(entry.key)  # held here, scheduled only to be dropped at its end
    shared.up = False
    tiered.lost()
    assert [s.entry for s in await tiered.due(time.time(), 10)] == [entry]


async def test_a_shared_store_failing_mid_call_is_a_fallback_not_an_error(tiered, shared):
    entry = await put_shared(shared)
    await tiered.variants(entry.key)

    async def down(*args, **kwargs):
        raise Unavailable("down")

    shared.peek = shared.keys = shared.delete = down
    assert [s.entry for s in await tiered.peek(entry.key)] == [entry]
    assert await tiered.keys() == [entry.key]
    assert await tiered.delete(entry.key) == 1
