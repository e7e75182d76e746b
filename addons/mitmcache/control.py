"""The control plane: purge, refresh, clear, entries and statistics, shared by three front ends.

* The ``Clear-Cache`` header of reverse-proxy-rust: a request to any path carrying ``Clear-Cache`` and
  ``Clear-Cache-Key`` refreshes that URL's variants a client asked for within the refresh window
  and drops the others (``clear_cache``; admin_api.py answers the request).
* The admin API under the reserved prefix (``/__cache`` by default): ``health`` (no key),
  ``stats``, ``entries``, ``metrics``, ``purge``, ``refresh``, ``clear`` (admin_api.py).
* mitmproxy commands (``cache.stats``, ``cache.purge``, ...) for the console and mitmweb.

All three call the same coroutines here, and these call the cache engine, never the addon.
"""

import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from mitmproxy import command, exceptions, http
from mitmproxy import flow as mflow

from . import summary, workers
from .admin_api import SERVICE, AdminApi
from .config import Settings
from .core import run_eagerly
from .counters import Count
from .engine import Engine
from .entry import Stored
from .metrics import CacheCollector, Stats, registry_for, snapshot
from .policy.freshness import current_age
from .policy.lifecycle import refreshable_in_background
from .store_status import StoreCollector, store_health, store_stats
from .tag_control import TagControl
from .tag_stats import TagCollector
from .targets import DEFAULT_PAGE, MAX_PAGE, BadRequest, Target, after_cursor, cursor_of, position, split_key

if TYPE_CHECKING:
    from .store_status import Tier

log = logging.getLogger("mitmcache")


def add_commands(loader: Any, *holders: object) -> None:
    """Register the ``@command.command`` methods of objects that are not addons, by mitmproxy's own
    collection (what it does for each addon it registers). As child addons they would be walked, on
    every event of every flow in stock mitmdump, for hooks they do not have."""
    for holder in holders:
        loader.master.commands.collect_commands(holder)


