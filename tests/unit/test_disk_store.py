"""The disk store's own behaviour beyond the contract (test_store_contract_disk.py): writes behind,
eviction by bytes in use order, and files it cannot read, on real SQLite files."""

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from mitmcache.entry import Meta
from mitmcache.store.base import Use
from mitmcache.store.disk import FLUSH_SECONDS, DiskStore
from mitmcache.store.sqlite_file import after_prefix
from tests.support.entries import stored_entry

LATER = time.time() + 3600


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM entries").fetchone()[0]


@pytest.fixture
async def disk(tmp_path: Path):
    store = DiskStore(tmp_path / "cache.db", 2**30)
    store.start()
    yield store
    await store.close()


async def put(store: DiskStore, key: str, body: bytes = b"body"):
    entry = stored_entry(key, body=body)
    assert await store.put(entry, Meta(stored_at=time.time()), keep_until=LATER, check_at=LATER)
    return entry


async def test_a_write_returns_before_it_reaches_the_file_and_is_committed_within_the_flush_interval(disk):
    await put(disk, "http://h/a")
    assert rows(disk.path) == 0  # behind the request
    await asyncio.sleep(FLUSH_SECONDS * 3)
    assert rows(disk.path) == 1


async def test_a_read_sees_every_write_made_before_it(disk):
    entry = await put(disk, "http://h/a")
    assert [s.entry.version for s in await disk.peek(entry.key)] == [entry.version]


async def test_closing_commits_what_is_pending(tmp_path):
    store = DiskStore(tmp_path / "cache.db", 2**30)
    store.start()
    await put(store, "http://h/a")
    await store.close()
    assert rows(tmp_path / "cache.db") == 1


async def test_eviction_keeps_the_file_within_its_bound_dropping_the_least_recently_used(tmp_path):
    store = DiskStore(tmp_path / "cache.db", 40_000)
    store.start()
    first = await put(store, "http://h/first", b"x" * 8000)
    for i in range(8):
        await put(store, f"http://h/{i}", b"x" * 8000)
        await store.record_uses([Use(first.key, first.vary, first.version, time.time(), 1, LATER)])
    usage = await store.usage()
    assert usage.bytes <= 40_000 and usage.evictions > 0
    assert await store.peek(first.key)  # in use: kept
    assert not await store.peek("http://h/0")  # least recently used: evicted
    await store.close()


async def test_a_smaller_bound_evicts_at_once(disk):
    for i in range(5):
        await put(disk, f"http://h/{i}", b"x" * 8000)
    await disk.resize_file(20_000)
    assert (await disk.usage()).bytes <= 20_000


async def test_an_entry_larger_than_the_bound_is_not_stored(tmp_path):
    store = DiskStore(tmp_path / "cache.db", 4096)
    entry = stored_entry("http://h/big", body=b"x" * 8192)
    assert not await store.put(entry, Meta(stored_at=1.0), keep_until=LATER, check_at=LATER)
    await store.close()


async def test_an_unreadable_row_is_a_miss_and_counted(disk):
    entry = await put(disk, "http://h/a")
    await disk.flush()
    with sqlite3.connect(disk.path) as db:
        db.execute("UPDATE entries SET entry = x'00ff'")
    assert list(await disk.variants(entry.key)) == []
    assert disk.file.unreadable == 1


async def test_a_file_that_is_not_a_database_is_set_aside_and_the_store_starts_empty(tmp_path):
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not a database" * 100)
    store = DiskStore(path, 2**30)
    assert (await store.usage()).entries == 0
    assert [p.name.startswith("cache.db.unreadable-") for p in tmp_path.iterdir()].count(True) == 1
    await store.close()


async def test_a_file_of_another_layout_is_emptied(tmp_path):
    path = tmp_path / "cache.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE entries (whatever)")
        db.execute("INSERT INTO entries VALUES (1)")
        db.execute("PRAGMA user_version = 99")
    store = DiskStore(path, 2**30)
    await put(store, "http://h/a")
    assert (await store.usage()).entries == 1
    await store.close()


@pytest.mark.parametrize(
    ("prefix", "after"), [(b"ab", b"ac"), (b"a\xff", b"b"), (b"\xff\xff", None), (b"", None)]
)
def test_after_prefix_bounds_every_key_with_the_prefix(prefix, after):
    assert after_prefix(prefix) == after


async def test_a_url_never_stored_is_answered_without_reading_the_file(disk, monkeypatch):
    await put(disk, "http://h/a")

    def no_reads(*_):
        raise AssertionError("read the file")

    monkeypatch.setattr(disk, "_call", no_reads)
    assert await disk.variants("http://h/never") == ()


async def test_urls_stored_before_a_restart_are_found(tmp_path):
    store = DiskStore(tmp_path / "cache.db", 2**30)
    store.start()
    entry = await put(store, "http://h/a")
    await store.close()
    reopened = DiskStore(tmp_path / "cache.db", 2**30)
    assert [s.entry.version for s in await reopened.variants(entry.key)] == [entry.version]
    await reopened.close()


async def test_the_set_of_stored_urls_is_rebuilt_from_the_file_and_loses_none(tmp_path, monkeypatch):
    # the globals DiskStore reads (other tests may re-import the package under the same name)
    monkeypatch.setitem(DiskStore._note_stored.__globals__, "KEYS_SLACK", 4)
    store = DiskStore(tmp_path / "cache.db", 40_000)  # room for four entries: the rest are evicted
    store.start()
    rebuilds = 0
    rebuild = store._rebuild_key_hashes

    async def counted() -> None:
        nonlocal rebuilds
        rebuilds += 1
        await rebuild()

    monkeypatch.setattr(store, "_rebuild_key_hashes", counted)
    for i in range(30):
        await put(store, f"http://h/{i}", b"x" * 8000)
        await asyncio.sleep(0)
    await store.flush()
    for _ in range(100):  # a rebuild under way finishes
        if store._added_while_rebuilding is None:
            break
        await asyncio.sleep(0.05)
    assert rebuilds >= 1
    store._added_while_rebuilding = []
    await rebuild()
    assert store._maybe_stored == {hash(key) for key in await store.keys()}
    await store.close()
