"""Coordination across the processes sharing a Redis store: one upstream fetch per key, shared
hit-for-miss, and invalidations that reach every process.

* ``SharedCoalescer``: the local coalescer (``coalesce.Inflight``) for the requests of this process,
  and a lock per URL in Redis for the processes: whoever claims it fetches (``claim``); the others
  wait for the ``done`` event its release publishes -- a notification, not polling (they look at
  the lock only when no event came: a leader that died lets it expire). The lock carries a random
  token and a lifetime no longer than ``REQ_TIMEOUT``, extended while the fetch runs. A claim made
  after the URL was written (a lookup that found nothing just before another process stored it)
  is told so, and re-reads the store instead of fetching again.
* ``SharedHitForMiss``: a URL found unshareable is remembered in every process.
* ``SharedGenerations``: an invalidation bumps the URL's generation in every process, so a fetch
  under way anywhere does not store an answer that may predate it.

When Redis cannot be used, each falls back to what one process can do alone: nothing fails.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from .coalesce import STORED, Failure, HitForMiss, Inflight, Kind, Outcome
from .generations import Generation, LocalGenerations
from .store import redis_lua
from .store.redis import hash_key, lock_key
from .store.redis_link import CHANNEL, RedisLink
from .store.tiered import Unavailable

log = logging.getLogger("mitmcache")

LOCK_SECONDS = 3.0  # the lock's lifetime (at most REQ_TIMEOUT), extended every third of it
WATCH_SECONDS = 0.25  # how often a follower that got no event looks at the lock


def encode_outcome(outcome: Outcome) -> list[Any]:
    failure = outcome.failure.value if outcome.failure else None
    return [outcome.kind.value, outcome.status, outcome.detail, outcome.revalidated, failure]


def decode_outcome(values: Sequence[Any]) -> Outcome:
    kind, status, detail, revalidated, failure = values
    return Outcome(
        Kind(kind), int(status), str(detail), bool(revalidated), Failure(failure) if failure else None
    )


class SharedCoalescer:
    claims_at_once = False  # another process may hold the lead

    def __init__(self, link: RedisLink, upstream_timeout: Callable[[], float]) -> None:
        self._link = link
        self._upstream_timeout = upstream_timeout
        self._local = Inflight()
        self._held: dict[str, tuple[str, asyncio.Task[None]]] = {}  # key -> (token, extender)
        self._events: dict[str, asyncio.Future[Outcome]] = {}  # followed keys -> their done event
        self._tasks: set[asyncio.Task[Any]] = set()
        client = link.client
        self._claim = client.register_script(redis_lua.CLAIM)
        self._extend = client.register_script(redis_lua.EXTEND)
        self._release = client.register_script(redis_lua.RELEASE)
        link.on_event("done", self._on_done)

    def _lifetime(self) -> float:
        return min(LOCK_SECONDS, self._upstream_timeout())

    # -- the Coalescer interface -----------------------------------------------------------------

    def lead(self, key: str) -> bool:
        return self._local.lead(key)

    def busy(self, key: str) -> bool:
        return self._local.busy(key)

    async def wait(self, key: str, timeout: float) -> Outcome | None:
        return await self._local.wait(key, timeout)

    def __len__(self) -> int:
        return len(self._local)

    async def claim(self, key: str, read_at: float) -> bool:
        """``read_at`` is when the caller's read of the store began, not when it ended: under a
        herd this process's loop can take longer to get to the read's answer than another process
        takes to fetch and store the URL, and a write in that gap must be re-read, not fetched again."""
        if not self._link.up:
            return True  # alone: local coalescing only
        # Listen before asking, so that a done event published right after the claim is not missed.
        event = self._events.setdefault(key, asyncio.get_running_loop().create_future())
        token = uuid.uuid4().hex
        lifetime_ms = max(int(self._lifetime() * 1000), 1)
        args = [token, lifetime_ms, int(read_at * 1000)]
        try:
            held = await self._link.run(lambda: self._claim(keys=[lock_key(key), hash_key(key)], args=args))
        except Unavailable:
            self._events.pop(key, None)
            return True
        if held == b"lead":
            self._events.pop(key, None)
            self._held[key] = (token, self._spawn(self._keep_extended(key, token, lifetime_ms)))
            return True
        if held == b"stored":
            self._events.pop(key, None)
            self._local.finish(key, STORED)
            return False
        self._spawn(self._follow(key, event))
        return False

    def finish(self, key: str, outcome: Outcome) -> None:
        self._local.finish(key, outcome)
        held = self._held.pop(key, None)
        if held is not None:
            token, extender = held
            extender.cancel()
            self._spawn(self._release_lock(key, token, outcome))

    # -- leading ---------------------------------------------------------------------------------

    async def _keep_extended(self, key: str, token: str, lifetime_ms: int) -> None:
        """Extend the lock while the fetch runs; a leader that dies stops extending it."""
        while True:
            await asyncio.sleep(lifetime_ms / 3000)
            try:
                if not await self._link.run(
                    lambda: self._extend(keys=[lock_key(key)], args=[token, lifetime_ms])
                ):
                    return  # lost (expired, or the lock was taken over): nothing left to extend
            except Unavailable:
                return

    async def _release_lock(self, key: str, token: str, outcome: Outcome) -> None:
        args = [token, CHANNEL, self._link.event("done", key, encode_outcome(outcome))]
        with contextlib.suppress(Unavailable):  # the lock then ends with its lifetime
            await self._link.run(lambda: self._release(keys=[lock_key(key)], args=args))

    # -- following -------------------------------------------------------------------------------

    def _on_done(self, origin: str, args: Sequence[Any]) -> None:
        key, encoded = args
        event = self._events.pop(key, None)
        if event is not None and not event.done():
            event.set_result(decode_outcome(encoded))

    async def _follow(self, key: str, event: asyncio.Future[Outcome]) -> None:
        """Wait for another process's fetch of ``key`` and finish the local one with its outcome."""
        deadline = time.monotonic() + 2 * self._upstream_timeout() + 1
        outcome = Outcome(Kind.ABANDONED)
        try:
            while time.monotonic() < deadline:
                try:
                    outcome = await asyncio.wait_for(asyncio.shield(event), WATCH_SECONDS)
                    break
                except TimeoutError:
                    pass
                if not await self._link.run(lambda: self._link.client.exists(lock_key(key))):
                    break  # released (its event lost) or its leader died: look again
        except Unavailable:
            pass
        finally:
            if self._events.get(key) is event:
                del self._events[key]
            self._local.finish(key, outcome)

    def _spawn(self, coro) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class SharedHitForMiss(HitForMiss):
    """Hit-for-miss whose ``remember`` and ``forget`` reach every process."""

    def __init__(self, link: RedisLink) -> None:
        super().__init__()
        self._link = link
        self._tasks: set[asyncio.Task[None]] = set()
        link.on_event(
            "hfm", lambda origin, args: super(SharedHitForMiss, self).remember(args[0], time.time(), args[1])
        )
        link.on_event("hfm-forget", lambda origin, args: super(SharedHitForMiss, self).forget(args[0]))

    def remember(self, key: str, now: float, seconds: float) -> None:
        super().remember(key, now, seconds)
        self._announce("hfm", key, seconds)

    def forget(self, key: str) -> None:
        if self.active(key, time.time()):  # stores forget every key they store: announce real changes only
            self._announce("hfm-forget", key)
        super().forget(key)

    def _announce(self, kind: str, *args: Any) -> None:
        announce(self._link, self._tasks, kind, *args)


