"""The request lifecycle's driver: a flat loop that does the I/O each step of
``policy.lifecycle`` asks for, and says how to answer, as a value (``Answer``).

A fresh entry is served at once (HIT), a stale one that may be served is served while a background
refresh runs (STALE), one that must be revalidated waits for a single conditional fetch
(REVALIDATED); with no entry, the first request goes upstream (MISS, the leader: ``Forward``) and
concurrent ones wait for its outcome (COALESCED), re-reading the store when it stored a response.
"""

import functools
import inspect
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from .coalesce import Kind, Outcome
from .core import Core, select
from .counters import Count
from .entry import Entry, Stored
from .generations import Generation
from .policy.cache_status import RENDERED_STATUSES, Status, XCache
from .policy.fields import Fields
from .policy.freshness import current_age
from .policy.lifecycle import Step, refresh_on_hit, refreshable_in_background, with_entry, without_entry
from .policy.reuse import (
    NO_DIRECTIVES,
    RequestDirectives,
    Use,
    decide,
    may_serve_stale_on_error,
    stale_on_error_limit,
)
from .refresh import Refresher
from .store.base import read_began
from .upstream import Fetched

# decide()'s reasons that come from the request's own directives (Cache-Status fwd=request).
REQUEST_REASONS = frozenset({"request-no-cache", "request-max-age", "request-min-fresh"})


@dataclass(slots=True)
class Serve:
    """Answer from this stored response."""

    entry: Entry
    status: Status
    age: float


@dataclass(slots=True)
class Refuse:
    """The cache's own error (a 504 for only-if-cached, a 502/504 for a failed fetch)."""

    code: int
    message: str
    status: Status


@dataclass(slots=True)
class Forward:
    """Go upstream (through mitmproxy); ``leader``: others wait for this fetch."""

    fwd: str  # Cache-Status fwd= reason: uri-miss, vary-miss, stale, request, bypass
    leader: bool
    generation: Generation
    detail: str | None = None
    stale: Entry | None = None  # a HEAD written through to revalidate this stored GET response


@dataclass(slots=True)
class Relay:
    """The upstream's answer to this client's own revalidation, not stored: pass it on."""

    fetched: Fetched
    status: Status


type Answer = Serve | Refuse | Forward | Relay


def lifetime_detail(entry: Entry) -> str | None:
    """Cache-Status says when the lifetime is the operator's (override mode), not the upstream's."""
    return "lifetime-override" if entry.lifetime_source == "override" else None


def with_tier(detail: str | None, tier: str | None) -> str | None:
    """Cache-Status says which tier answered a hit, when the store has tiers."""
    return f"{detail} {tier}" if detail and tier else detail or tier


@functools.lru_cache(maxsize=RENDERED_STATUSES)
def served_status(x_cache: str, ttl: int, detail: str | None) -> Status:
    """The status of an answer from a stored copy, remembered: a hot key's hits repeat it (its ttl
    changes once a second), and one lookup costs less than building it."""
    return Status(x_cache, hit=True, ttl=ttl, detail=detail)


