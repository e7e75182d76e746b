"""The in-process store: LRU by URL, bounded by bytes and entries, variants per URL. (What every
store does is in test_store_contract.py.)"""

import time

from mitmcache.entry import Entry, Meta
from mitmcache.store import memory
from mitmcache.store.base import Use
from mitmcache.store.memory import MAX_VARIANTS_PER_KEY, MemoryStore
from tests.support.entries import stored_entry


def make_entry(key: str = "http://example.com/a", *, vary: str | None = None, size: int = 100) -> Entry:
    """An entry of ``size`` bytes for ``key``, varying on accept-language when ``vary`` is given."""
    return stored_entry(key, vary=(("accept-language", vary),) if vary is not None else (), size=size)


async def put(store: MemoryStore, entry: Entry) -> None:
    later = time.time() + 3600
    await store.put(entry, Meta(stored_at=0.0), keep_until=later, check_at=later)


async def filled(store: MemoryStore, *keys: str, size: int = 100) -> MemoryStore:
    for key in keys:
        await put(store, make_entry(key, size=size))
    return store


async def usage(store: MemoryStore) -> tuple[int, int, int, int]:
    u = await store.usage()
    return u.entries, u.keys, u.bytes, u.evictions


async def test_a_stored_entry_is_found_by_its_key():
    store = MemoryStore(max_bytes=10_000, max_entries=0)
    entry = make_entry("k")
    await put(store, entry)
    assert [v.entry for v in await store.variants("k")] == [entry]
    assert list(await store.variants("other")) == []
    assert await usage(store) == (1, 1, 100, 0)


async def test_the_entry_bound_evicts_the_least_recently_used_url():
    store = await filled(MemoryStore(max_bytes=10_000, max_entries=3), "a", "b", "c")
    await store.variants("a")  # a use
    await put(store, make_entry("d"))
    assert await store.keys() == ["c", "a", "d"]
    assert await usage(store) == (3, 3, 300, 1)


async def test_peek_is_not_a_use():
    store = await filled(MemoryStore(max_bytes=10_000, max_entries=2), "a", "b")
    assert len(await store.peek("a")) == 1
    await put(store, make_entry("c"))
    assert await store.keys() == ["b", "c"]


async def test_storing_again_is_a_use():
    store = await filled(MemoryStore(max_bytes=10_000, max_entries=2), "a", "b")
    await put(store, make_entry("a"))
    await put(store, make_entry("c"))
    assert await store.keys() == ["a", "c"]


async def test_the_byte_bound_evicts_until_everything_fits():
    store = await filled(MemoryStore(max_bytes=300, max_entries=0), "a", "b", "c")
    await put(store, make_entry("d", size=250))
    assert await store.keys() == ["d"]
    assert await usage(store) == (1, 1, 250, 3)


async def test_evicting_a_url_drops_all_its_variants_and_counts_each():
    store = MemoryStore(max_bytes=10_000, max_entries=3)
    await put(store, make_entry("a", vary="en"))
    await put(store, make_entry("a", vary="fr"))
    await put(store, make_entry("b"))
    await put(store, make_entry("c"))
    assert await store.keys() == ["b", "c"]
    assert await usage(store) == (2, 2, 200, 2)


async def test_an_entry_larger_than_the_byte_bound_is_not_stored():
    store = await filled(MemoryStore(max_bytes=300, max_entries=0), "a")
    await put(store, make_entry("big", size=301))
    assert await store.keys() == ["a"]
    assert await usage(store) == (1, 1, 100, 0)


async def test_an_entry_that_fits_is_kept_over_older_variants_of_its_own_url():
    """The newest response of a URL is never evicted to make room for that URL's older variants."""
    store = MemoryStore(max_bytes=250, max_entries=0)
    await put(store, make_entry("a", vary="en"))
    await put(store, make_entry("a", vary="fr"))
    newest = make_entry("a", vary="de")
    await put(store, newest)
    assert newest in [v.entry for v in await store.variants("a")]
    assert await usage(store) == (2, 1, 200, 1)


async def test_a_variant_that_varies_the_same_way_is_replaced():
    store = MemoryStore(max_bytes=10_000, max_entries=0)
    await put(store, make_entry("a", vary="en", size=100))
    await put(store, make_entry("a", vary="fr", size=100))
    newer = make_entry("a", vary="en", size=150)
    await put(store, newer)
    variants = await store.variants("a")
    assert [v.entry.vary for v in variants] == [(("accept-language", "fr"),), (("accept-language", "en"),)]
    assert newer in [v.entry for v in variants]
    assert await usage(store) == (2, 1, 250, 0)


async def test_variants_per_url_are_capped_dropping_the_oldest():
    store = MemoryStore(max_bytes=10**9, max_entries=0)
    for i in range(MAX_VARIANTS_PER_KEY + 3):
        await put(store, make_entry("a", vary=str(i)))
    variants = await store.variants("a")
    assert len(variants) == MAX_VARIANTS_PER_KEY
    assert variants[0].entry.vary == (("accept-language", "3"),)
    assert (await usage(store))[:3] == (MAX_VARIANTS_PER_KEY, 1, MAX_VARIANTS_PER_KEY * 100)


async def test_past_the_variant_cap_the_least_recently_used_variant_goes_not_the_oldest():
    store = MemoryStore(max_bytes=10**9, max_entries=0)
    popular = make_entry("a", vary="popular")
    await put(store, popular)
    for i in range(MAX_VARIANTS_PER_KEY):
        await store.record_uses([Use("a", popular.vary, popular.version, 1000.0 + i, 1, 0.0)])
        await put(store, make_entry("a", vary=f"junk{i}"))
    varies = [v.entry.vary for v in await store.variants("a")]
    assert popular.vary in varies
    assert (("accept-language", "junk0"),) not in varies


async def test_resize_evicts_at_once_what_no_longer_fits():
    store = await filled(MemoryStore(max_bytes=10_000, max_entries=0), "a", "b", "c", "d")
    await store.resize(max_bytes=250, max_entries=0)
    assert await store.keys() == ["c", "d"]
    await store.resize(max_bytes=10_000, max_entries=1)
    assert await store.keys() == ["d"]
    assert await usage(store) == (1, 1, 100, 3)


async def test_entries_evicted_before_their_check_time_are_swept_from_the_schedule(monkeypatch):
    """A flood of keys that are evicted long before they are due must not grow the schedule."""
    monkeypatch.setattr(memory, "COMPACT_SLACK", 0)
    store = await filled(MemoryStore(max_bytes=10**9, max_entries=3), *[str(i) for i in range(10)])
    assert await store.due(time.time(), 10) == []
    assert len(store._schedule) == 3  # only what is still stored
