"""The disk store's file: the storage contract's operations as SQL on one SQLite database.

Synchronous on purpose: ``store.disk`` runs every call on one thread of its own, so the event loop
never waits on the disk, and applies writes in batches (one transaction each). SQLite's write-ahead
log (WAL) makes every transaction atomic and durable: a process killed at any instant leaves the
file as of its last committed batch, never half a row. ``synchronous=FULL`` syncs each commit, so a
crash of the machine itself also loses only the batch under way.

One row per stored variant: the URL (bytes, as the engine's keys may carry escaped non-UTF-8
bytes), the variant (the ``Vary`` values, packed), the entry (``store.packed``: what the Redis store
keeps) and its metadata as columns, so that a use or a refresh failure rewrites a few numbers,
never the body. ``used`` orders eviction (least recently used first); ``size`` is what the entry
counts against ``CACHE_STORE_MAX_BYTES``, ``sent`` what it would as the upstream sent it
(``Usage.sent_bytes``); ``stale_at`` is when a soft purge marked it (0: never), applied as it is read.

The tag index is a table of (tag, entry) rows whose entry references its row ``ON DELETE CASCADE``:
every removal (replace, evict, discard, purge) drops the entry's tags in the same statement, so the
index never outlives nor outgrows what is stored, in memory or across a restart.
"""

import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import msgpack

from ..entry import Entry, Meta, Stored, as_marked
from . import packed
from .base import Usage, Use, Vary
from .codec import Unreadable
from .memory import MAX_VARIANTS_PER_KEY

log = logging.getLogger("mitmcache")

SCHEMA_VERSION = 2  # 2: the tag index, stale_at and sent; PRAGMA user_version: a file of another layout is emptied, never misread
LEASE_SECONDS = 60.0  # a handed-out due entry is due again after this if nobody rescheduled it
WAL_MAX_BYTES = 4 * 1024 * 1024  # the write-ahead log is checkpointed and cut back past this
WAL_MIN_BYTES = 64 * 1024

_COLUMNS = (
    "key, variant, version, entry, stored_at, last_access, hits, failures, retry_at, keep_until, stale_at"
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    variant BLOB NOT NULL,
    version INTEGER NOT NULL,
    entry BLOB NOT NULL,
    stored_at REAL NOT NULL,
    last_access REAL NOT NULL,
    hits INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    retry_at REAL NOT NULL,
    keep_until REAL NOT NULL,
    check_at REAL NOT NULL,
    used REAL NOT NULL,
    size INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    stale_at REAL NOT NULL,
    UNIQUE (key, variant)
);
CREATE TABLE IF NOT EXISTS tags (
    tag BLOB NOT NULL,
    entry INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, entry)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_entry ON tags (entry);
