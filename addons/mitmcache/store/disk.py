"""The storage contract on a local SQLite file (``CACHE_STORE=disk`` or ``sqlite:///abs/path``): one
machine's cache that survives restarts without Redis.

Every call runs on one thread of the store's own (``store.sqlite_file`` does the SQL), so the event
loop never waits on the disk. Writes go behind the request: ``put`` and ``record_uses`` only append
to a list of pending writes, committed as one transaction every ``FLUSH_SECONDS`` -- a crash loses
at most that much, and never leaves a half-written entry (SQLite's write-ahead log). Any other call
first applies what is pending, on the same thread, so every read sees every earlier write.

The store sits behind the bounded in-process tier (``store.tiered``), as Redis does: fresh hits
never reach it. A miss usually does not either: the store keeps the ``hash()`` of every URL it may
hold, so a lookup of a URL it surely lacks is answered at once, without a trip to its thread (on a
busy core that trip is what a miss's latency would wait for). The set may name URLs the file no
longer has (evicted, purged by prefix): it is rebuilt from the file once it holds twice as many. A disk that fails (full, removed) raises ``tiered.Unavailable`` from reads -- the
tier then serves on alone -- and loses the batch it could not write, logged once per failure run.
"""

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from ..entry import Entry, Meta, Stored
from .base import Usage, Use, Vary
from .sqlite_file import SqliteFile
from .tiered import Unavailable

log = logging.getLogger("mitmcache")

FLUSH_SECONDS = 0.2  # how often pending writes are committed: at most this much is lost in a crash
PENDING_MAX_BYTES = 16 * 1024 * 1024  # a burst of writes past this waits for its commit (memory bound)
KEYS_SLACK = 4096  # URL hashes beyond twice the stored rows before the set is rebuilt

type Write = Callable[[SqliteFile], Any]


