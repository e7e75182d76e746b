"""Revalidating and refreshing stored entries, one upstream fetch per key.

A refresh asks the upstream conditionally when the entry has validators, so a ``304`` just renews
it (and the other stored variants it selects, RFC 9111 §4.3.4). A background refresh sends a clean
request -- the URL, Host, the fields the entry varies on and the validators; never a client's
``Authorization`` or ``Cookie``; a revalidation that a client waits for starts from that client's
request (§4.3.1); an entry that varies on credentials (``Vary: Cookie``) is never refreshed
without a client. Both are always a GET. A refresh that fails keeps the stored copy (good data is
never thrown away) and is retried with backoff. A refresh that began before its URL was
invalidated stores nothing (the invalidation bus's generations).
"""

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from .coalesce import Failure, Kind, Outcome
from .compression import as_sent
from .core import Core
from .counters import Count
from .entry import Entry, Stored
from .generations import Generation
from .policy.fields import Fields
from .policy.lifecycle import CREDENTIAL_FIELDS, refreshable_in_background
from .policy.revalidation import (
    conditional_fields,
    freshened_fields,
    kept_against_forced_answer,
    revalidation_request_fields,
    select_for_update,
)
from .policy.storable import Refusal, admit
from .upstream import Fetched, TooLarge, UpstreamError

log = logging.getLogger("mitmcache")

MAX_BACKOFF_SECONDS = 60.0
# Refusals that say something about the request a revalidation was made for, not about the URL.
REQUEST_SPECIFIC_REFUSALS = frozenset({"request-no-store", "authorization"})

type Result = tuple[Outcome, Fetched | None]


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


def backoff(failures: int, now: float) -> float:
    """When the next refresh may run after ``failures`` consecutive failures (jittered)."""
    delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (failures - 1))
    return now + delay * random.uniform(0.5, 1.0)


@dataclass(slots=True)
class _Fetch:
    """One refresh under way: what it refreshes and what it asked."""

    stored: Stored
    request_fields: list[tuple[bytes, bytes]]
    generation: Generation
    for_client: bool


def freshened(entry: Entry, fields, request_time: float, response_time: float, rules) -> Entry | None:
    """``entry`` (as sent) re-admitted with the fields of the 304 or HEAD that freshens it (RFC 9111
    §4.3.4, §4.3.5); None when the result may not replace it (refused, or varying otherwise)."""
    admitted = admit(
        key=entry.key,
        url=entry.url,
        host=entry.host,
        method="GET",
        request_fields=refresh_request_fields(entry),
        status=entry.status,
        reason=entry.reason,
        response_fields=freshened_fields(entry, fields),
        body=entry.body,
        request_time=request_time,
        response_time=response_time,
        rules=rules,
    )
    if isinstance(admitted, Refusal) or admitted.vary != entry.vary:
        return None
    return admitted


