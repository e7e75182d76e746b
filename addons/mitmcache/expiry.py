"""What happens when entries expire: hot ones are refreshed, cold ones dropped (reverse-proxy-rust's
refresh window, run on a schedule rather than waiting for the next reader).

Every stored entry is scheduled at its expiry. Then, if a client asked for it within the refresh
window, one background refresh runs -- so a key that keeps being asked for never shows a miss --
and otherwise it is dropped, so a key nobody asks for stops being refreshed. With refresh-ahead
on, entries are looked at shortly before they expire (jittered, so that keys stored together do
not all refresh together) and hot ones are refreshed early, so clients are not even served stale.
A failed refresh keeps the entry and is looked at again when its backoff ends.

In pure RFC 9111 mode (no ``cache_ttl``, no refresh-ahead) nothing is fetched that no client asked
for: a hot entry with validators is kept past its expiry for the next client to revalidate, and
dropped once nobody asks for it within the refresh window.
"""

import asyncio
import heapq
import logging
import random
import time
from collections import Counter
from collections.abc import Callable

from .config import Settings
from .entry import Entry
from .refresh import Refresher, refreshable_in_background
from .store.base import Store

log = logging.getLogger("mitmcache")

COMPACT_SLACK = 4096  # schedule items beyond twice the store's entries before a sweep
TICK_SECONDS = 0.25  # the longest the scheduler sleeps, so newly stored entries are seen soon


class ExpiryScheduler:
    def __init__(
        self, store: Store, refresher: Refresher, settings: Callable[[], Settings], counts: Counter[str]
    ):
        self._store = store
        self._refresher = refresher
        self._settings = settings
        self._counts = counts
        # An entry is named by (key, vary, response_time), not held: one evicted, purged or
        # replaced must not be kept alive (with its body) by its place in the schedule, and a
        # tuple of plain values is one object fewer for the garbage collector to scan than a
        # tuple holding a weak reference, for every stored entry.
        self._due: list[tuple[float, int, str, tuple[tuple[str, str | None], ...], float]] = []
        self._sequence = 0  # tie-breaker: entries themselves are not ordered
        self._task: asyncio.Task[None] | None = None

    def track(self, entry: Entry) -> None:
        """Schedule a newly stored entry."""
        expires_at = entry.response_time + entry.lifetime - entry.initial_age
        ahead = self._settings().refresh_ahead
        when = expires_at - ahead * random.uniform(0.8, 1.0) if ahead else expires_at
        self._push(when, entry)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def __len__(self) -> int:
        return len(self._due)

    def _push(self, when: float, entry: Entry) -> None:
        self._sequence += 1
        heapq.heappush(self._due, (when, self._sequence, entry.key, entry.vary, entry.response_time))

    async def _stored(self, key: str, vary: tuple, response_time: float) -> Entry | None:
        """The scheduled entry, if it is still the one stored."""
        for entry in await self._store.peek(key):
            if entry.vary == vary and entry.response_time == response_time:
                return entry
        return None

    async def compact(self, slack: int = COMPACT_SLACK) -> None:
        """Forget the schedule of entries that are gone once it holds twice what is stored (and
        ``slack`` more), so that a flood of short-lived keys does not grow it beyond the store;
        one sweep per that many evictions keeps the cost per stored entry constant."""
        if len(self._due) <= 2 * self._store.usage().entries + slack:
            return
        live = [item for item in self._due if await self._stored(*item[2:]) is not None]
        heapq.heapify(live)
        self._due = live

    async def _run(self) -> None:
        while True:
            try:
                await self.run_due(time.time())
                await self.compact()
            except Exception:  # housekeeping must survive a bad entry
                log.exception("expiry scheduler failed")
            delay = self._due[0][0] - time.time() if self._due else TICK_SECONDS
            await asyncio.sleep(min(max(delay, 0.01), TICK_SECONDS))

    async def run_due(self, now: float) -> None:
        """Handle every entry whose time has come."""
        while self._due and self._due[0][0] <= now:
            _, _, key, vary, response_time = heapq.heappop(self._due)
            entry = await self._stored(key, vary, response_time)
            if entry is None:
                continue  # replaced or dropped since it was scheduled
            await self._handle(entry, now)

    async def _handle(self, entry: Entry, now: float) -> None:
        settings = self._settings()
        expires_at = entry.response_time + entry.lifetime - entry.initial_age
        hot = now - entry.last_access <= settings.refresh_window
        # Entries that are never fresh (max-age=0, no-cache) are revalidated on use; refreshing
        # them ahead would only repeat at every expiry, that is at once. Entries that vary on
        # credentials are revalidated on use too: a refresh would replay a client's Cookie.
        refreshable = entry.lifetime > 0 and not entry.no_cache and refreshable_in_background(entry)
        if hot and refreshable and settings.pure_rfc and not settings.refresh_ahead:
            # Pure RFC 9111 mode fetches nothing no client asked for: a hot stale entry is kept
            # for the next client to revalidate (or to be served within the upstream's allowances).
            refreshable = False
        if hot and not refreshable and entry.has_validators:
            self._push(now + max(settings.refresh_window, 1.0), entry)
            return
        if hot and refreshable:
            if now < entry.retry_at:
                self._push(entry.retry_at, entry)
            elif self._refresher.start(entry):
                self._counts["refresh_ahead" if now < expires_at else "refresh_expired"] += 1
                # If the refresh fails the entry stays; look again after its backoff.
                self._push(max(now, expires_at) + 1.0, entry)
            else:
                self._push(now + 1.0, entry)  # a fetch for this key is already under way
            return
        # A cold entry goes at expiry, or once the upstream's own allowances to serve it stale
        # (stale-while-revalidate, stale-if-error) have run out.
        drop_at = expires_at + max(entry.stale_while_revalidate, entry.stale_if_error)
        if now < drop_at:
            self._push(drop_at, entry)
            return
        if await self._store.discard(entry):
            self._counts["expired"] += 1
            log.debug("cache EXPIRED %s (not asked for in %ss)", entry.key, settings.refresh_window)
