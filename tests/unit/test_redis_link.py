"""The link to Redis (store/redis_link.py): short timeouts, a breaker that opens at the first
failure, one log line when it goes down and one when it is back, and lost notifications."""

import asyncio
import logging
import time

import pytest

from mitmcache.store import redis_link
from mitmcache.store.redis_link import RedisLink
from mitmcache.store.tiered import Unavailable
from tests.support.redis_server import RedisServer


@pytest.fixture
def fast_probe(monkeypatch):
    monkeypatch.setattr(redis_link, "PROBE_SECONDS", 0.1)
    monkeypatch.setattr(redis_link, "RESUBSCRIBE_SECONDS", 0.1)


async def test_a_failure_opens_the_breaker_and_later_calls_fail_at_once(fast_probe):
    link = RedisLink("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0")
    with pytest.raises(Unavailable):
        await link.run(link.client.ping)
    assert link.health().state == "down"
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await link.run(link.client.ping)
    assert time.monotonic() - started < 0.01
    await link.close()


async def test_a_slow_redis_is_a_down_redis(fast_probe, monkeypatch):
    with RedisServer() as server:
        link = RedisLink(server.url, server.url)
        await link.run(link.client.ping)
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await link.run(link.client.ping)
            assert time.monotonic() - started < redis_link.TIMEOUT_SECONDS + 0.3
        finally:
            server.resume()
        await link.close()


async def test_down_and_back_are_logged_once_each_and_lost_notifications_drop_the_tier(fast_probe, caplog):
    caplog.set_level(logging.WARNING, "mitmcache")
    with RedisServer() as server:
        link = RedisLink(server.url.replace("redis://", "redis://:pw@"), "redis://:[redacted]@host")
        server.command("CONFIG", "SET", "requirepass", "pw")
        restored, lost = [], []
        link.on_restored(lambda: restored.append(1))
        link.on_lost(lambda: lost.append(1))
        link.start()
        await asyncio.sleep(0.3)
        assert link.up and restored == [1]  # the first subscription: nothing before it can be trusted
        server.kill()
        for _ in range(3):
            with pytest.raises(Unavailable):
                await link.run(link.client.ping)
        server.start()
        server.command("CONFIG", "SET", "requirepass", "pw")
        deadline = time.monotonic() + 5
        while not link.up:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await link.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "is down" in line]) == 1
    assert len([line for line in lines if "sharing resumes" in line]) == 1
    assert lost == [1] and len(restored) >= 2
    assert all("pw" not in line.replace("[redacted]", "") for line in lines)
