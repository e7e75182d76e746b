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

    def __getattr__(self, name: str):
        async def call(*args, **kwargs):
            result = await getattr(self.disk, name)(*args, **kwargs)
            path, max_bytes = self.disk.path, self.disk.file.max_bytes
            await self.disk.close()
            self.disk = DiskStore(path, max_bytes)
            self.disk.start()
            return result

        return call
