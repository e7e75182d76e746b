"""The tag commands (cache.purge.tag, cache.purge.tag.soft, cache.refresh.tag) through mitmproxy's
command manager, answering with one key=value line, and the memory store's tag index bounds."""

import time

import pytest
from mitmproxy import ctx, exceptions

from mitmcache.entry import Meta
from mitmcache.store.memory import MemoryStore
from tests.support.entries import stored_entry
from tests.unit import test_control
from tests.unit.test_control import HOST, entry, put, settle, store

cache = test_control.cache  # the control plane's fixture: a Cache addon in a mitmproxy test context


def tagged(path: str, *tags: str):
    base = entry(f"{HOST}{path}")
    return stored_entry(
        base.key,
        host=base.host,
        fields=base.fields,
        body=base.body,
        etag=base.etag,
        upstream_etag=base.upstream_etag,
        date=base.date,
        response_time=base.response_time,
        tags=tags,
    )


async def test_the_tag_commands_are_reachable_from_mitmweb(cache):
    names = set(ctx.master.commands.commands)
    assert {"cache.purge.tag", "cache.purge.tag.soft", "cache.refresh.tag"} <= names


async def test_purge_tag_drops_the_tagged_entries_and_answers_on_one_line(cache):
    await put(cache, tagged("/a", "t"), tagged("/b", "t", "u"), tagged("/c", "u"))
    assert ctx.master.commands.call("cache.purge.tag", "t") == "tags=t purged=2 soft=false"
    assert [k for k in await store(cache).keys()] == [f"{HOST}/c"]


async def test_purge_tag_soft_marks_the_tagged_entries_stale(cache):
    await put(cache, tagged("/a", "t"))
    assert ctx.master.commands.call("cache.purge.tag.soft", "t") == "tags=t purged=1 soft=true"
    (seen,) = await store(cache).peek(f"{HOST}/a")
    assert seen.entry.expires_at <= time.time()


async def test_refresh_tag_refreshes_every_tagged_entry(cache):
    await put(cache, tagged("/a", "t"), tagged("/b", "t"))
    line = ctx.master.commands.call("cache.refresh.tag", "t")
    assert line == "tags=t result=refreshing refreshing=2 keys=2"
    await settle(cache)


async def test_a_tag_command_without_a_tag_is_a_command_error(cache):
    with pytest.raises(exceptions.CommandError):
        ctx.master.commands.call("cache.purge.tag")


async def test_eviction_keeps_the_memory_stores_tag_index_within_what_it_stores():
    small = MemoryStore(max_bytes=10**9, max_entries=10)
    now = time.time()
    for i in range(100):
        entry = stored_entry(f"http://h/{i}", tags=(f"item-{i}", "all"))
        await small.put(entry, Meta(stored_at=now), keep_until=now + 60, check_at=now + 60)
    usage = await small.usage()
    assert (usage.entries, usage.tags) == (10, 11)
    assert len(await small.tagged("all")) == 10