class Control:
    def __init__(
        self, engine: Engine, settings: Callable[[], Settings], key: Callable[[http.Request], str]
    ) -> None:
        self.engine = engine
        self._settings = settings
        self.key = key  # the cache key of a request (request_key.cache_key)
        self._started = time.time()
        self.registry = registry_for(CacheCollector(self.read_stats))
        self.shared: Tier | None = None  # the store's tier, when CACHE_STORE names one
        self.worker = workers.identity()  # which of the supervisor's workers answers (1 of 1 alone)
        self.registry.register(StoreCollector(lambda: self.shared))
        self.tags = TagControl(engine, settings)  # by tag, with its own commands
        self.registry.register(TagCollector(self.tags.stats, lambda: self.engine.last_usage.tags))
        self._api = AdminApi(self)
        self.handle = self._api.handle
        self.clear_cache_header = self._api.clear_cache_header
        self.mount = self._api.mount  # another part's endpoints under the prefix (the write queue's)
        self.clear_cache_tag_header = self._api.clear_cache_tag_header

    # -- the core, shared by the endpoints and the commands -------------------------------------

    def read_stats(self) -> Stats:
        """The counters and the store's usage as last read (the metrics collector cannot await)."""
        settings = self._settings()
        return snapshot(
            self.engine.counters,
            self.engine.last_usage,
            max_bytes=settings.max_bytes,
            max_entries=settings.max_entries,
            inflight=self.engine.inflight,
            started=self._started,
        )

    async def stats(self) -> dict[str, Any]:
        await self.engine.read_usage()
        return {
            "service": SERVICE,
            "name": self._settings().name,
            **self.worker.as_json(),
            **self.read_stats().as_json(),
            "tags": self.tags.stats.as_json(self.engine.last_usage.tags),
            "counts": dict(sorted(self.engine.counters.items())),
            **await store_stats(self.shared),
        }

    def health(self) -> dict[str, Any]:
        """200 whatever the store's state: a load balancer must not drop every instance at once
        because their shared store is down (they still serve from their own tier)."""
        return {"service": SERVICE, **self.worker.as_json(), **store_health(self.shared)}

    async def entries(
        self, target: Target | None = None, limit: int = DEFAULT_PAGE, offset: int = 0, cursor: str = ""
    ) -> dict[str, Any]:
        """Stored entries ordered by key then variant; page with ``cursor`` (stable while entries
        come and go) or ``offset``."""
        now = time.time()
        keys = await self.engine.keys() if target is None else await self._keys(target)
        found = [s for k in keys for s in await self.engine.variants(k)]
        found.sort(key=lambda s: position(s.entry.key, s.entry.vary))
        total = len(found)
        if cursor:
            after = after_cursor(cursor)
            found = [s for s in found if position(s.entry.key, s.entry.vary) > after]
        page = found[offset : offset + limit]
        more = offset + limit < len(found)
        return {
            "total": total,
            "count": len(page),
            "offset": offset,
            "limit": limit,
            "next_cursor": cursor_of(page[-1].entry) if more and page else None,
            "entries": [self._row(s, now) for s in page],
        }

    def _row(self, stored: Stored, now: float) -> dict[str, Any]:
        e, meta = stored.entry, stored.meta
        age = current_age(e.initial_age, e.response_time, now)
        ttl = e.lifetime - age
        return {
            "key": e.key,
            "vary": dict(e.vary),
            "status": e.status,
            "state": "fresh" if ttl > 0 else "stale",
            "size": e.size,  # bytes held (a compressed body as compressed)
            "size_as_sent": e.sent_size,
            "coding": e.coding,  # the coding the cache stored the body in (None: as sent)
            "age": int(age),
            "ttl": int(ttl),
            "hits": meta.hits,
            "last_access": round(now - meta.last_access, 3),  # seconds ago
            "etag": e.etag,
            "lifetime_source": e.lifetime_source,
            "refreshing": self.engine.refreshing(e.key),
        }

    async def _keys(self, target: Target) -> list[str]:
        """The stored URLs ``target`` names; one URL of one host is looked up, not searched for."""
        if not target.prefix and not target.any_host:
            return [target.value] if await self.engine.variants(target.value) else []
        return [k for k in await self.engine.keys() if target.matches(k)]

    async def purge(self, target: Target, by: str = "") -> dict[str, Any]:
        """Drop every variant of the URLs ``target`` names; says how many entries and URLs. A prefix
        is purged inside the store (under each host the cache holds URLs for, for a path prefix)."""
        keys = await self._keys(target)
        if not target.prefix:
            dropped = await self.engine.purge(keys)
        elif target.any_host:
            hosts = sorted({split_key(k)[0] for k in keys})
            dropped = sum([await self.engine.purge_prefix(host + target.value) for host in hosts])
        else:
            dropped = await self.engine.purge_prefix(target.value)
        counters = self.engine.counters
        counters.add(Count.PURGES)
        counters.add(Count.PURGED, dropped)
        log.info("control: purge %s%s: %d entries of %d URLs dropped", target.value, by, dropped, len(keys))
        return {**target.describe(), "purged": dropped, "keys": len(keys)}

    async def clear(self, by: str = "") -> int:
        """Drop everything; returns how many entries were dropped."""
        dropped = await self.engine.clear()
        self.engine.counters.add(Count.PURGES)
        self.engine.counters.add(Count.CLEARED, dropped)
        log.info("control: clear%s: %d entries dropped", by, dropped)
        return dropped

    async def refresh(self, target: Target, by: str = "") -> dict[str, Any]:
        """Refresh every stored variant of the URLs ``target`` names, in the background; the stored
        copies keep being served meanwhile, and a failed refresh keeps them."""
        keys = await self._keys(target)
        variants = cleared = 0
        for key in keys:
            refreshable = []
            for stored in await self.engine.variants(key):
                if refreshable_in_background(stored.entry):
                    refreshable.append(stored)
                else:  # a refresh would replay a client's credentials
                    cleared += await self.engine.discard(stored)
            variants += len(refreshable)
            self.engine.refresh(key, refreshable)
        log.info(
            "control: refresh %s%s: %d entries of %d URLs (%d dropped: they vary on credentials)",
            target.value,
            by,
            variants,
            len(keys),
            cleared,
        )
        result = "refreshing" if variants else "cleared" if cleared else "not_cached"
        answer = {**target.describe(), "result": result, "refreshing": variants, "keys": len(keys)}
        if cleared:
            answer["cleared"] = cleared
        return answer

    async def clear_cache(self, key: str, by: str = "") -> dict[str, Any]:
        """reverse-proxy-rust's on-demand refresh-or-clear of one URL: each variant a client asked
        for within the refresh window is refreshed in the background (its stale copy served
        meanwhile), the others -- and those that vary on credentials, which no refresh may replay --
        are dropped."""
        now, window = time.time(), self._settings().refresh_window
        rows, hot, cleared = [], [], 0
        for stored in await self.engine.variants(key):
            if now - stored.meta.last_access <= window and refreshable_in_background(stored.entry):
                hot.append(stored)
                result = "refreshing"
            else:
                cleared += await self.engine.discard(stored)
                result = "cleared"
            rows.append(
                {
                    "vary": dict(stored.entry.vary),
                    "result": result,
                    "last_access": round(now - stored.meta.last_access, 3),
                }
            )
        self.engine.forget_unshareable(key)
        self.engine.refresh(key, hot)
        if cleared:
            self.engine.counters.add(Count.PURGES)
            self.engine.counters.add(Count.CLEAR_CACHE_DROPPED, cleared)
        result = "refreshing" if hot else "cleared" if cleared else "not_cached"
        log.info(
            "control: Clear-Cache %s%s: %s (%d refreshing, %d cleared)", key, by, result, len(hot), cleared
        )
        return {
            "key": key,
            "result": result,
            "refreshing": len(hot),
            "cleared": cleared,
            "refresh_window": window,
            "variants": rows,
        }

    # -- commands --------------------------------------------------------------------------------

    @staticmethod
    def _now[T](coro: Coroutine[Any, Any, T]) -> T | None:
        """Run a coroutine from a (synchronous) command: an in-memory store's work is done before
        the command returns; a networked store's finishes in the background (None)."""
        return run_eagerly(coro)

    @staticmethod
    def _parse(raw: str, *, prefix: bool) -> Target:
        try:
            return Target.parse(raw, prefix=prefix)
        except BadRequest as e:
            raise exceptions.CommandError(str(e)) from None

    @command.command("cache.stats")
    def cmd_stats(self) -> str:
        """The cache's main counters and size on one line (all of them: the admin API's stats)."""
        return summary.stats(self._now(self.stats()))

    @command.command("cache.entries")
    def cmd_entries(self, prefix: str = "/", limit: int = DEFAULT_PAGE) -> str:
        """Stored entries under a path or URL prefix (key, state, ttl, hits), on one line."""
        return summary.entries(
            self._now(self.entries(self._parse(prefix, prefix=True), min(limit, MAX_PAGE)))
        )

    @command.command("cache.clear")
    def cmd_clear(self) -> int:
        """Drop every cache entry; returns how many were dropped (-1: still running)."""
        dropped = self._now(self.clear(by=" (by command)"))
        return -1 if dropped is None else dropped

    @command.command("cache.purge")
    def cmd_purge(self, url: str) -> int:
        """Drop every variant of one URL (a path such as /api/items, or a full URL); returns how many
        entries were dropped (-1: still running)."""
        result = self._now(self.purge(self._parse(url, prefix=False), by=" (by command)"))
        return -1 if result is None else result["purged"]

    @command.command("cache.purge.prefix")
    def cmd_purge_prefix(self, prefix: str) -> int:
        """Drop every URL under a path prefix (/api/) or URL prefix; returns how many entries were
        dropped (-1: still running)."""
        result = self._now(self.purge(self._parse(prefix, prefix=True), by=" (by command)"))
        return -1 if result is None else result["purged"]

    @command.command("cache.purge.flows")
    def cmd_purge_flows(self, flows: Sequence[mflow.Flow]) -> int:
        """Drop the cache entries (every variant) of the URLs of these flows, e.g. @focus or
        "~u /api"; returns how many entries were dropped (-1: still running)."""
        keys = sorted(
            {
                self.key(f.request)
                for f in flows
                if isinstance(f, http.HTTPFlow) and not f.metadata.get("cache_control")
            }
        )
        total = 0
        for key in keys:
            result = self._now(self.purge(Target(key, prefix=False), by=" (by command)"))
            if result is None:
                return -1
            total += result["purged"]
        return total

    @command.command("cache.refresh")
    def cmd_refresh(self, url: str) -> str:
        """Refresh every variant of one URL (a path or a full URL) in the background."""
        return summary.fields(self._now(self.refresh(self._parse(url, prefix=False), by=" (by command)")))

    @command.command("cache.refresh.prefix")
    def cmd_refresh_prefix(self, prefix: str) -> str:
        """Refresh every stored URL under a path or URL prefix in the background."""
        return summary.fields(self._now(self.refresh(self._parse(prefix, prefix=True), by=" (by command)")))
