"""The storage contract (mitmcache.store.base), run against every backend: the memory store, and a
store that serialises every value it holds, as a networked store does."""

import time
from collections.abc import Callable

import pytest

from mitmcache.entry import Meta
from mitmcache.store import codec, packed
from mitmcache.store.base import Store, Use
from mitmcache.store.memory import MemoryStore
from tests.support.entries import stored_entry
from tests.support.serialising_store import SerialisingStore

BACKENDS: dict[str, Callable[[], Store]] = {
    "memory": lambda: MemoryStore(2**30, 0),
    "serialising": SerialisingStore,
}
LATER = time.time() + 3600


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest) -> Store:
    return BACKENDS[request.param]()


def meta(**changes: float) -> Meta:
    return Meta(**({"stored_at": 1000.0, "last_access": 1000.0} | changes))


async def put(
    store: Store, key: str = "http://h/a", *, keep_until: float = LATER, check_at: float = LATER, **fields
):
    entry = stored_entry(key, body=b"body", **fields)
    assert await store.put(entry, meta(), keep_until=keep_until, check_at=check_at)
    return entry


async def test_a_stored_version_is_found_by_its_key_with_its_metadata(store):
    entry = await put(store)
    (found,) = await store.variants(entry.key)
    assert (found.entry, found.meta, found.keep_until) == (entry, meta(), LATER)
    assert list(await store.variants("http://h/other")) == []


async def test_what_is_held_in_process_is_what_a_lookup_finds_or_nothing(store):
    entry = await put(store)
    held = [(s.entry, s.meta, s.keep_until) for s in store.held(entry.key)]
    assert held in ([], [(entry, meta(), LATER)])
    assert list(store.held("http://h/other")) == []


async def test_a_write_replaces_the_variant_that_varies_the_same_way_and_keeps_others(store):
    await put(store, vary=(("accept", "a"),))
    await put(store, vary=(("accept", "b"),))
    newer = await put(store, vary=(("accept", "a"),))
    found = {s.entry.vary: s.entry.version for s in await store.variants(newer.key)}
    assert found[(("accept", "a"),)] == newer.version and len(found) == 2


async def test_discard_is_a_compare_and_delete_by_version(store):
    old = await put(store)
    new = await put(store)
    assert not await store.discard(old.key, old.vary, old.version)
    assert [s.entry.version for s in await store.peek(old.key)] == [new.version]
    assert await store.discard(new.key, new.vary, new.version)
    assert list(await store.peek(new.key)) == []


async def test_an_entry_past_its_lifetime_is_never_returned(store):
    entry = await put(store, keep_until=time.time() - 1)
    assert list(await store.variants(entry.key)) == []
    assert list(await store.peek(entry.key)) == []


async def test_metadata_changes_through_the_store_not_through_what_a_lookup_returned(store):
    entry = await put(store, keep_until=time.time() + 5)
    await store.record_uses([Use(entry.key, entry.vary, entry.version, 2000.0, 1, LATER)])
    await store.note_refresh_failure(entry.key, entry.vary, entry.version, 3000.0)
    (seen,) = await store.peek(entry.key)
    assert (seen.meta.last_access, seen.meta.hits, seen.meta.refresh_failures, seen.meta.retry_at) == (
        2000.0,
        1,
        1,
        3000.0,
    )
    assert seen.keep_until == LATER  # a use keeps it at least as long as the use asks


async def test_a_use_of_a_replaced_version_changes_nothing(store):
    old = await put(store)
    await put(store)
    await store.record_uses([Use(old.key, old.vary, old.version, 2000.0, 1, LATER)])
    (seen,) = await store.peek(old.key)
    assert (seen.meta.last_access, seen.meta.hits) == (1000.0, 0)


async def test_due_hands_out_each_entry_once_until_it_is_rescheduled(store):
    now = time.time()
    entry = await put(store, check_at=now - 1)
    await put(store, "http://h/later", check_at=now + 100)
    assert [s.entry.version for s in await store.due(now, 10)] == [entry.version]
    assert await store.due(now, 10) == []
    assert await store.reschedule(entry.key, entry.vary, entry.version, now - 0.5)
    assert [s.entry.key for s in await store.due(now, 10)] == [entry.key]


async def test_a_replaced_version_is_not_due_and_cannot_be_rescheduled(store):
    now = time.time()
    old = await put(store, check_at=now - 1)
    new = await put(store, check_at=now + 100)
    assert await store.due(now, 10) == []
    assert not await store.reschedule(old.key, old.vary, old.version, now)
    assert await store.reschedule(new.key, new.vary, new.version, now - 1)


async def test_due_gives_at_most_the_limit(store):
    now = time.time()
    for i in range(5):
        await put(store, f"http://h/{i}", check_at=now - 1)
    assert len(await store.due(now, 3)) == 3
    assert len(await store.due(now, 3)) == 2


async def test_delete_drops_every_variant_of_a_url(store):
    await put(store, vary=(("accept", "a"),))
    await put(store, vary=(("accept", "b"),))
    assert await store.delete("http://h/a") == 2
    assert await store.delete("http://h/a") == 0


async def test_purge_by_prefix_happens_in_the_store(store):
    for path in ("/api/1", "/api/2", "/other"):
        await put(store, f"http://h{path}")
    assert await store.delete_prefix("http://h/api/") == 2
    assert sorted(await store.keys()) == ["http://h/other"]


async def test_clear_counts_everything_dropped(store):
    await put(store, "http://h/1")
    await put(store, "http://h/2")
    assert await store.clear() == 2
    assert (await store.usage()).entries == 0


