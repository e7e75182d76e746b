"""The storage contract (``store.base``) over Redis, shared by every process that points at it.

Every key of one URL carries the URL's hash tag (``{T}``, a digest of the URL), so one cached
response's keys -- its variants, their metadata, its coalescing lock -- live in one Redis Cluster
slot. Each change is one Lua script (``redis_lua``) that also publishes the event telling the other
processes to drop their in-process copy, so that no change goes unannounced. No ``KEYS``: a prefix
is a range of a sorted set of URLs, a clear walks only this cache's hashes. Every key has a
lifetime. A value that cannot be read is a miss and counted (``RedisLink.unreadable``), never an
error. Redis bounds its own memory (``maxmemory``); ``resize`` has nothing to do here.

Every method raises ``redis_link.Unavailable`` when Redis cannot be used: ``store.tiered`` falls
back to the in-process tier then.
"""

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import msgpack
from redis.exceptions import ResponseError

from ..entry import Entry, Meta, Stored, as_marked
from . import packed, redis_lua
from .base import Usage, Use, Vary
from .codec import Unreadable
from .memory import MAX_VARIANTS_PER_KEY
from .redis_link import CHANNEL, KEY_PREFIX, RedisLink

LEASE_SECONDS = 60.0  # a handed-out due entry is due again after this if nobody rescheduled it
BATCH = 500  # URLs per script run when purging or clearing
URLS = KEY_PREFIX + "urls"
DUE = KEY_PREFIX + "due"
TAGS = KEY_PREFIX + "tags"


def tag(key: str) -> str:
    """A URL's hash tag: 16 hex digits of its digest (a URL may itself contain braces)."""
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def variant_id(vary: Vary) -> str:
    return hashlib.blake2b(msgpack.packb([list(p) for p in vary]), digest_size=8).hexdigest()


def hash_key(key: str) -> str:
    return f"{KEY_PREFIX}{{{tag(key)}}}:v"


def lock_key(key: str) -> str:
    return f"{KEY_PREFIX}{{{tag(key)}}}:lock"


def tag_set_key(name: str) -> str:
    """The sorted set of the variants carrying tag ``name`` (the scripts compute the same name)."""
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()
    return f"{KEY_PREFIX}{{{digest[:16]}}}:tag"


def _ms(at: float) -> int:
    return int(at * 1000) + 1


