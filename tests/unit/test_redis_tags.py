"""The Redis store's tag index, on a real redis-server of the tests' own: every key it writes has a
lifetime, its sets never keep variants whose lifetime ended, and a purge by tag reaches the
in-process tier of another process (the contract itself: test_store_contract_redis.py)."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from mitmcache.store.memory import MemoryStore
from mitmcache.store.redis import TAGS, RedisStore, tag_set_key
from mitmcache.store.redis_link import RedisLink
from mitmcache.store.tiered import TieredStore
from tests.support.entries import stored_entry
from tests.support.redis_server import RedisServer
from tests.unit.test_store_contract import meta


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    redis_server.command("FLUSHALL")
    link = RedisLink(redis_server.url, redis_server.url)
    yield link
    await link.close()


async def put(store, key: str, tags: tuple[str, ...], keep_until: float):
    entry = stored_entry(key, tags=tags, response_time=time.time())
    await store.put(entry, meta(), keep_until=keep_until, check_at=keep_until)
    return entry


async def test_every_tag_key_lives_no_longer_than_its_longest_variant(link, redis_server):
    store, now = RedisStore(link), time.time()
    await put(store, "http://h/a", ("t",), now + 100)
    await put(store, "http://h/b", ("t",), now + 200)
    for key in (tag_set_key("t"), TAGS):
        expires_at = int(redis_server.command("PEXPIRETIME", key)) / 1000
        assert now + 199 < expires_at <= now + 201


async def test_a_tag_set_drops_variants_whose_lifetime_ended_when_the_tag_is_written(link, redis_server):
    store, now = RedisStore(link), time.time()
    await put(store, "http://h/old", ("t",), now + 0.2)
    await asyncio.sleep(0.3)
    await put(store, "http://h/new", ("t",), now + 100)
    members = redis_server.command("ZRANGE", tag_set_key("t"), "0", "-1")
    assert len(members) == 1 and members[0].endswith(b"http://h/new")


async def test_a_purged_tag_leaves_no_key_behind(link, redis_server):
    store, now = RedisStore(link), time.time()
    await put(store, "http://h/a", ("t", "u"), now + 100)
    assert await store.delete_tag("t") == 1
    assert int(redis_server.command("EXISTS", tag_set_key("t"), tag_set_key("u"))) == 0
    assert redis_server.command("ZRANGE", TAGS, "0", "-1") == []


async def test_a_use_keeps_the_variant_in_its_tag_sets_as_long_as_the_entry(link, redis_server):
    from mitmcache.store.base import Use

    store, now = RedisStore(link), time.time()
    entry = await put(store, "http://h/a", ("t",), now + 10)
    await store.record_uses([Use(entry.key, entry.vary, entry.version, now, 1, now + 500)])
    (score,) = [
        float(s) for s in redis_server.command("ZRANGE", tag_set_key("t"), "0", "-1", "WITHSCORES")[1::2]
    ]
    assert score / 1000 > now + 499


async def test_a_purge_by_tag_drops_the_copies_of_another_process(redis_server, link):
    other_link = RedisLink(redis_server.url, redis_server.url)
    other_link.start()
    try:
        other = TieredStore(MemoryStore(2**30, 0), RedisStore(other_link))
        other_link.on_event("drop-tag", lambda origin, args: other.drop_tag(args[0]))
        await asyncio.sleep(0.3)  # subscribed
        entry = await put(other, "http://h/a", ("t",), time.time() + 100)
        assert await other.local.peek(entry.key)
        assert await RedisStore(link).delete_tag("t") == 1
        await asyncio.sleep(0.1)
        assert list(await other.local.peek(entry.key)) == []
    finally:
        await other_link.close()
