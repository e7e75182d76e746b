"""The storage contract suite (test_store_contract.py) against the Redis store, and against the
tiered store (an in-process tier in front of Redis), on a real redis-server of the tests' own."""

import inspect
from collections.abc import AsyncIterator, Iterator

import pytest

from mitmcache.store.memory import MemoryStore
from mitmcache.store.redis import RedisStore
from mitmcache.store.redis_link import RedisLink
from mitmcache.store.tiered import TieredStore
from tests.support.redis_server import RedisServer
from tests.unit import test_store_contract as contract

# Every test of the suite that runs against a store, collected here under the same names.
for _name, _test in vars(contract).items():
    if _name.startswith("test_") and "store" in inspect.signature(_test).parameters:
        globals()[_name] = _test


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["redis", "tiered"])
async def store(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[object]:
    redis_server.command("FLUSHALL")
    link = RedisLink(redis_server.url, redis_server.url)
    shared = RedisStore(link)
    yield shared if request.param == "redis" else TieredStore(MemoryStore(2**30, 0), shared)
    await link.close()
