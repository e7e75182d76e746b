"""The cache engine: the one core between mitmproxy and the infrastructure.

It owns the store, coalescing, hit-for-miss, refresh and expiry scheduling, invalidation and the
counters, and speaks values, not flows: a request's method, key and fields; a response's status,
fields and body; times. The addon (addon.py) translates flows to and from it; the control plane,
the commands and the write queue call it, never the addon. Its entry points:

* ``lookup``: how to answer a GET or HEAD (``lookup.Answer``: serve, refuse, forward, relay);
  ``lookup_held`` the same without awaiting, from what this process holds (the common hit, and
  a miss on a store held whole in this process);
* ``store_response``/``release``: what a forwarded fetch brought back, or that it failed;
* ``head_response``: a HEAD's 200 freshens or invalidates the stored GET responses;
* ``invalidate``/``invalidate_url``: drop a URL (and the URLs a response's ``Location`` and
  ``Content-Location`` name), so that a fetch that began before never stores its answer;
* ``purge``/``purge_prefix``/``clear``, ``refresh``, ``variants``, ``stats``: the control plane's;
* ``tagged``/``purge_tag``/``soft_purge_tag``: the same by tag (surrogate keys, tag_control.py);
* ``upstream``: the cache's own upstream client, for any method with a streamed body.
"""

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .coalesce import STORE_FAILED, STORED, Failure, Kind, Outcome
from .compression import as_sent
from .config import Settings
from .core import Core, run_eagerly
from .counters import Count, Counters
from .entry import Entry, Stored
from .expiry import ExpiryScheduler
from .generations import Generation
from .lookup import Forward, Lookup
from .policy.fields import Fields
from .policy.invalidation import invalidated_targets, invalidates
from .policy.key import matches, primary_key
from .policy.revalidation import head_freshens, kept_against_forced_answer
from .policy.storable import Head, Refusal, admit
from .refresh import Refresher, freshened
from .store.base import Store, Usage
from .store.memory import MemoryStore
from .upstream import Upstream

log = logging.getLogger("mitmcache")

# Refusals that say something about this request only, not about the URL's responses (a 206
# answers a Range request; "cookie": the default lifetime is not given to a Cookie request's).
REQUEST_SPECIFIC = frozenset({"request-no-store", "authorization", "partial", "cookie"})
CONTROL_REFRESH_ATTEMPTS = 10  # a control refresh waits behind fetches under way at most this often
HIT_FOR_MISS_SHARE = 16  # hit-for-miss keys take at most this fraction (1/16) of cache_max_bytes


def hit_for_miss_bytes(max_bytes: int) -> int:
    return max_bytes // HIT_FOR_MISS_SHARE


@dataclass(slots=True)
class Admission:
    """What became of a forwarded response: the entry admitted (as stored, perhaps compressed,
    unless ``stored`` is False), or the refusal, and the outcome its waiters were given."""

    entry: Entry | None
    stored: bool
    detail: str | None
    outcome: Outcome


