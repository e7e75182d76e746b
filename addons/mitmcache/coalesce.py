"""One upstream fetch per key: the fetch's outcome is shared by everyone who asked meanwhile.

Whoever finds no fetch under way for a key leads (a client flow going upstream, or a refresh
task); everyone else awaits the leader's future -- no polling -- and is answered from its outcome.
An outcome is plain values, not the stored entry: followers re-read the store, so the same
outcome can come from another process sharing the store (``Coalescer`` is the interface).
A key whose last response could not be shared is remembered for a while ("hit-for-miss", as
Varnish calls it), so that later requests for it go upstream at once instead of queueing.
"""

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class Kind(Enum):
    STORED = "stored"  # the store holds the response: re-read it and answer from it
    UNSHAREABLE = "unshareable"  # the response may not be shared: go upstream yourself
    FAILED = "failed"  # the upstream failed: serve stale if allowed, else an error
    ABANDONED = "abandoned"  # the leader's client went away before an answer: try again


class Failure(Enum):
    """Why a fetch failed: stale copies may stand in for some failures only (RFC 9111 §4.2.4)."""

    STATUS = "upstream-status"  # the upstream answered with an error status (5xx)
    UNREACHABLE = "upstream-error"  # no answer: refused, reset, closed
    TIMEOUT = "upstream-timeout"  # no answer in time
    CANCELLED = "refresh-cancelled"  # the fetch was cancelled (shutdown) or failed inside the cache


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    status: int = 0  # for FAILED: 502 or 504
    detail: str = ""
    revalidated: bool = False  # the entry was freshened by a 304 from the upstream
    failure: Failure | None = None  # for FAILED

    @property
    def disconnected(self) -> bool:
        """The upstream gave no answer (rather than an error answer)."""
        return self.failure is not Failure.STATUS


# The outcomes every stored miss gives (an outcome is immutable, so one object serves them all).
STORED = Outcome(Kind.STORED)
STORE_FAILED = Outcome(Kind.UNSHAREABLE, detail="store-failed")  # what the waiters get if storing raised


class Coalescer(Protocol):
    """One fetch per key, its outcome shared: in this process (``Inflight``), or across processes."""

    # True when ``claim`` always confirms a lead at once (one process): a lookup may then decide a
    # miss without awaiting (``Lookup.answer_held``).
    claims_at_once: bool

    def lead(self, key: str) -> bool: ...

    async def claim(self, key: str, read_at: float) -> bool:
        """After ``lead``: confirm the lead across the processes sharing the store. False when
        another process fetches ``key``, or has stored it since ``read_at`` (when the caller began
        the read of the store that found nothing to use): this coalescer then finishes the local
        fetch with that fetch's outcome, and the caller waits for it like a follower."""
        ...

    def busy(self, key: str) -> bool: ...

    def finish(self, key: str, outcome: Outcome) -> None: ...

    async def wait(self, key: str, timeout: float) -> Outcome | None: ...

    def __len__(self) -> int: ...


class Inflight:
    claims_at_once = True

    def __init__(self) -> None:
        # The fetches under way, with the future their waiters await: made by the first waiter,
        # since most fetches have none (every miss would otherwise make one for nobody).
        self._futures: dict[str, asyncio.Future[Outcome] | None] = {}

    def lead(self, key: str) -> bool:
        """Become the one fetching ``key``; False when a fetch is already under way."""
        if key in self._futures:
            return False
        self._futures[key] = None
        return True

    async def claim(self, key: str, read_at: float) -> bool:
        """One process: leading here is leading everywhere."""
        return True

    def busy(self, key: str) -> bool:
        return key in self._futures

    def finish(self, key: str, outcome: Outcome) -> None:
        """Hand the outcome to every waiter and free the key for the next fetch."""
        future = self._futures.pop(key, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    async def wait(self, key: str, timeout: float) -> Outcome | None:
        """The outcome of the fetch under way for ``key``; None after ``timeout`` seconds.

        The future is shielded: a waiter that gives up (or whose client disconnects) never
        cancels the fetch the others are waiting for.
        """
        if key not in self._futures:
            return Outcome(Kind.ABANDONED)
        future = self._futures[key]
        if future is None:
            future = self._futures[key] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.0))
        except TimeoutError:
            return None

    def __len__(self) -> int:
        return len(self._futures)


class HitForMissMemory(Protocol):
    """Keys whose responses could not be shared, for a while: in this process (``HitForMiss``), or
    shared by processes."""

    def remember(self, key: str, now: float, seconds: float) -> None: ...

    def forget(self, key: str) -> None: ...

    def active(self, key: str, now: float) -> bool: ...

    def sweep(self, now: float) -> None:
        """Forget the keys whose time ran out (called periodically: nobody may ask for them again)."""
        ...

    def bound(self, max_bytes: int) -> None:
        """Hold at most about this many bytes."""
        ...


KEY_OVERHEAD = 120  # what one remembered key costs beyond its characters: a dict slot, str and float


class HitForMiss:
    """Keys recently found unshareable, and until when, in the order they were remembered, bounded
    by count and by bytes (the oldest are forgotten first: a forgotten key only waits behind one
    fetch once more) and swept as they run out."""

    def __init__(self, limit: int = 100_000, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._limit = limit
        self._max_bytes = max_bytes
        self.bytes = 0

    def bound(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._make_room(0)

    def remember(self, key: str, now: float, seconds: float) -> None:
        self.sweep(now)
        self.forget(key)
        cost = len(key) + KEY_OVERHEAD
        self._make_room(cost)
        self._until[key] = now + seconds
        self.bytes += cost

    def forget(self, key: str) -> None:
        if self._until.pop(key, None) is not None:
            self.bytes -= len(key) + KEY_OVERHEAD

    def active(self, key: str, now: float) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now:
            self.forget(key)
            return False
        return True

    def sweep(self, now: float) -> None:
        """Keys are remembered in order, for the same number of seconds (unless the setting changed
        meanwhile), so the first one still running ends the sweep: O(1) per key forgotten."""
        until = self._until
        while until:
            key, at = next(iter(until.items()))
            if at > now:
                return
            self.forget(key)

    def __len__(self) -> int:
        return len(self._until)

    def _make_room(self, cost: int) -> None:
        until = self._until
        while until and (len(until) >= self._limit or self.bytes + cost > self._max_bytes):
            self.forget(next(iter(until)))