async def test_usage_counts_entries_and_urls(store):
    await put(store, "http://h/1", vary=(("accept", "a"),))
    await put(store, "http://h/1", vary=(("accept", "b"),))
    await put(store, "http://h/2")
    usage = await store.usage()
    assert (usage.entries, usage.keys) == (3, 2)
    assert usage.bytes > 0


# -- tags ------------------------------------------------------------------------------------------


async def test_variants_are_found_by_the_tags_they_carry(store):
    one = await put(store, "http://h/1", tags=("item-1", "list"))
    two = await put(store, "http://h/2", tags=("list",))
    await put(store, "http://h/3")
    assert {s.entry.version for s in await store.tagged("list")} == {one.version, two.version}
    assert [s.entry.version for s in await store.tagged("item-1")] == [one.version]
    assert list(await store.tagged("nothing")) == []


async def test_purge_by_tag_drops_only_the_variants_carrying_it(store):
    await put(store, "http://h/1", vary=(("accept", "a"),), tags=("item-1",))
    kept = await put(store, "http://h/1", vary=(("accept", "b"),), tags=("item-2",))
    await put(store, "http://h/2", tags=("item-1", "list"))
    assert await store.delete_tag("item-1") == 2
    assert [s.entry.version for s in await store.peek("http://h/1")] == [kept.version]
    assert list(await store.peek("http://h/2")) == []
    assert list(await store.tagged("item-1")) == [] and list(await store.tagged("list")) == []
    assert await store.delete_tag("item-1") == 0
    assert (await store.usage()).tags == 1  # item-2


async def test_a_replaced_variant_no_longer_carries_its_old_tags(store):
    await put(store, tags=("old",))
    new = await put(store, tags=("new",))
    assert list(await store.tagged("old")) == []
    assert await store.delete_tag("old") == 0
    assert [s.entry.version for s in await store.tagged("new")] == [new.version]


async def test_every_removal_keeps_the_tag_index(store):
    dropped = await put(store, "http://h/a", tags=("t",))
    await put(store, "http://h/b", tags=("t",))
    await put(store, "http://h/p/c", tags=("t",))
    await put(store, "http://h/d", tags=("t",))
    assert await store.discard(dropped.key, dropped.vary, dropped.version)
    assert await store.delete("http://h/b") == 1
    assert await store.delete_prefix("http://h/p/") == 1
    assert [s.entry.key for s in await store.tagged("t")] == ["http://h/d"]
    await store.clear()
    assert list(await store.tagged("t")) == [] and (await store.usage()).tags == 0


async def test_usage_counts_the_tags_known(store):
    await put(store, "http://h/1", tags=("a", "b"))
    await put(store, "http://h/2", tags=("b", "c"))
    assert (await store.usage()).tags == 3


async def test_a_soft_purge_hands_out_the_same_version_expired_as_of_the_mark(store):
    now = time.time()
    entry = await put(store, tags=("t",), response_time=now, lifetime=600.0, check_at=now + 600)
    other = await put(store, "http://h/other", response_time=now, lifetime=600.0)
    assert await store.stale_tag("t", now) == 1
    (seen,) = await store.variants(entry.key)
    assert seen.entry.version == entry.version and seen.entry.expires_at <= now
    assert seen.meta.stale_at == now and seen.keep_until == LATER
    assert (await store.peek(other.key))[0].entry.expires_at > now
    assert [s.entry.key for s in await store.due(now, 10)] == [entry.key]  # checked at once
    assert await store.discard(entry.key, entry.vary, entry.version)  # compare-and-delete still works


async def test_a_new_version_after_a_soft_purge_is_fresh(store):
    now = time.time()
    await put(store, tags=("t",), response_time=now, lifetime=600.0)
    await store.stale_tag("t", now)
    new = await put(store, tags=("t",), response_time=now, lifetime=600.0)
    (seen,) = await store.variants(new.key)
    assert seen.entry.expires_at > now and seen.meta.stale_at == 0


def test_an_entry_survives_serialisation_unchanged():
    entry = stored_entry(
        "http://h/a", vary=(("accept", None), ("x", "1")), fields=((b"etag", b'"\xe9"'),), body=b"\x00\xff"
    )
    assert codec.decode_entry(codec.encode_entry(entry)) == entry
    assert codec.decode_meta(codec.encode_meta(meta(hits=3))) == meta(hits=3)


def test_tags_and_withheld_fields_survive_serialisation():
    entry = stored_entry("http://h/a", tags=("a", "b:1"), withheld=((b"Surrogate-Key", b"a b:1"),))
    assert codec.decode_entry(codec.encode_entry(entry)) == entry
    assert packed.decode_entry(packed.encode_entry(entry)) == entry
    marked = meta(stale_at=1500.0)
    assert packed.decode_meta(packed.encode_meta(7, marked, 2000.0)).meta == marked


@pytest.mark.parametrize("raw", [b"", b"garbage", codec.FORMAT + b"\x00\x00\x00\x05{1:2}", codec.FORMAT])
def test_a_value_that_cannot_be_read_is_unreadable_not_a_crash(raw):
    with pytest.raises(codec.Unreadable):
        codec.decode_entry(raw)


async def test_a_stored_version_is_handed_back_with_every_field(store):
    entry = await put(
        store,
        coding="gzip",
        identity_etag='"id"',
        sent_length=12345,
        tags=("a", "b:1"),
        withheld=((b"Surrogate-Key", b"a b:1"),),
    )
    (found,) = await store.variants(entry.key)
    assert found.entry == entry and found.entry.sent_size == entry.sent_size