class SharedGenerations:
    """The invalidation bus across processes: local generations, bumped by every process's
    invalidations (within the events' delivery time)."""

    def __init__(self, link: RedisLink) -> None:
        self._local = LocalGenerations()
        self._link = link
        self._tasks: set[asyncio.Task[None]] = set()
        link.on_event("invalidate", lambda origin, args: self._local.invalidate(args[0]))
        link.on_event("invalidate-all", lambda origin, args: self._local.invalidate_all())

    def generation(self, key: str) -> Generation:
        return self._local.generation(key)

    def current(self, key: str, generation: Generation) -> bool:
        return self._local.current(key, generation)

    def invalidate(self, key: str) -> None:
        self._local.invalidate(key)
        announce(self._link, self._tasks, "invalidate", key)

    def invalidate_all(self) -> None:
        self._local.invalidate_all()
        announce(self._link, self._tasks, "invalidate-all")


def announce(link: RedisLink, tasks: set[asyncio.Task[None]], kind: str, *args: Any) -> None:
    """Publish an event from synchronous code; an unreachable Redis loses it (each process drops
    its in-process tier when the link comes back)."""
    if not link.up:
        return

    async def publish() -> None:
        with contextlib.suppress(Unavailable):
            await link.publish(kind, *args)

    task = asyncio.get_running_loop().create_task(publish())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
