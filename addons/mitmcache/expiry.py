"""What happens when stored entries' check times come: refreshed, kept, or dropped.

The schedule is the store's (``Store.due``): every write carries its first check time, so an entry
written by another process, or loaded after a restart, is looked at like any other. What to do is
``policy.lifecycle.at_check``'s decision: a hot entry is refreshed in the background (once per
client request on request, at every expiry when continuous), one nobody asks for is kept as long as
its stale allowances last (revalidation, stale-if-error, max-stale) and then dropped. The uses the
hit path wrote behind are flushed to the store here, before the schedule is read.
"""

import asyncio
import logging
import time

from .core import Core
from .counters import Count
from .entry import Stored
from .policy.lifecycle import Action, at_check
from .refresh import Refresher

log = logging.getLogger("mitmcache")

TICK_SECONDS = 0.25  # how often the schedule is read, so newly due entries are seen soon
BATCH = 1000  # entries handled per read of the schedule


class ExpiryScheduler:
    def __init__(self, core: Core, refresher: Refresher) -> None:
        self._core = core
        self._refresher = refresher
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_due(time.time())
            except Exception:  # housekeeping must survive a bad entry
                log.exception("expiry scheduler failed")
            await asyncio.sleep(TICK_SECONDS)

    async def run_due(self, now: float) -> None:
        """Handle every entry whose check time has come."""
        await self._core.flush_uses()
        while True:
            due = await self._core.store.due(now, BATCH)
            for stored in due:
                await self._handle(stored, now)
            if len(due) < BATCH:
                return

    async def _handle(self, stored: Stored, now: float) -> None:
        core = self._core
        entry, lifecycle = stored.entry, core.settings().lifecycle
        check = at_check(entry, stored.meta, stored.keep_until, now, lifecycle)
        if check.action is Action.DROP:
            if await core.store.discard(entry.key, entry.vary, entry.version):
                core.counters.add(Count.EXPIRED)
                log.debug(
                    "cache EXPIRED %s (kept %ss past its expiry; last asked for %.1fs ago)",
                    entry.key,
                    round(stored.keep_until - entry.expires_at, 3),
                    now - stored.meta.last_access,
                )
            return
        when = check.when
        if check.action is Action.REFRESH:
            if self._refresher.start(stored, now):
                core.counters.add(Count.REFRESH_AHEAD if check.ahead else Count.REFRESH_EXPIRED)
            else:
                when = min(now + 1.0, stored.keep_until)  # a fetch for this key is already under way
        await core.store.reschedule(entry.key, entry.vary, entry.version, when)
