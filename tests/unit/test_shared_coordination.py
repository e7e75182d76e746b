"""Coordination across processes over a real redis-server (shared_coordination.py): each
``RedisLink`` here stands for one proxy process."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from mitmcache.coalesce import Kind, Outcome
from mitmcache.shared_coordination import SharedCoalescer, SharedGenerations, SharedHitForMiss
from mitmcache.store.redis import hash_key, lock_key
from mitmcache.store.redis_link import RedisLink
from tests.support.redis_server import RedisServer

KEY = "http://h/herd"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def links(redis_server: RedisServer) -> AsyncIterator[list[RedisLink]]:
    redis_server.command("FLUSHALL")
    links = [RedisLink(redis_server.url, redis_server.url) for _ in range(2)]
    for link in links:
        link.start()
    await asyncio.sleep(0.2)  # subscribed
    yield links
    for link in links:
        await link.close()


def coalescers(links: list[RedisLink], timeout: float = 10.0) -> list[SharedCoalescer]:
    return [SharedCoalescer(link, lambda: timeout) for link in links]


async def test_one_process_leads_and_the_other_follows(links):
    one, two = coalescers(links)
    assert one.lead(KEY) and await one.claim(KEY, time.time())
    assert two.lead(KEY) and not await two.claim(KEY, time.time())


async def test_a_follower_is_woken_by_the_leaders_outcome_not_by_polling(links):
    one, two = coalescers(links)
    one.lead(KEY)
    await one.claim(KEY, time.time())
    two.lead(KEY)
    await two.claim(KEY, time.time())
    waiting = asyncio.ensure_future(two.wait(KEY, 5))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    one.finish(KEY, Outcome(Kind.STORED, revalidated=True))
    assert await waiting == Outcome(Kind.STORED, revalidated=True)
    assert time.monotonic() - started < 0.1  # well before the first look at the lock (0.25 s)


async def test_an_unshareable_outcome_reaches_the_followers(links):
    one, two = coalescers(links)
    one.lead(KEY)
    await one.claim(KEY, time.time())
    two.lead(KEY)
    await two.claim(KEY, time.time())
    one.finish(KEY, Outcome(Kind.UNSHAREABLE, detail="private"))
    assert (await two.wait(KEY, 5)).kind is Kind.UNSHAREABLE


async def test_a_leader_that_dies_holds_the_key_no_longer_than_its_lifetime(links, redis_server):
    one, two = coalescers(links, timeout=1.0)  # REQ_TIMEOUT 1 s: the lock lives at most 1 s
    one.lead(KEY)
    await one.claim(KEY, time.time())
    one.close()  # dies: stops extending, never releases
    two.lead(KEY)
    assert not await two.claim(KEY, time.time())
    started = time.monotonic()
    assert (await two.wait(KEY, 5)).kind is Kind.ABANDONED  # look again: someone leads anew
    assert time.monotonic() - started < 1.5


async def test_the_lock_is_extended_while_the_fetch_runs(links, redis_server):
    one, _ = coalescers(links, timeout=0.6)
    one.lead(KEY)
    await one.claim(KEY, time.time())
    await asyncio.sleep(1.5)  # more than twice its lifetime
    assert redis_server.command("EXISTS", lock_key(KEY)) == 1
    one.finish(KEY, Outcome(Kind.STORED))
    await asyncio.sleep(0.1)
    assert redis_server.command("EXISTS", lock_key(KEY)) == 0


def stored_by_another_process(redis_server, at: float) -> None:
    redis_server.command("HSET", hash_key(KEY), "url", KEY, "w", str(int(at * 1000)))


async def test_a_claim_after_another_process_stored_the_url_rereads_instead_of_fetching(links, redis_server):
    one, _ = coalescers(links)
    read_at = time.time()  # its lookup found nothing
    stored_by_another_process(redis_server, read_at + 1)
    one.lead(KEY)
    assert not await one.claim(KEY, read_at)
    assert await one.wait(KEY, 1) == Outcome(Kind.ABANDONED)  # finished as stored: look again


async def test_a_write_between_the_lookups_read_and_its_late_claim_is_reread_not_fetched_again(
    links, redis_server
):
    """Under a herd, a process's loop can get to its read's answer later than another process takes
    to fetch and store the URL: what counts is when the read began."""
    one, _ = coalescers(links)
    read_at = time.time()
    await asyncio.sleep(0.05)
    stored_by_another_process(redis_server, time.time())
    await asyncio.sleep(0.05)  # this process's loop was busy with the rest of the herd
    one.lead(KEY)
    assert not await one.claim(KEY, read_at)


async def test_a_claim_leads_when_the_url_was_written_before_its_read(links, redis_server):
    one, _ = coalescers(links)
    stored_by_another_process(redis_server, time.time() - 1)  # a variant this request cannot use
    one.lead(KEY)
    assert await one.claim(KEY, time.time())


async def test_without_redis_each_process_leads_alone(redis_server):
    link = RedisLink("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0")
    try:
        (alone,) = coalescers([link])
        assert alone.lead(KEY) and await alone.claim(KEY, time.time())
        assert not alone.lead(KEY)  # local coalescing still holds
    finally:
        await link.close()


async def test_hit_for_miss_is_shared(links):
    one, two = SharedHitForMiss(links[0]), SharedHitForMiss(links[1])
    one.remember(KEY, time.time(), 30)
    await asyncio.sleep(0.1)
    assert two.active(KEY, time.time())
    one.forget(KEY)
    await asyncio.sleep(0.1)
    assert not two.active(KEY, time.time())


async def test_an_invalidation_bumps_the_generation_in_every_process(links):
    one, two = SharedGenerations(links[0]), SharedGenerations(links[1])
    before = two.generation(KEY)
    one.invalidate(KEY)
    await asyncio.sleep(0.1)
    assert not two.current(KEY, before)
    everything = two.generation("http://h/other")
    one.invalidate_all()
    await asyncio.sleep(0.1)
    assert not two.current("http://h/other", everything)
