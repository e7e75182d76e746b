"""Revalidating and refreshing stored entries, one upstream fetch per key.

A refresh asks the upstream conditionally when the entry has validators, so a ``304`` just renews
it (and the other stored variants it selects, RFC 9111 §4.3.4). A background refresh sends a clean
request -- the URL, Host, the fields the entry varies on and the validators; never a client's
``Authorization`` or ``Cookie``; a revalidation that a client waits for starts from that client's
request (§4.3.1); an entry that varies on credentials (``Vary: Cookie``) is never refreshed
without a client. Both are always a GET. A refresh that fails keeps the stored copy (good data is
never thrown away) and is retried with backoff.
"""

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable

from .coalesce import HitForMiss, Inflight, Kind, Outcome
from .config import Settings
from .entry import Entry
from .policy.fields import Fields
from .policy.revalidation import (
    conditional_fields,
    freshened_fields,
    revalidation_request_fields,
    select_for_update,
)
from .policy.storable import Refusal, admit
from .store.base import Store
from .upstream import Fetched, TooLarge, Upstream, UpstreamError

log = logging.getLogger("mitmcache")

MAX_BACKOFF_SECONDS = 60.0
UPSTREAM_STATUS = "upstream-status-"  # detail prefix of a failure the upstream answered with a status
ERROR_STATUSES = frozenset({500, 502, 503, 504})  # RFC 5861 §4: what counts as an error
# Refusals that say something about the request a revalidation was made for, not about the URL.
REQUEST_SPECIFIC_REFUSALS = frozenset({"request-no-store", "authorization"})

type Result = tuple[Outcome, Fetched | None]


# Request fields that carry a client's credentials: a background refresh never sends them.
CREDENTIAL_FIELDS = frozenset({"authorization", "cookie", "proxy-authorization"})


def refreshable_in_background(entry: Entry) -> bool:
    """Whether a refresh that no client waits for can fetch ``entry``: not when it varies on a
    client's credentials, which such a refresh would have to replay. Those entries are
    revalidated by the next client that asks, with its own request, or dropped."""
    return not any(name in CREDENTIAL_FIELDS for name, _ in entry.vary)


def refresh_request_fields(entry: Entry) -> list[tuple[bytes, bytes]]:
    """The clean request a refresh sends (without validators)."""
    fields = [(b"host", entry.host.encode("latin-1"))]
    fields += [
        (name.encode(), value.encode("latin-1"))
        for name, value in entry.vary
        if value is not None and name not in CREDENTIAL_FIELDS
    ]
    if not any(name == "accept-encoding" for name, _ in entry.vary):
        fields.append((b"accept-encoding", b"identity"))  # else httpx would ask for gzip on its own
    return fields