class Refresher:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._tasks: set[asyncio.Task[Result]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._slot_count = 0

    def start(self, stored: Stored, read_at: float) -> bool:
        """Refresh ``stored`` in the background unless a fetch for its key is under way, or it may
        not be refreshed without a client (``refreshable_in_background``); True when one started.
        ``read_at``: when the read of the store that gave ``stored`` began; a version another
        process stored after that makes this refresh redundant (``Coalescer.claim``)."""
        return refreshable_in_background(stored.entry) and self._start(stored, None, read_at) is not None

    def _start(
        self, stored: Stored, client_fields: Fields | None, read_at: float
    ) -> asyncio.Task[Result] | None:
        if not self._core.coalescer.lead(stored.entry.key):
            return None
        task = asyncio.get_running_loop().create_task(self._run(stored, client_fields, read_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start_in_background(self, stored: Stored, now: float, read_at: float) -> bool:
        """Like ``start``, but honours the backoff of an entry whose last refresh failed."""
        if now < stored.meta.retry_at:
            return False
        started = self.start(stored, read_at)
        if started:
            self._core.counters.add(Count.REFRESH_BACKGROUND)
        return started

    async def revalidate(
        self, stored: Stored, timeout: float, read_at: float, client_fields: Fields | None = None
    ) -> Result:
        """Revalidate ``stored`` for a waiting client (or join the fetch under way) and wait for it.

        The outcome is None on timeout. When this call made the request (from ``client_fields``,
        the client's request) and the upstream's answer was not stored -- an error, or a response
        that may not be shared -- that answer comes back too: it is this client's own response.
        """
        task = self._start(stored, client_fields, read_at)
        if task is None:
            return await self._core.coalescer.wait(stored.entry.key, timeout), None  # type: ignore[return-value]
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(timeout, 0.0))
        except TimeoutError:
            return None, None  # type: ignore[return-value]

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _semaphore(self) -> asyncio.Semaphore:
        wanted = self._core.settings().refresh_concurrency
        if self._slots is None or self._slot_count != wanted:
            self._slots, self._slot_count = asyncio.Semaphore(wanted), wanted
        return self._slots

    async def _run(self, stored: Stored, client_fields: Fields | None, read_at: float) -> Result:
        key = stored.entry.key
        if not await self._core.coalescer.claim(key, read_at):
            return await self._follow(key), None
        outcome = Outcome(Kind.FAILED, status=502, detail="refresh-cancelled", failure=Failure.CANCELLED)
        fetched = None
        try:
            async with self._semaphore():
                outcome, fetched = await self.fetch_for(stored, client_fields)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not leave waiters hanging
            log.exception("refresh of %s failed unexpectedly", key)
            detail = f"refresh-error: {type(e).__name__}"
            outcome = Outcome(Kind.FAILED, status=502, detail=detail, failure=Failure.CANCELLED)
        finally:
            self._core.coalescer.finish(key, outcome)
        return outcome, fetched

    async def _follow(self, key: str) -> Outcome:
        """Another process sharing the store refreshes ``key``: its outcome is this refresh's."""
        outcome = await self._core.coalescer.wait(key, self._core.settings().upstream_timeout * 2 + 1)
        return outcome or Outcome(Kind.FAILED, status=504, detail="upstream-timeout", failure=Failure.TIMEOUT)

    async def fetch(self, stored: Stored) -> Outcome:
        """One conditional GET for ``stored``; stores what comes back and says what happened."""
        outcome, _ = await self.fetch_for(stored, None)
        return outcome

    async def fetch_for(self, stored: Stored, client_fields: Fields | None) -> Result:
        """One conditional GET for ``stored`` -- a clean one, or from ``client_fields`` -- storing what
        comes back; also returns the upstream's response when it was not stored."""
        entry = stored.entry
        request_fields = (
            refresh_request_fields(entry)
            if client_fields is None
            else revalidation_request_fields(client_fields)
        )
        if not any(k.lower() == b"host" for k, _ in request_fields):
            request_fields.insert(0, (b"host", entry.host.encode("latin-1")))
        job = _Fetch(stored, request_fields, self._core.bus.generation(entry.key), client_fields is not None)
        settings = self._core.settings()
        try:
            fetched = await self._core.upstream.get(
                entry.url,
                request_fields + conditional_fields(entry),
                settings.upstream_timeout,
                settings.max_object_bytes,
            )
        except UpstreamError as e:
            await self._failed(stored, e.detail)
            failure = Failure.TIMEOUT if e.status == 504 else Failure.UNREACHABLE
            return Outcome(Kind.FAILED, status=e.status, detail=e.detail, failure=failure), None
        except TooLarge:
            await self._unshareable(entry.key)
            return Outcome(Kind.UNSHAREABLE, detail="too-large"), None
        if fetched.status >= 500:  # RFC 9111 §4.3.3: as if the upstream had not answered
            await self._failed(stored, f"upstream answered {fetched.status}")
            detail = f"{Failure.STATUS.value}-{fetched.status}"
            return Outcome(Kind.FAILED, status=502, detail=detail, failure=Failure.STATUS), fetched
        return await self._store(job, fetched)

    async def _store(self, job: _Fetch, fetched: Fetched) -> Result:
        core, entry = self._core, job.stored.entry
        revalidated = fetched.status == 304 and await self._freshen_selected(entry, fetched)
        if revalidated:
            entry = as_sent(entry)  # re-admitted as the upstream sent it, coded again when stored
        admitted = self._admit(job, entry, fetched, revalidated)
        unstored = None if fetched.status == 304 else fetched  # a 304 is no client's answer
        if job.for_client and not revalidated and kept_against_forced_answer(entry, time.time()):
            core.counters.add(Count.REFRESH_UNSHAREABLE)
            return Outcome(Kind.UNSHAREABLE, detail="fresh-entry-kept"), unstored
        if isinstance(admitted, Refusal):
            if not job.for_client or admitted.reason not in REQUEST_SPECIFIC_REFUSALS:
                await self._unshareable(entry.key)
            core.counters.add(Count.REFRESH_UNSHAREABLE)
            return Outcome(Kind.UNSHAREABLE, detail=admitted.reason), unstored
        meta = core.meta_after(await self._latest_meta(job.stored), time.time())
        admitted = await core.encode(admitted)
        if not core.bus.current(entry.key, job.generation):
            core.counters.add(Count.NOT_STORED_INVALIDATED)
            return Outcome(Kind.UNSHAREABLE, detail="invalidated"), unstored
        await core.write(admitted, meta, encoded=True)
        core.counters.add(Count.REFRESH_REVALIDATED if revalidated else Count.REFRESH_REPLACED)
        return Outcome(Kind.STORED, revalidated=revalidated), None

    def _admit(self, job: _Fetch, entry: Entry, fetched: Fetched, revalidated: bool) -> Entry | Refusal:
        """The refresh's answer judged for storing: a revalidated entry as freshened by the 304,
        otherwise the upstream's new answer."""
        return admit(
            key=entry.key,
            url=entry.url,
            host=entry.host,
            method="GET",
            request_fields=job.request_fields,
            status=entry.status if revalidated else fetched.status,
            reason=entry.reason if revalidated else fetched.reason,
            response_fields=freshened_fields(entry, fetched.fields) if revalidated else fetched.fields,
            body=entry.body if revalidated else fetched.body,
            request_time=fetched.request_time,
            response_time=fetched.response_time,
            rules=self._core.settings().rules,
        )

    async def _freshen_selected(self, entry: Entry, not_modified: Fetched) -> bool:
        """A 304 freshens the stored variants it selects (RFC 9111 §4.3.4) but ``entry`` (the
        caller stores that one); True when it selected ``entry``."""
        others = [s.entry for s in await self._core.store.peek(entry.key)]
        selected = select_for_update(entry, others, not_modified.fields)
        for other in selected:
            if other.version != entry.version:
                await self._freshen(other, not_modified)
        return any(e.version == entry.version for e in selected)

    async def _latest_meta(self, stored: Stored):
        """The refreshed version's metadata as the store has it now, uses written behind included."""
        await self._core.flush_uses()
        for current in await self._core.store.peek(stored.entry.key):
            if current.entry.version == stored.entry.version:
                return current.meta
        return stored.meta

    async def _freshen(self, entry: Entry, not_modified: Fetched) -> None:
        """Freshen another stored variant that a 304 selected (RFC 9111 §4.3.4)."""
        core, entry = self._core, as_sent(entry)
        admitted = freshened(
            entry,
            not_modified.fields,
            not_modified.request_time,
            not_modified.response_time,
            core.settings().rules,
        )
        if admitted is None:
            await core.store.discard(entry.key, entry.vary, entry.version)
            return
        previous = next(
            (s.meta for s in await core.store.peek(entry.key) if s.entry.version == entry.version), None
        )
        await core.write(admitted, core.meta_after(previous, time.time()))

    async def _failed(self, stored: Stored, detail: str) -> None:
        entry = stored.entry
        retry_at = backoff(stored.meta.refresh_failures + 1, time.time())
        await self._core.store.note_refresh_failure(entry.key, entry.vary, entry.version, retry_at)
        self._core.counters.add(Count.REFRESH_FAILED)
        log.warning("refresh of %s failed: %s", entry.key, detail)

    async def _unshareable(self, key: str) -> None:
        """The URL's response may no longer be stored: drop it, and go straight upstream for a while."""
        await self._core.store.delete(key)
        self._core.hit_for_miss.remember(key, time.time(), self._core.settings().hit_for_miss)