CREATE INDEX IF NOT EXISTS entries_by_check ON entries (check_at);
CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used);
PRAGMA user_version = {SCHEMA_VERSION};
"""


def url_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def variant_bytes(vary: Vary) -> bytes:
    return msgpack.packb([list(pair) for pair in vary])


def after_prefix(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix`` (None: none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class SqliteFile:
    """The database file, used from one thread at a time (``store.disk``'s)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.evictions = 0
        self.unreadable = 0
        self.db = self._open(path)
        rows, size = self.db.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone()
        self.rows, self.bytes = int(rows), int(size)

    def _open(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as e:  # not a database at all: set it aside, start empty
            db.close()
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            path.rename(aside)
            log.warning("cache store %s could not be read (%s): moved to %s, starting empty", path, e, aside)
            return self._open(path)
        if version not in (0, SCHEMA_VERSION):
            log.warning("cache store %s was written by another version of the cache: starting empty", path)
            db.execute("DROP TABLE IF EXISTS tags")
            db.execute("DROP TABLE IF EXISTS entries")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")  # the tag index follows every removal (ON DELETE CASCADE)
        db.executescript(_SCHEMA)
        self._limit_log(db)
        return db

    def _limit_log(self, db: sqlite3.Connection) -> None:
        """The write-ahead log counts against the bound too: checkpointed and cut back past an
        eighth of it (between 64 KB and ``WAL_MAX_BYTES``)."""
        limit = min(WAL_MAX_BYTES, max(WAL_MIN_BYTES, self.max_bytes // 8))
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute(f"PRAGMA journal_size_limit = {limit}")
        db.execute(f"PRAGMA wal_autocheckpoint = {max(1, limit // page_size)}")

    def close(self) -> None:
        self.db.close()

    # -- batches of writes -----------------------------------------------------------------------

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # -- reading ---------------------------------------------------------------------------------

    def _stored(self, row: Sequence) -> Stored | None:
        key, _, version, raw, stored_at, last_access, hits, failures, retry_at, keep_until, stale_at = row
        try:
            entry = packed.decode_entry(raw)
            if entry.version != version or url_bytes(entry.key) != key:
                raise Unreadable("the row of another version")
        except Unreadable:
            self.unreadable += 1
            return None
        meta = Meta(stored_at, last_access, hits, failures, retry_at, stale_at)
        return Stored(as_marked(entry, meta), meta, keep_until)

    def variants(self, key: str, now: float) -> list[Stored]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE key = ? AND keep_until > ? ORDER BY stored_at",
            (url_bytes(key), now),
        ).fetchall()
        return [s for s in map(self._stored, rows) if s is not None]

    def touch(self, key: str, at: float) -> None:
        self.db.execute("UPDATE entries SET used = max(used, ?) WHERE key = ?", (at, url_bytes(key)))

    def key_hashes(self) -> set[int]:
        """``hash()`` of every stored URL: ``store.disk`` answers most misses without reading."""
        rows = self.db.execute("SELECT DISTINCT key FROM entries")
        return {hash(row[0].decode("utf-8", "surrogateescape")) for row in rows}

    def keys(self) -> list[str]:
        rows = self.db.execute("SELECT key FROM entries GROUP BY key ORDER BY max(used)").fetchall()
        return [row[0].decode("utf-8", "surrogateescape") for row in rows]

    def usage(self) -> Usage:
        entries, keys, sent = self.db.execute(
            "SELECT count(*), count(DISTINCT key), coalesce(sum(sent), 0) FROM entries"
        ).fetchone()
        (tags,) = self.db.execute("SELECT count(*) FROM (SELECT DISTINCT tag FROM tags)").fetchone()
        return Usage(
            entries=entries, keys=keys, bytes=self.bytes, evictions=self.evictions, sent_bytes=sent, tags=tags
        )

    def file_bytes(self) -> int:
        """What the store takes on disk: the database and its write-ahead log."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    # -- writing ---------------------------------------------------------------------------------

    def put(self, entry: Entry, meta: Meta, keep_until: float, check_at: float) -> None:
        key, variant = url_bytes(entry.key), variant_bytes(entry.vary)
        self._delete_where("key = ? AND variant = ?", (key, variant))
        others = self.db.execute("SELECT id FROM entries WHERE key = ? ORDER BY stored_at", (key,)).fetchall()
        for (rowid,) in others[: max(0, len(others) - MAX_VARIANTS_PER_KEY + 1)]:
            self._delete_where("id = ?", (rowid,))
        self._make_room(entry.size)
        cursor = self.db.execute(
            f"INSERT INTO entries ({_COLUMNS}, check_at, used, size, sent) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                variant,
                entry.version,
                packed.encode_entry(entry),
                meta.stored_at,
                meta.last_access,
                meta.hits,
                meta.refresh_failures,
                meta.retry_at,
                keep_until,
                meta.stale_at,
                check_at,
                max(meta.stored_at, meta.last_access),
                entry.size,
                entry.sent_size,
            ),
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO tags VALUES (?, ?)",
            [(url_bytes(tag), cursor.lastrowid) for tag in entry.tags],
        )
        self.bytes += entry.size
        self.rows += 1

    def _make_room(self, size: int) -> None:
        """Evict least recently used entries until ``size`` more bytes fit: before the insert, so
        that the pages they free are reused and the file does not grow past the bound."""
        while self.bytes + size > self.max_bytes:
            rows = self.db.execute("SELECT id FROM entries ORDER BY used LIMIT 64").fetchall()
            if not rows:
                return
            for (rowid,) in rows:
                self.evictions += self._delete_where("id = ?", (rowid,))
                if self.bytes + size <= self.max_bytes:
                    return

    def _delete_where(self, where: str, args: Sequence) -> int:
        dropped = self.db.execute(f"DELETE FROM entries WHERE {where} RETURNING size", args).fetchall()
        self.bytes -= sum(size for (size,) in dropped)
        self.rows -= len(dropped)
        return len(dropped)

    def discard(self, key: str, vary: Vary, version: int) -> bool:
        return bool(
            self._delete_where(
                "key = ? AND variant = ? AND version = ?", (url_bytes(key), variant_bytes(vary), version)
            )
        )

    def delete(self, key: str) -> int:
        return self._delete_where("key = ?", (url_bytes(key),))

    def delete_prefix(self, prefix: str) -> int:
        start = url_bytes(prefix)
        end = after_prefix(start)
        if end is None:
            return self._delete_where("key >= ?", (start,))
        return self._delete_where("key >= ? AND key < ?", (start, end))

    def clear(self) -> int:
        return self._delete_where("1", ())

    # -- tags ------------------------------------------------------------------------------------

    _CARRYING = "id IN (SELECT entry FROM tags WHERE tag = ?)"

    def tagged(self, tag: str, now: float) -> list[Stored]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE {self._CARRYING} AND keep_until > ? ORDER BY stored_at",
            (url_bytes(tag), now),
        ).fetchall()
        return [s for s in map(self._stored, rows) if s is not None]

    def delete_tag(self, tag: str) -> int:
        return self._delete_where(self._CARRYING, (url_bytes(tag),))

    def stale_tag(self, tag: str, at: float) -> int:
        """Marks rather than rewrites: the entry is handed out expired as of the earliest mark."""
        cursor = self.db.execute(
            "UPDATE entries SET stale_at = CASE WHEN stale_at = 0 THEN ? ELSE min(stale_at, ?) END, "
            f"check_at = ? WHERE {self._CARRYING}",
            (at, at, at, url_bytes(tag)),
        )
        return cursor.rowcount

    def resize(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._make_room(0)
        self._limit_log(self.db)

    # -- the schedule ----------------------------------------------------------------------------

    def due(self, now: float, limit: int) -> list[Stored]:
        rows = self.db.execute(
            f"SELECT id, {_COLUMNS} FROM entries WHERE check_at <= ? ORDER BY check_at LIMIT ?",
            (now, limit),
        ).fetchall()
        self.db.executemany(
            "UPDATE entries SET check_at = ? WHERE id = ?", [(now + LEASE_SECONDS, r[0]) for r in rows]
        )
        return [s for s in (self._stored(r[1:]) for r in rows) if s is not None]

    def reschedule(self, key: str, vary: Vary, version: int, check_at: float) -> bool:
        return self._update("check_at = ?", (check_at,), key, vary, version)

    # -- metadata --------------------------------------------------------------------------------

    def record_uses(self, uses: Sequence[Use]) -> None:
        for use in uses:
            self._update(
                "last_access = max(last_access, ?), hits = hits + ?, keep_until = max(keep_until, ?), "
                "used = max(used, ?)",
                (use.at, use.hits, use.keep_until, use.at),
                use.key,
                use.vary,
                use.version,
            )

    def note_refresh_failure(self, key: str, vary: Vary, version: int, retry_at: float) -> None:
        self._update("failures = failures + 1, retry_at = ?", (retry_at,), key, vary, version)

    def _update(self, assignments: str, values: tuple, key: str, vary: Vary, version: int) -> bool:
        cursor = self.db.execute(
            f"UPDATE entries SET {assignments} WHERE key = ? AND variant = ? AND version = ?",
            (*values, url_bytes(key), variant_bytes(vary), version),
        )
        return cursor.rowcount > 0