class Refresher:
    def __init__(
        self,
        store: Store,
        upstream: Upstream,
        inflight: Inflight,
        hit_for_miss: HitForMiss,
        settings: Callable[[], Settings],
        counts: Counter[str],
        on_store: Callable[[Entry], None],
    ) -> None:
        self._on_store = on_store
        self._store = store
        self._upstream = upstream
        self._inflight = inflight
        self._hit_for_miss = hit_for_miss
        self._settings = settings
        self._counts = counts
        self._tasks: set[asyncio.Task[Result]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._slot_count = 0

    def start(self, entry: Entry) -> bool:
        """Refresh ``entry`` in the background unless a fetch for its key is under way, or it may
        not be refreshed without a client (``refreshable_in_background``); True when one started."""
        return refreshable_in_background(entry) and self._start(entry, None) is not None

    def _start(self, entry: Entry, client_fields: Fields | None) -> asyncio.Task[Result] | None:
        if not self._inflight.lead(entry.key):
            return None
        task = asyncio.get_running_loop().create_task(self._run(entry, client_fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start_in_background(self, entry: Entry, now: float) -> bool:
        """Like ``start``, but honours the backoff of an entry whose last refresh failed."""
        if now < entry.retry_at:
            return False
        started = self.start(entry)
        if started:
            self._counts["refresh_background"] += 1
        return started

    async def revalidate(
        self, entry: Entry, timeout: float, client_fields: Fields | None = None
    ) -> tuple[Outcome | None, Fetched | None]:
        """Revalidate ``entry`` for a waiting client (or join the fetch under way) and wait for it.

        The outcome is None on timeout. When this call made the request (from ``client_fields``,
        the client's request) and the upstream's answer was not stored -- an error, or a response
        that may not be shared -- that answer comes back too: it is this client's own response.
        """
        task = self._start(entry, client_fields)
        if task is None:
            return await self._inflight.wait(entry.key, timeout), None
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(timeout, 0.0))
        except TimeoutError:
            return None, None

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _semaphore(self) -> asyncio.Semaphore:
        wanted = self._settings().refresh_concurrency
        if self._slots is None or self._slot_count != wanted:
            self._slots, self._slot_count = asyncio.Semaphore(wanted), wanted
        return self._slots

    async def _run(self, entry: Entry, client_fields: Fields | None) -> Result:
        outcome, fetched = Outcome(Kind.FAILED, status=502, detail="refresh-cancelled"), None
        try:
            async with self._semaphore():
                outcome, fetched = await self.fetch_for(entry, client_fields)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not leave waiters hanging
            log.exception("refresh of %s failed unexpectedly", entry.key)
            outcome = Outcome(Kind.FAILED, status=502, detail=f"refresh-error: {type(e).__name__}")
        finally:
            self._inflight.finish(entry.key, outcome)
        return outcome, fetched

    async def fetch(self, entry: Entry) -> Outcome:
        """One conditional GET for ``entry``; stores what comes back and says what happened."""
        outcome, _ = await self.fetch_for(entry, None)
        return outcome

    async def fetch_for(self, entry: Entry, client_fields: Fields | None) -> Result:
        """One conditional GET for ``entry`` -- a clean one, or from ``client_fields`` -- storing what
        comes back; also returns the upstream's response when it was not stored."""
        settings = self._settings()
        request_fields = (
            refresh_request_fields(entry)
            if client_fields is None
            else revalidation_request_fields(client_fields)
        )
        if not any(k.lower() == b"host" for k, _ in request_fields):
            request_fields.insert(0, (b"host", entry.host.encode("latin-1")))
        try:
            fetched = await self._upstream.get(
                entry.url,
                request_fields + conditional_fields(entry),
                settings.upstream_timeout,
                settings.max_object_bytes,
            )
        except UpstreamError as e:
            self._backoff(entry)
            self._counts["refresh_failed"] += 1
            log.warning("refresh of %s failed: %s", entry.key, e.detail)
            return Outcome(Kind.FAILED, status=e.status, detail=e.detail), None
        except TooLarge:
            await self._store.delete(entry.key)
            self._hit_for_miss.remember(entry.key, time.time(), settings.hit_for_miss)
            return Outcome(Kind.UNSHAREABLE, detail="too-large"), None

        if fetched.status >= 500:  # RFC 9111 §4.3.3: as if the upstream had not answered
            self._backoff(entry)
            self._counts["refresh_failed"] += 1
            log.warning("refresh of %s failed: upstream answered %d", entry.key, fetched.status)
            return Outcome(Kind.FAILED, status=502, detail=f"{UPSTREAM_STATUS}{fetched.status}"), fetched

        revalidated = False
        if fetched.status == 304:
            selected = select_for_update(entry, await self._store.peek(entry.key), fetched.fields)
            revalidated = any(e is entry for e in selected)
            for other in selected:
                if other is not entry:
                    await self._freshen(other, fetched, settings)
        admitted = admit(
            key=entry.key,
            url=entry.url,
            host=entry.host,
            method="GET",
            request_fields=request_fields,
            status=entry.status if revalidated else fetched.status,
            reason=entry.reason if revalidated else fetched.reason,
            response_fields=freshened_fields(entry, fetched.fields) if revalidated else fetched.fields,
            body=entry.body if revalidated else fetched.body,
            request_time=fetched.request_time,
            response_time=fetched.response_time,
            rules=settings.rules,
        )
        unstored = None if fetched.status == 304 else fetched  # a 304 is no client's answer
        if isinstance(admitted, Refusal):
            if client_fields is None or admitted.reason not in REQUEST_SPECIFIC_REFUSALS:
                await self._store.delete(entry.key)
                self._hit_for_miss.remember(entry.key, time.time(), settings.hit_for_miss)
            self._counts["refresh_unshareable"] += 1
            return Outcome(Kind.UNSHAREABLE, detail=admitted.reason), unstored
        admitted.last_access = entry.last_access
        admitted.hits = entry.hits
        await self._store.put(admitted)
        self._on_store(admitted)
        self._counts["refresh_revalidated" if revalidated else "refresh_replaced"] += 1
        return Outcome(Kind.STORED, entry=admitted, revalidated=revalidated), None

    async def _freshen(self, entry: Entry, not_modified: Fetched, settings: Settings) -> None:
        """Freshen another stored variant that a 304 selected (RFC 9111 §4.3.4)."""
        admitted = admit(
            key=entry.key,
            url=entry.url,
            host=entry.host,
            method="GET",
            request_fields=refresh_request_fields(entry),
            status=entry.status,
            reason=entry.reason,
            response_fields=freshened_fields(entry, not_modified.fields),
            body=entry.body,
            request_time=not_modified.request_time,
            response_time=not_modified.response_time,
            rules=settings.rules,
        )
        if isinstance(admitted, Refusal) or admitted.vary != entry.vary:
            await self._store.discard(entry)
            return
        admitted.last_access, admitted.hits = entry.last_access, entry.hits
        await self._store.put(admitted)
        self._on_store(admitted)

    @staticmethod
    def _backoff(entry: Entry) -> None:
        entry.refresh_failures += 1
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (entry.refresh_failures - 1))
        entry.retry_at = time.time() + delay * random.uniform(0.5, 1.0)