class DiskStore:
    holds_everything = False

    def __init__(self, path: Path, max_bytes: int) -> None:
        """Opens (or creates) the file now: a path that cannot be used stops startup (``OSError``,
        ``sqlite3.Error``)."""
        self.path = path
        self.file = SqliteFile(path, max_bytes)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="mitmcache-disk")
        self._pending: list[Write] = []
        self._pending_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._failing = False
        self._maybe_stored = self.file.key_hashes()  # hash() of every URL the file may hold
        self._added_while_rebuilding: list[int] | None = None

    # -- the thread, and writes behind --------------------------------------------------------

    def start(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush_every_tick())

    async def close(self) -> None:
        """Commit what is pending and close the file (a clean stop loses nothing)."""
        if self._flusher is not None:
            self._flusher.cancel()
        try:
            await self._call(None)
        except Unavailable:
            pass
        await asyncio.get_running_loop().run_in_executor(self._thread, self.file.close)
        self._thread.shutdown()

    async def flush(self) -> None:
        await self._call(None)

    async def _flush_every_tick(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if self._pending:
                try:
                    await self._call(None)
                except Unavailable:
                    pass

    async def _call[T](self, read: Callable[[SqliteFile], T] | None) -> T:
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, batch, read)
        except sqlite3.Error as e:
            raise Unavailable(str(e)) from e

    def _run[T](self, batch: list[Write], read: Callable[[SqliteFile], T] | None) -> T | None:
        """On the store's thread: the pending writes as one transaction, then ``read``."""
        file = self.file
        if batch:
            try:
                file.begin()
                for write in batch:
                    write(file)
                file.commit()
            except sqlite3.Error as e:
                file.rollback()
                if not self._failing:
                    log.error("cache store %s: %d writes lost: %s", self.path, len(batch), e)
                self._failing = True
            else:
                if self._failing:
                    log.info("cache store %s: writing again", self.path)
                self._failing = False
        return read(file) if read is not None else None

    # -- reading ---------------------------------------------------------------------------------

    def held(self, key: str) -> Sequence[Stored]:
        """Nothing is held in memory (the in-process tier in front of it is): always asked."""
        return ()

    async def variants(self, key: str) -> Sequence[Stored]:
        if hash(key) not in self._maybe_stored:
            return ()
        now = time.time()
        found = await self._call(lambda f: f.variants(key, now))
        if found:
            self._pending.append(lambda f: f.touch(key, now))
        return found

    async def peek(self, key: str) -> Sequence[Stored]:
        if hash(key) not in self._maybe_stored:
            return ()
        now = time.time()
        return await self._call(lambda f: f.variants(key, now))

    async def keys(self) -> list[str]:
        return await self._call(SqliteFile.keys)

    # -- writing ---------------------------------------------------------------------------------

    async def put(self, entry: Entry, meta: Meta, *, keep_until: float, check_at: float) -> bool:
        if entry.size > self.file.max_bytes:
            return False
        self._pending.append(
            partial(SqliteFile.put, entry=entry, meta=meta, keep_until=keep_until, check_at=check_at)
        )
        self._pending_bytes += entry.size
        self._note_stored(hash(entry.key))
        if self._pending_bytes > PENDING_MAX_BYTES:
            await self._call(None)
        return True

    async def discard(self, key: str, vary: Vary, version: int) -> bool:
        return await self._call(lambda f: f.discard(key, vary, version))

    async def delete(self, key: str) -> int:
        self._maybe_stored.discard(hash(key))  # what is pending is deleted too
        return await self._call(lambda f: f.delete(key))

    async def delete_prefix(self, prefix: str) -> int:
        return await self._call(lambda f: f.delete_prefix(prefix))

    async def clear(self) -> int:
        self._maybe_stored = set()
        return await self._call(SqliteFile.clear)

    def _note_stored(self, url_hash: int) -> None:
        self._maybe_stored.add(url_hash)
        if self._added_while_rebuilding is not None:
            self._added_while_rebuilding.append(url_hash)
        elif len(self._maybe_stored) > 2 * self.file.rows + KEYS_SLACK:
            self._added_while_rebuilding = []
            asyncio.get_running_loop().create_task(self._rebuild_key_hashes())

    async def _rebuild_key_hashes(self) -> None:
        """The set from the file, plus what was stored while it was read: never missing a URL."""
        try:
            fresh = await self._call(SqliteFile.key_hashes)
        except Unavailable:
            fresh = None
        added, self._added_while_rebuilding = self._added_while_rebuilding or [], None
        if fresh is not None:
            self._maybe_stored = fresh | set(added)

    # -- tags --------------------------------------------------------------------------------------

    async def tagged(self, tag: str) -> Sequence[Stored]:
        now = time.time()
        return await self._call(lambda f: f.tagged(tag, now))

    async def delete_tag(self, tag: str) -> int:
        return await self._call(lambda f: f.delete_tag(tag))

    async def stale_tag(self, tag: str, at: float) -> int:
        return await self._call(lambda f: f.stale_tag(tag, at))

    # -- the schedule ----------------------------------------------------------------------------

    async def due(self, now: float, limit: int) -> list[Stored]:
        return await self._call(lambda f: f.due(now, limit))

    async def reschedule(self, key: str, vary: Vary, version: int, check_at: float) -> bool:
        return await self._call(lambda f: f.reschedule(key, vary, version, check_at))

    # -- metadata --------------------------------------------------------------------------------

    async def record_uses(self, uses: Sequence[Use]) -> None:
        if uses:
            self._pending.append(lambda f: f.record_uses(uses))

    async def note_refresh_failure(self, key: str, vary: Vary, version: int, retry_at: float) -> None:
        self._pending.append(lambda f: f.note_refresh_failure(key, vary, version, retry_at))

    async def usage(self) -> Usage:
        return await self._call(SqliteFile.usage)

    async def file_bytes(self) -> int:
        return await self._call(SqliteFile.file_bytes)

    async def resize(self, max_bytes: int, max_entries: int) -> None:
        """The in-process tier in front takes ``CACHE_MAX_BYTES``; this store keeps its own bound
        (``CACHE_STORE_MAX_BYTES``, ``resize_file``)."""

    async def resize_file(self, max_bytes: int) -> None:
        await self._call(lambda f: f.resize(max_bytes))
