"""The shared tier of one proxy process (``CACHE_STORE=redis://...``): the link to Redis, the tiered
store (a bounded in-process tier in front of the Redis store), and coordination across processes,
installed into the engine's core in place of their one-process counterparts.

The events other processes publish drop what this process's tier holds: a URL changed, a prefix
purged, everything cleared; when notifications may have been lost (the link came back), the whole
tier is dropped before it is used again.
"""

from collections.abc import Callable
from typing import Any

from .config import Settings
from .core import Core
from .shared_coordination import SharedCoalescer, SharedGenerations, SharedHitForMiss
from .store.base import Usage
from .store.memory import MemoryStore
from .store.redis import RedisStore
from .store.redis_link import RedisLink
from .store.selection import StoreLocation
from .store.tiered import TieredStore


class SharedTier:
    def __init__(self, location: StoreLocation, settings: Callable[[], Settings]) -> None:
        initial = settings()
        self.location = location
        self.link = link = RedisLink(location.url, location.shown)
        self.store = TieredStore(
            MemoryStore(initial.max_bytes, initial.max_entries), RedisStore(link), lambda: link.up
        )
        self.coalescer = SharedCoalescer(link, lambda: settings().upstream_timeout)
        self.hit_for_miss = SharedHitForMiss(link)
        self.bus = SharedGenerations(link)
        link.on_event("drop", lambda origin, args: self.store.drop(args[0]))
        link.on_event("drop-prefix", lambda origin, args: self.store.drop_prefix(args[0]))
        link.on_event("drop-tag", lambda origin, args: self.store.drop_tag(args[0]))
        link.on_event("drop-all", lambda origin, args: self.store.drop_all())
        link.on_restored(self.store.restored)
        link.on_lost(self.store.lost)

    @property
    def up(self) -> bool:
        return self.link.up

    @property
    def unreadable(self) -> int:
        return self.link.unreadable

    def install(self, core: Core) -> None:
        core.store = self.store
        core.coalescer = self.coalescer
        core.hit_for_miss = self.hit_for_miss
        core.bus = self.bus
        core.tier = self.store.tier_of

    def start(self) -> None:
        self.link.start()

    async def close(self) -> None:
        self.coalescer.close()
        await self.link.close()

    def health(self) -> dict[str, Any]:
        health = self.link.health()
        return {
            "backend": health.backend,
            "state": health.state,
            "since": round(health.since, 3),
            "url": health.url,
        }

    async def figures(self) -> dict[str, Any]:
        """What Redis says the shared tier holds (None where it cannot be asked now)."""
        usage: Usage | None = await self.store.shared_usage()
        return {
            **self.health(),
            "entries": usage.entries if usage else None,
            "keys": usage.keys if usage else None,
            "used_memory": usage.bytes if usage else None,
            "evicted_keys": usage.evictions if usage else None,
            "tags": usage.tags if usage else None,
            "unreadable": self.link.unreadable,
        }