class Engine:
    def __init__(self, settings: Callable[[], Settings], store: Store | None = None) -> None:
        initial = settings()
        self.core = Core(settings, store or MemoryStore(initial.max_bytes, initial.max_entries), Upstream())
        self.refresher = Refresher(self.core)
        self.expiry = ExpiryScheduler(self.core, self.refresher)
        self._lookup = Lookup(self.core, self.refresher)
        self.lookup = self._lookup.answer
        self.lookup_held = self._lookup.answer_held
        self._usage = Usage(0, 0, 0, 0)
        self.core.hit_for_miss.bound(hit_for_miss_bytes(initial.max_bytes))
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def counters(self) -> Counters:
        return self.core.counters

    @property
    def upstream(self) -> Upstream:
        return self.core.upstream

    # -- lifecycle ---------------------------------------------------------------------------------

    def configure(self, settings: Settings) -> None:
        """New settings: the store's bounds apply at once (an in-memory store's before this returns)."""
        run_eagerly(self.core.store.resize(settings.max_bytes, settings.max_entries))
        self.core.hit_for_miss.bound(hit_for_miss_bytes(settings.max_bytes))

    def sweep(self, now: float) -> None:
        """Periodic housekeeping that needs no I/O: forget hit-for-miss keys that ran out."""
        self.core.hit_for_miss.sweep(now)

    def forget_unshareable(self, key: str) -> None:
        """Let requests for ``key`` wait for each other again (after an operator's refresh or clear)."""
        self.core.hit_for_miss.forget(key)

    def start(self, verify_tls: bool | ssl.SSLContext) -> None:
        concurrency = max(self.core.settings().refresh_concurrency, 1)
        self.core.upstream.start(verify_tls=verify_tls, max_connections=concurrency * 2)
        self.expiry.start()

    def stop(self) -> None:
        self.expiry.stop()
        self.refresher.cancel_all()
        for task in list(self._tasks):
            task.cancel()
        asyncio.get_event_loop().create_task(self.core.upstream.close())

    # -- forwarded fetches -------------------------------------------------------------------------

    def forward(self, key: str, fwd: str, detail: str | None = None) -> Forward:
        """A request that goes upstream without a lookup (e.g. with origin preconditions): its
        answer is still stored, unless its URL is invalidated meanwhile."""
        return self._lookup.forward(key, fwd, detail=detail)

    def upstream_fetch(self) -> None:
        """A client request went upstream (varnish MAIN.backend_req)."""
        self.core.counters.add(Count.UPSTREAM_FETCH)

    def release(self, key: str, outcome: Outcome) -> None:
        """A leader's fetch ended without a stored response: tell its waiters."""
        self.core.coalescer.finish(key, outcome)

    def unshareable(self, key: str) -> None:
        """The URL's responses cannot be shared for now: later requests go straight upstream."""
        settings = self.core.settings()
        self.core.hit_for_miss.remember(key, time.time(), settings.hit_for_miss)

    async def store_response(
        self,
        *,
        key: str,
        url: str,
        host: str,
        request_fields: Fields,
        status: int,
        reason: bytes,
        response_fields: Fields,
        body: bytes,
        request_time: float,
        generation: Generation,
        leader: bool,
        forced: bool = False,
        head: Head | None = None,
    ) -> Admission:
        """Store a forwarded GET's complete response if it may be, and release its waiters.
        ``forced``: the request's own directives sent it upstream past a stored response, which
        it replaces only if that one is not fresh (``kept_against_forced_answer``)."""
        core = self.core
        outcome = STORE_FAILED
        try:  # the waiters are released whatever happens: no exception leaves the key wedged
            admitted = admit(
                key=key,
                url=url,
                host=host,
                method="GET",
                request_fields=request_fields,
                status=status,
                reason=reason,
                response_fields=response_fields,
                body=body,
                request_time=request_time,
                response_time=time.time(),
                rules=core.settings().rules,
                head=head,
            )
            admission = await self._admit(key, status, admitted, generation, forced)
            outcome = admission.outcome
        finally:
            if leader:
                core.coalescer.finish(key, outcome)
        return admission

    async def _admit(
        self, key: str, status: int, admitted: Entry | Refusal, generation: Generation, forced: bool = False
    ) -> Admission:
        core = self.core
        if isinstance(admitted, Refusal):
            if status >= 500:
                # The upstream is failing: the waiters share the failure (or a stale copy) rather
                # than each sending the failing upstream one more request, and the next request
                # leads a new fetch (no hit-for-miss for what is likely passing).
                detail = f"{Failure.STATUS.value}-{status}"
                return Admission(
                    None, False, admitted.reason, Outcome(Kind.FAILED, status, detail, failure=Failure.STATUS)
                )
            if admitted.reason not in REQUEST_SPECIFIC:
                self.unshareable(key)
            return Admission(None, False, admitted.reason, Outcome(Kind.UNSHAREABLE, detail=admitted.reason))
        admitted = await core.encode(admitted)
        if not core.bus.current(key, generation):
            # Invalidated while the fetch was under way: this answer may predate the change.
            core.counters.add(Count.NOT_STORED_INVALIDATED)
            return Admission(admitted, False, "invalidated", Outcome(Kind.UNSHAREABLE, detail="invalidated"))
        if forced and await self._fresh_variant(admitted):
            return Admission(
                admitted, False, "fresh-entry-kept", Outcome(Kind.UNSHAREABLE, detail="fresh-entry-kept")
            )
        stored = await core.write(admitted, core.meta_after(None, time.time()), encoded=True)
        if stored is None:
            return Admission(admitted, False, "too-large", Outcome(Kind.UNSHAREABLE, detail="too-large"))
        core.hit_for_miss.forget(key)
        core.counters.add(Count.STORED)
        return Admission(stored, True, None, STORED)

    async def _fresh_variant(self, admitted: Entry) -> bool:
        """Whether the store holds a fresh response for the variant ``admitted`` would replace."""
        now = time.time()
        return any(
            s.entry.vary == admitted.vary and kept_against_forced_answer(s.entry, now)
            for s in await self.core.store.peek(admitted.key)
        )

    async def head_response(
        self, key: str, request_fields: Fields, status: int, fields: Fields, request_time: float
    ) -> str:
        """RFC 9111 §4.3.5: a 200 to a HEAD freshens the stored GET responses it could have been
        answered from, or invalidates those it shows out of date. Returns the Cache-Status detail."""
        detail = "head"
        if status != 200:
            return detail
        core = self.core
        for stored in [s for s in await core.store.peek(key) if matches(s.entry.vary, request_fields)]:
            entry = stored.entry
            if head_freshens(entry, fields) and await self._freshen_by_head(stored, fields, request_time):
                detail = "head-freshened"
                continue
            if await core.store.discard(entry.key, entry.vary, entry.version):
                core.counters.add(Count.INVALIDATED)
                detail = "head-invalidated"
        return detail

    async def _freshen_by_head(self, stored: Stored, fields: Fields, request_time: float) -> bool:
        core, entry = self.core, as_sent(stored.entry)
        admitted = freshened(entry, fields, request_time, time.time(), core.settings().rules)
        if admitted is None:
            return False
        await core.write(admitted, core.meta_after(stored.meta, time.time()))
        core.counters.add(Count.HEAD_FRESHENED)
        return True

    # -- invalidation --------------------------------------------------------------------------------

    async def invalidate(self, key: str) -> int:
        """Drop every variant of a URL, and make sure no fetch under way stores an older answer."""
        self.core.bus.invalidate(key)
        self.core.hit_for_miss.forget(key)
        return await self.core.store.delete(key)

    async def invalidate_url(
        self, scheme: str, authority: str, target: str, response_fields: Fields = ()
    ) -> int:
        """Invalidate a request target of an origin, and the same-origin URLs the response's
        ``Location`` and ``Content-Location`` name (RFC 9111 §4.4); returns the entries dropped."""
        dropped = 0
        for path in invalidated_targets(f"{scheme}://{authority}{target}", response_fields):
            dropped += await self.invalidate(primary_key(scheme, authority, path))
        if dropped:
            self.core.counters.add(Count.INVALIDATED, dropped)
        return dropped

    async def after_unsafe(
        self, method: str, status: int, scheme: str, authority: str, target: str, fields: Fields
    ) -> int:
        """What a response to a request with another method than GET or HEAD invalidates."""
        if not invalidates(method, status):
            return 0
        return await self.invalidate_url(scheme, authority, target, fields)

    # -- the control plane ---------------------------------------------------------------------------

    async def keys(self) -> list[str]:
        return await self.core.store.keys()

    async def variants(self, key: str) -> Sequence[Stored]:
        """A URL's stored variants, not counted as a use; uses written behind are included."""
        await self.core.flush_uses()
        return await self.core.store.peek(key)

    def refreshing(self, key: str) -> bool:
        return self.core.coalescer.busy(key)

    async def purge(self, keys: Sequence[str]) -> int:
        dropped = 0
        for key in keys:
            dropped += await self.invalidate(key)
        return dropped

    async def purge_prefix(self, prefix: str) -> int:
        """Drop every URL starting with ``prefix`` (a key prefix), inside the store."""
        self.core.bus.invalidate_all()
        return await self.core.store.delete_prefix(prefix)

    async def clear(self) -> int:
        self.core.bus.invalidate_all()
        return await self.core.store.clear()

    async def tagged(self, tag: str) -> Sequence[Stored]:
        """The entries carrying ``tag``, not counted as a use; uses written behind are included."""
        await self.core.flush_uses()
        return await self.core.store.tagged(tag)

    async def purge_tag(self, tag: str) -> int:
        """Drop every entry carrying ``tag``, inside the store. Fetches under way do not store
        (their answers may carry the tag and predate the change), as for a prefix."""
        self.core.bus.invalidate_all()
        return await self.core.store.delete_tag(tag)

    async def soft_purge_tag(self, tag: str, at: float) -> int:
        """Mark every entry carrying ``tag`` expired as of ``at`` (same version): served stale
        only by the usual rules while one refresh runs; fetches under way do not store."""
        self.core.bus.invalidate_all()
        return await self.core.store.stale_tag(tag, at)

    async def discard(self, stored: Stored) -> bool:
        entry = stored.entry
        return await self.core.store.discard(entry.key, entry.vary, entry.version)

    def refresh(self, key: str, variants: Sequence[Stored]) -> None:
        """Refresh these variants of a URL in the background, one after the other."""
        if not variants:
            return
        self.core.counters.add(Count.REFRESH_CONTROL, len(variants))
        task = asyncio.get_running_loop().create_task(
            self._refresh_variants(key, [s.entry.vary for s in variants])
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_variants(self, key: str, varies: list) -> None:
        """One refresh per variant: the refresher runs one fetch per key. A fetch already under way
        (a client's, or a refresh that may predate what the caller knows) is waited for, then this
        variant is fetched anew."""
        timeout = self.core.settings().upstream_timeout * 2 + 1
        for vary in varies:
            for _ in range(CONTROL_REFRESH_ATTEMPTS):
                read_at = time.time()
                stored = next((s for s in await self.core.store.peek(key) if s.entry.vary == vary), None)
                if stored is None:
                    break  # dropped meanwhile: nothing to refresh
                started = self.refresher.start(stored, read_at)
                outcome = await self.core.coalescer.wait(key, timeout)
                if started:
                    self._log_refresh(key, timeout, outcome)
                    break

    @staticmethod
    def _log_refresh(key: str, timeout: float, outcome: Outcome | None) -> None:
        if outcome is None:
            log.warning("control: refresh of %s did not finish within %gs", key, timeout)
        else:
            detail = f" ({outcome.detail})" if outcome.detail else ""
            log.info("control: refresh of %s: %s%s", key, outcome.kind.value, detail)

    async def read_usage(self) -> Usage:
        """The store's usage now (also kept for readers that cannot await: the metrics collector)."""
        self._usage = await self.core.store.usage()
        return self._usage

    @property
    def last_usage(self) -> Usage:
        return self._usage

    @property
    def idle(self) -> bool:
        """No fetch under way and no control-plane refresh pending."""
        return not self._tasks and not len(self.core.coalescer)

    @property
    def inflight(self) -> int:
        return len(self.core.coalescer)