class Lookup:
    def __init__(self, core: Core, refresher: Refresher) -> None:
        self._core = core
        self._refresher = refresher

    def forward(self, key: str, fwd: str, *, leader: bool = False, detail: str | None = None) -> Forward:
        return Forward(fwd, leader, self._core.bus.generation(key), detail)

    def answer_held(
        self,
        method: str,
        key: str,
        fields: Fields,
        may_lead: bool,
        directives: RequestDirectives,
        deadline: float,
    ) -> Answer | Coroutine[Any, Any, Answer] | None:
        """``answer`` from what the store holds in this process, without awaiting: the answer; the
        revalidation the held copy needs, to await; or None when the store must be asked
        (nothing held for this request's variant, and more may be stored elsewhere) or the request
        must wait for a fetch under way: then ``answer``. A miss on a store that is all held here
        is decided here too, when its lead needs no claim: most misses then cost no coroutine."""
        core = self._core
        variants = core.store.held(key)
        stored = select(variants, fields) if variants else None
        now = time.time()
        if stored is not None:
            return self._from_stored(method, key, fields, stored, directives, deadline, now, now)
        if not (core.store.holds_everything and core.coalescer.claims_at_once):
            return None
        missing = self._missing(key, variants, directives, may_lead, now)
        if not isinstance(missing, tuple):
            return missing
        step, fwd = missing
        if step is Step.LEAD and core.coalescer.lead(key):
            return self.forward(key, fwd, leader=True)
        return None  # a fetch is under way: ``answer`` waits for it

    def _from_stored(
        self,
        method: str,
        key: str,
        fields: Fields,
        stored: Stored,
        directives: RequestDirectives,
        deadline: float,
        now: float,
        read_at: float,
    ) -> Answer | Coroutine[Any, Any, Answer]:
        """The answer from the stored copy this request selected, or the revalidation it needs
        (``read_at``: when the read that found the copy began, for a fetch's claim)."""
        answer = self._with_entry(method, key, stored, directives, now, read_at)
        if isinstance(answer, str):  # the fwd reason of the revalidation it needs
            return self._revalidate(key, fields, stored, directives, answer, deadline, read_at)
        return answer

    async def answer(
        self,
        method: str,
        key: str,
        fields: Fields,
        may_lead: bool,
        directives: RequestDirectives,
        deadline: float,
    ) -> Answer:
        """How to answer a GET or HEAD for ``key`` (``fields``: the request's header fields;
        ``may_lead``: a plain GET, whose answer is stored; ``deadline``: monotonic)."""
        core = self._core
        while True:
            now = time.time()
            variants = await core.store.variants(key)
            stored = select(variants, fields) if variants else None
            read_at = read_began(variants, now)
            if stored is not None:
                found = self._from_stored(method, key, fields, stored, directives, deadline, now, read_at)
                return await found if inspect.iscoroutine(found) else found
            missing = self._missing(key, variants, directives, may_lead, now)
            if not isinstance(missing, tuple):
                return missing
            step, fwd = missing
            # claim: False when another process sharing the store fetches it: wait like a follower
            if step is Step.LEAD and core.coalescer.lead(key) and await core.coalescer.claim(key, read_at):
                return self.forward(key, fwd, leader=True)
            answer = await self._wait(key, fields, fwd, deadline)
            if answer is not None:
                return answer  # else the leader's client left before an answer: look again

    def _missing(
        self, key: str, variants: Sequence[Stored], directives: RequestDirectives, may_lead: bool, now: float
    ) -> Answer | tuple[Step, str]:
        """With no stored copy this request may use: its answer (the cache's 504 for
        only-if-cached, or upstream without leading), or the step left to take (``LEAD`` a fetch,
        or ``WAIT`` for the one under way) with the Cache-Status ``fwd`` of that fetch."""
        core = self._core
        fwd = "vary-miss" if variants else "uri-miss"
        hit_for_miss = core.hit_for_miss.active(key, now)
        step = without_entry(
            only_if_cached=directives.only_if_cached,
            hit_for_miss=hit_for_miss,
            may_lead=may_lead,
            busy=core.coalescer.busy(key),
        )
        if step is Step.REFUSE:
            status = Status(XCache.MISS, fwd="miss", detail="only-if-cached")
            return Refuse(504, "only-if-cached and not in cache", status)
        if step is Step.FORWARD:
            return self.forward(key, fwd, detail="hit-for-miss" if hit_for_miss else None)
        return step, fwd

    async def _wait(self, key: str, fields: Fields, fwd: str, deadline: float) -> Answer | None:
        core = self._core
        core.counters.add(Count.COALESCED_WAIT)
        outcome = await core.coalescer.wait(key, deadline - time.monotonic())
        if outcome is None:
            core.counters.add(Count.COALESCED_TIMEOUT)
            status = Status(XCache.COALESCED, fwd=fwd, collapsed=True, detail="wait-timeout")
            timeout = core.settings().upstream_timeout
            return Refuse(504, f"upstream did not answer within {timeout:g}s", status)
        if outcome.kind is Kind.ABANDONED:
            return None
        answer = await self.from_outcome(key, fields, outcome, stale=None, fwd=fwd, collapsed=True)
        return answer or self.forward(key, fwd, detail=outcome.detail or outcome.kind.value)

    def _with_entry(
        self, method: str, key: str, stored: Stored, directives: RequestDirectives, now: float, read_at: float
    ) -> Answer | str:
        """The answer from a stored copy, or the Cache-Status ``fwd`` of the revalidation it needs
        (a plain function: the common hit costs no coroutine of its own)."""
        core, entry = self._core, stored.entry
        settings = core.settings()
        decision = decide(
            entry,
            stored.meta,
            directives,
            now,
            refresh_window=settings.refresh_window,
            # Serving stale in the refresh window promises a background refresh.
            serve_stale_in_window=settings.serve_stale_in_window and refreshable_in_background(entry),
            error_limit=settings.stale_if_error,
        )
        core.note_use(stored, now, hit=True)
        use = decision.use
        busy = use is Use.REVALIDATE and core.coalescer.busy(key)
        step = with_entry(use, only_if_cached=directives.only_if_cached, head=method == "HEAD", busy=busy)
        if step is Step.SERVE or step is Step.SERVE_STALE:
            if refresh_on_hit(use, decision.ttl, settings.lifecycle):
                self._refresher.start_in_background(stored, now, read_at)
            if step is Step.SERVE:
                detail = with_tier(lifetime_detail(entry), core.tier(stored))
                status = served_status(XCache.HIT, int(decision.ttl), detail)
            else:
                detail = with_tier(decision.reason, core.tier(stored))
                status = served_status(XCache.STALE, int(decision.ttl), detail)
            return Serve(entry, status, decision.age)
        fwd = "request" if decision.reason in REQUEST_REASONS else "stale"
        if step is Step.REFUSE:
            status = Status(XCache.MISS, fwd=fwd, detail="only-if-cached")
            return Refuse(504, "only-if-cached and the stored copy needs revalidation", status)
        if step is Step.FORWARD_HEAD:
            forward = self.forward(key, fwd)
            forward.stale = entry
            return forward
        return fwd

    async def _revalidate(
        self,
        key: str,
        fields: Fields,
        stored: Stored,
        directives: RequestDirectives,
        fwd: str,
        deadline: float,
        read_at: float,
    ) -> Answer:
        outcome, fetched = await self._refresher.revalidate(
            stored, deadline - time.monotonic(), read_at, fields
        )
        if outcome is None:
            timeout = self._core.settings().upstream_timeout
            outcome = Outcome(Kind.FAILED, status=504, detail=f"upstream-timeout after {timeout:g}s")
        if fetched is not None and outcome.kind is not Kind.STORED:
            # The upstream's answer to this client's own revalidation, not stored: it is the
            # answer, unless it is an error a stale copy may stand in for.
            if outcome.kind is Kind.FAILED:
                answer = await self.from_outcome(
                    key, fields, outcome, stale=stored.entry, fwd=fwd, directives=directives, only_stale=True
                )
                if answer is not None:
                    return answer
            status = Status(XCache.MISS, fwd=fwd, fwd_status=fetched.status, detail=outcome.detail)
            return Relay(fetched, status)
        answer = await self.from_outcome(
            key, fields, outcome, stale=stored.entry, fwd=fwd, directives=directives
        )
        return answer or self.forward(key, fwd, detail=outcome.detail)

    async def from_outcome(
        self,
        key: str,
        fields: Fields,
        outcome: Outcome,
        *,
        stale: Entry | None,
        fwd: str,
        collapsed: bool = False,
        directives: RequestDirectives = NO_DIRECTIVES,
        only_stale: bool = False,
    ) -> Answer | None:
        """Answer a request that waited for a fetch; None when it must go upstream on its own.
        ``only_stale``: answer only with the stale copy, where a failure lets it stand in."""
        if outcome.kind is Kind.STORED:
            return await self._reread(key, fields, outcome, fwd, collapsed)
        if outcome.kind is not Kind.FAILED:
            return None
        now, settings = time.time(), self._core.settings()
        limit = stale_on_error_limit(
            settings.stale_if_error, disconnected=outcome.disconnected, pure_rfc=settings.pure_rfc
        )
        if stale is not None and may_serve_stale_on_error(stale, now, limit, directives.stale_if_error):
            age = current_age(stale.initial_age, stale.response_time, now)
            status = Status(XCache.STALE, hit=True, ttl=int(stale.lifetime - age), detail=outcome.detail)
            return Serve(stale, status, age)
        if only_stale:
            return None
        status = Status(XCache.MISS, fwd=fwd, collapsed=collapsed, detail=outcome.detail)
        return Refuse(outcome.status or 502, outcome.detail, status)

    async def _reread(
        self, key: str, fields: Fields, outcome: Outcome, fwd: str, collapsed: bool
    ) -> Answer | None:
        """The fetch stored a response: read it back (it may have been stored by another process)."""
        stored = select(await self._core.store.variants(key), fields)
        if stored is None:
            return None  # another variant, or gone meanwhile: go upstream
        now, entry = time.time(), stored.entry
        age = current_age(entry.initial_age, entry.response_time, now)
        x_cache = (
            XCache.REVALIDATED if outcome.revalidated else XCache.COALESCED if collapsed else XCache.MISS
        )
        status = Status(
            x_cache,
            fwd=fwd,
            fwd_status=304 if outcome.revalidated else entry.status,
            stored=True,
            collapsed=collapsed,
            ttl=int(entry.lifetime - age),
        )
        self._core.note_use(stored, now, hit=False)
        return Serve(entry, status, age)
