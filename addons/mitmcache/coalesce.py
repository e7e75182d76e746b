"""One upstream fetch per key: the fetch's outcome is shared by everyone who asked meanwhile.

Whoever finds no fetch under way for a key leads (a client flow going upstream, or a refresh
task); everyone else awaits the leader's future -- no polling -- and is answered from its outcome.
A key whose last response could not be shared is remembered for a while ("hit-for-miss", as
Varnish calls it), so that later requests for it go upstream at once instead of queueing.
"""

import asyncio
from dataclasses import dataclass
from enum import Enum

from .entry import Entry


class Kind(Enum):
    STORED = "stored"  # entry holds the response: answer from it
    UNSHAREABLE = "unshareable"  # the response may not be shared: go upstream yourself
    FAILED = "failed"  # the upstream failed: serve stale if allowed, else an error
    ABANDONED = "abandoned"  # the leader's client went away before an answer: try again


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    entry: Entry | None = None
    status: int = 0  # for FAILED: 502 or 504
    detail: str = ""
    revalidated: bool = False  # the entry was freshened by a 304 from the upstream


class Inflight:
    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[Outcome]] = {}

    def lead(self, key: str) -> bool:
        """Become the one fetching ``key``; False when a fetch is already under way."""
        if key in self._futures:
            return False
        self._futures[key] = asyncio.get_running_loop().create_future()
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
        future = self._futures.get(key)
        if future is None:
            return Outcome(Kind.ABANDONED)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.0))
        except TimeoutError:
            return None

    def __len__(self) -> int:
        return len(self._futures)


class HitForMiss:
    """Keys recently found unshareable, and until when."""

    def __init__(self, limit: int = 100_000) -> None:
        self._until: dict[str, float] = {}
        self._limit = limit

    def remember(self, key: str, now: float, seconds: float) -> None:
        if len(self._until) >= self._limit:
            self._until = {k: t for k, t in self._until.items() if t > now}
            if len(self._until) >= self._limit:
                self._until.clear()
        self._until[key] = now + seconds

    def forget(self, key: str) -> None:
        self._until.pop(key, None)

    def active(self, key: str, now: float) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now:
            del self._until[key]
            return False
        return True