class RedisStore:
    holds_everything = False

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        client = link.client
        self._put = client.register_script(redis_lua.PUT)
        self._discard = client.register_script(redis_lua.DISCARD)
        self._delete = client.register_script(redis_lua.DELETE)
        self._drop_hashes = client.register_script(redis_lua.DROP_HASHES)
        self._due = client.register_script(redis_lua.DUE)
        self._reschedule = client.register_script(redis_lua.RESCHEDULE)
        self._uses = client.register_script(redis_lua.USES)
        self._failure = client.register_script(redis_lua.REFRESH_FAILURE)
        self._delete_tag = client.register_script(redis_lua.DELETE_TAG)
        self._stale_tag = client.register_script(redis_lua.STALE_TAG)

    # -- reading ---------------------------------------------------------------------------------

    def _decode(self, key: str, raw: dict[bytes, bytes]) -> list[Stored]:
        """A URL's hash as stored variants, oldest write first; unreadable ones are counted and
        left out, ended ones left out."""
        if raw.get(b"url") != key.encode("utf-8", "surrogateescape"):
            return []  # nothing stored, or another URL with the same tag
        now, found = time.time(), []
        for name, value in raw.items():
            if not name.startswith(b"e:"):
                continue
            try:
                entry = packed.decode_entry(value)
                meta = packed.decode_meta(raw[b"m:" + name[2:]])
                if meta.version != entry.version or entry.key != key:
                    raise Unreadable("metadata of another version")
            except (Unreadable, KeyError):
                self.link.unreadable += 1
                continue
            if meta.keep_until > now:
                found.append(Stored(as_marked(entry, meta.meta), meta.meta, meta.keep_until))
        found.sort(key=lambda s: s.meta.stored_at)
        return found

    async def _read(self, key: str) -> list[Stored]:
        client = self.link.client
        try:
            raw = await self.link.run(lambda: client.hgetall(hash_key(key)))
        except ResponseError:  # a key of another type at our name (WRONGTYPE): foreign, a miss
            self.link.unreadable += 1
            return []
        return self._decode(key, raw)

    def held(self, key: str) -> Sequence[Stored]:
        """Nothing is held in this process (the in-process tier in front of it is): always asked."""
        return ()

    async def variants(self, key: str) -> Sequence[Stored]:
        return await self._read(key)

    async def peek(self, key: str) -> Sequence[Stored]:
        return await self._read(key)

    async def keys(self) -> list[str]:
        """Every stored URL, in URL order (Redis keeps use order itself, for its own eviction)."""
        client = self.link.client
        raw = await self.link.run(lambda: client.zrange(URLS, 0, -1))
        return [k.decode("utf-8", "surrogateescape") for k in raw]

    # -- writing ---------------------------------------------------------------------------------

    async def put(self, entry: Entry, meta: Meta, *, keep_until: float, check_at: float) -> bool:
        key, vid = entry.key, variant_id(entry.vary)
        args = [
            key,
            tag(key),
            vid,
            packed.encode_entry(entry),
            packed.encode_meta(entry.version, meta, keep_until),
            _ms(keep_until),
            repr(check_at),
            MAX_VARIANTS_PER_KEY,
            CHANNEL,
            self.link.event("drop", key),
            _ms(time.time()),
            msgpack.packb(list(entry.tags)) if entry.tags else b"",
            KEY_PREFIX,
        ]
        await self.link.run(lambda: self._put(keys=[hash_key(key), URLS, DUE, TAGS], args=args))
        return True

    async def discard(self, key: str, vary: Vary, version: int) -> bool:
        args = [
            key,
            tag(key),
            variant_id(vary),
            str(version),
            CHANNEL,
            self.link.event("drop", key),
            KEY_PREFIX,
        ]
        return bool(
            await self.link.run(lambda: self._discard(keys=[hash_key(key), URLS, DUE, TAGS], args=args))
        )

    async def _delete_urls(self, urls: Sequence[str], event: bytes | str) -> int:
        keys: list[str] = [URLS, DUE, TAGS]
        args: list[Any] = [CHANNEL, event, KEY_PREFIX]
        for url in urls:
            keys.append(hash_key(url))
            args += [url, tag(url)]
        return int(await self.link.run(lambda: self._delete(keys=keys, args=args)))

    async def delete(self, key: str) -> int:
        return await self._delete_urls([key], self.link.event("drop", key))

    async def delete_prefix(self, prefix: str) -> int:
        """The URLs under ``prefix`` are a lexical range of the URL index: no scan of the keyspace."""
        client, start = self.link.client, b"[" + prefix.encode("utf-8", "surrogateescape")
        end = b"(" + prefix.encode("utf-8", "surrogateescape") + b"\xff"
        dropped = 0
        while True:
            batch = await self.link.run(lambda: client.zrangebylex(URLS, start, end, start=0, num=BATCH))
            urls = [u.decode("utf-8", "surrogateescape") for u in batch]
            if not urls:
                break
            dropped += await self._delete_urls(urls, "")
        await self.link.publish("drop-prefix", prefix)
        return dropped

    async def clear(self) -> int:
        """Drop every hash of this cache (walked with ``SCAN``, which never blocks Redis: a clear
        is rare, and also finds entries the index lost), then the indexes."""
        client, dropped = self.link.client, 0
        pattern = KEY_PREFIX + "{*}:v"
        cursor = 0
        while True:
            cursor, names = await self.link.run(lambda c=cursor: client.scan(c, match=pattern, count=BATCH))
            if names:
                dropped += int(await self.link.run(lambda n=names: self._drop_hashes(keys=list(n))))
            if cursor == 0:
                break
        cursor = 0
        while True:  # the tags' sets
            cursor, names = await self.link.run(
                lambda c=cursor: client.scan(c, match=KEY_PREFIX + "{*}:tag", count=BATCH)
            )
            if names:
                await self.link.run(lambda n=names: client.delete(*n))
            if cursor == 0:
                break
        await self.link.run(lambda: client.delete(URLS, DUE, TAGS))
        await self.link.publish("drop-all")
        return dropped

    # -- the schedule ----------------------------------------------------------------------------

    async def due(self, now: float, limit: int) -> list[Stored]:
        args = [repr(now), limit, repr(now + LEASE_SECONDS), KEY_PREFIX]
        raw = await self.link.run(lambda: self._due(keys=[URLS, DUE], args=args))
        found = []
        for i in range(0, len(raw), 3):
            url, entry_raw, meta_raw = raw[i].decode("utf-8", "surrogateescape"), raw[i + 1], raw[i + 2]
            try:
                entry, meta = packed.decode_entry(entry_raw), packed.decode_meta(meta_raw)
            except Unreadable:
                self.link.unreadable += 1
                continue
            if entry.key == url and entry.version == meta.version:
                found.append(Stored(as_marked(entry, meta.meta), meta.meta, meta.keep_until))
        return found

    async def reschedule(self, key: str, vary: Vary, version: int, check_at: float) -> bool:
        args = [key, tag(key), variant_id(vary), str(version), repr(check_at)]
        return bool(await self.link.run(lambda: self._reschedule(keys=[hash_key(key), DUE], args=args)))

    # -- metadata --------------------------------------------------------------------------------

    async def record_uses(self, uses: Sequence[Use]) -> None:
        """One script run for a batch of uses (the engine sends one per version and flush)."""
        if not uses:
            return
        keys, args = [URLS, DUE, TAGS], [KEY_PREFIX]
        for use in uses:
            keys.append(hash_key(use.key))
            args += [
                use.key,
                variant_id(use.vary),
                str(use.version),
                repr(use.at),
                use.hits,
                repr(use.keep_until),
                tag(use.key),
            ]
        await self.link.run(lambda: self._uses(keys=keys, args=args))

    # -- tags ------------------------------------------------------------------------------------

    async def tagged(self, name: str) -> Sequence[Stored]:
        """The variants in the tag's set, read a batch at a time (plain reads, no script)."""
        client, key, found, start = self.link.client, tag_set_key(name), [], 0
        while True:
            members = await self.link.run(lambda s=start: client.zrange(key, s, s + BATCH - 1))
            if not members:
                return found
            places = []
            for raw in members:
                member = raw.decode("utf-8", "surrogateescape")
                places.append((member[:16], member[17:33], member[34:]))

            async def read(places=places) -> list[Any]:
                async with client.pipeline(transaction=False) as pipe:
                    for url_tag, vid, _ in places:
                        pipe.hmget(f"{KEY_PREFIX}{{{url_tag}}}:v", "url", "e:" + vid, "m:" + vid)
                    return await pipe.execute()

            now = time.time()
            for (_, _, url), (owner, entry_raw, meta_raw) in zip(
                places, await self.link.run(read), strict=True
            ):
                if owner != url.encode("utf-8", "surrogateescape") or entry_raw is None or meta_raw is None:
                    continue
                try:
                    entry, meta = packed.decode_entry(entry_raw), packed.decode_meta(meta_raw)
                except Unreadable:
                    self.link.unreadable += 1
                    continue
                if entry.version == meta.version and meta.keep_until > now and name in entry.tags:
                    found.append(Stored(as_marked(entry, meta.meta), meta.meta, meta.keep_until))
            if len(members) < BATCH:
                return found
            start += BATCH

    async def delete_tag(self, name: str) -> int:
        """A batch of the tag's variants per script run (Redis is never blocked for long), at most
        as many runs as the set had batches when the purge began (and one more)."""
        client, key, dropped = self.link.client, tag_set_key(name), 0
        runs = int(await self.link.run(lambda: client.zcard(key))) // BATCH + 2
        for _ in range(runs):
            args = [KEY_PREFIX, name, BATCH, _ms(time.time())]
            done, seen = await self.link.run(
                lambda a=args: self._delete_tag(keys=[URLS, DUE, TAGS, key], args=a)
            )
            dropped += int(done)
            if int(seen) < BATCH:
                break
        await self.link.publish("drop-tag", name)
        return dropped

    async def stale_tag(self, name: str, at: float) -> int:
        client, key, marked, start = self.link.client, tag_set_key(name), 0, 0
        total = int(await self.link.run(lambda: client.zcard(key)))
        while start < total:
            args = [KEY_PREFIX, repr(at), start, start + BATCH - 1, _ms(time.time())]
            done, _ = await self.link.run(lambda a=args: self._stale_tag(keys=[DUE, key], args=a))
            marked += int(done)
            start += BATCH
        await self.link.publish("drop-tag", name)
        return marked

    async def note_refresh_failure(self, key: str, vary: Vary, version: int, retry_at: float) -> None:
        args = [key, variant_id(vary), str(version), repr(retry_at)]
        await self.link.run(lambda: self._failure(keys=[hash_key(key)], args=args))

    async def usage(self) -> Usage:
        """What the shared tier holds: variants (scheduled), URLs, and Redis's own memory."""
        client = self.link.client

        async def read() -> tuple[int, int, int, int, int]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.zcard(DUE).zcard(URLS).info("memory").info("stats").zcount(
                    TAGS, _ms(time.time()), "+inf"
                )
                entries, keys, memory, stats, tags = await pipe.execute()
            used, evicted = int(memory.get("used_memory", 0)), int(stats.get("evicted_keys", 0))
            return entries, keys, used, evicted, tags

        entries, keys, used, evicted, tags = await self.link.run(read)
        return Usage(entries=entries, keys=keys, bytes=used, evictions=evicted, tags=tags)

    async def resize(self, max_bytes: int, max_entries: int) -> None:
        """Redis bounds itself (``maxmemory``); the in-process tier in front takes the bounds."""
