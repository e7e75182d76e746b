"""The storage contract suite (test_store_contract.py) against the disk store, and against the
tiered store (an in-process tier in front of it), on a real SQLite file."""

import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mitmcache.store.disk import DiskStore
from mitmcache.store.memory import MemoryStore
from mitmcache.store.tiered import TieredStore
from tests.unit import test_store_contract as contract

# Every test of the suite that runs against a store, collected here under the same names.
for _name, _test in vars(contract).items():
    if _name.startswith("test_") and "store" in inspect.signature(_test).parameters:
        globals()[_name] = _test


@pytest.fixture(params=["disk", "tiered", "reopened"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    disk = DiskStore(tmp_path / "cache.db", 2**30)
    disk.start()
    if request.param == "reopened":  # every call answered by a store that reopened the file
        reopening = Reopening(disk)
        yield reopening
        await reopening.disk.close()
        return
    yield disk if request.param == "disk" else TieredStore(MemoryStore(2**30, 0), disk)
    await disk.close()


class Reopening:
    """A disk store closed and reopened on the same file after every write: what was written is
    what a restarted proxy finds."""

    def __init__(self, disk: DiskStore) -> None:
        self.disk = disk

    def held(self, key: str):
        return self.disk.held(key)  # synchronous, and a read: nothing to reopen for

    def __getattr__(self, name: str):
        async def call(*args, **kwargs):
            result = await getattr(self.disk, name)(*args, **kwargs)
            path, max_bytes = self.disk.path, self.disk.file.max_bytes
            await self.disk.close()
            self.disk = DiskStore(path, max_bytes)
            self.disk.start()
            return result

        return call


async def test_usage_counts_the_bytes_as_the_upstream_sent_them(store):
    await contract.put(store, "http://h/1", coding="gzip", sent_length=10_000)
    await contract.put(store, "http://h/2")
    one, two = [(await store.peek(k))[0].entry for k in ("http://h/1", "http://h/2")]
    usage = await _disk(store).usage()
    assert usage.sent_bytes == one.sent_size + two.sent_size > usage.bytes


async def test_the_tag_index_holds_only_what_the_file_stores(tmp_path: Path):
    entry = contract.stored_entry("http://h/0", body=b"x" * 1000, tags=("t", "u"))
    disk = DiskStore(tmp_path / "cache.db", entry.size * 3)
    disk.start()
    for n in range(10):  # evicts all but the last few
        await disk.put(
            contract.stored_entry(f"http://h/{n}", body=b"x" * 1000, tags=("t", f"item-{n}")),
            contract.meta(stored_at=float(n)),
            keep_until=contract.LATER,
            check_at=contract.LATER,
        )
    await disk.flush()
    stored = (await disk.usage()).entries
    (rows,) = disk.file.db.execute("SELECT count(*) FROM tags").fetchone()
    assert 0 < stored < 10 and rows == 2 * stored and (await disk.usage()).tags == stored + 1
    assert await disk.delete_tag("t") == stored
    assert disk.file.db.execute("SELECT count(*) FROM tags").fetchone() == (0,)
    await disk.close()


async def test_a_soft_purge_is_kept_across_a_restart(tmp_path: Path):
    now = contract.time.time()
    disk = DiskStore(tmp_path / "cache.db", 2**30)
    disk.start()
    entry = await contract.put(disk, tags=("t",), response_time=now, lifetime=600.0)
    assert await disk.stale_tag("t", now) == 1
    await disk.close()
    disk = DiskStore(tmp_path / "cache.db", 2**30)
    disk.start()
    (seen,) = await disk.variants(entry.key)
    assert seen.entry.version == entry.version and seen.entry.expires_at <= now and seen.meta.stale_at == now
    await disk.close()


def _disk(store: object) -> object:
    """The disk store itself (usage behind the tiered store is its in-process tier's)."""
    return store.shared if isinstance(store, TieredStore) else store
