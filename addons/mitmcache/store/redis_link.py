"""One process's link to Redis: the client, its health (a circuit breaker), and the events channel
the processes sharing a cache tell each other what changed on.

Redis down or slow must never fail a request, so every command has a short timeout, none is
retried, and the first failure opens the breaker: from then on callers get ``Unavailable`` at once
(they fall back to the in-process tier and local coalescing) while a probe pings Redis once a
second. The log says so once when the link goes down and once when it is back. When it is back
-- or the events subscription was lost, whatever the reason -- the notifications sent meanwhile are
lost, so ``on_restored`` callbacks run (each process drops its in-process tier) before the link is
used again.

Events are msgpack arrays ``[origin, kind, *args]``; a process ignores its own (``origin``).
"""

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from .tiered import Unavailable

log = logging.getLogger("mitmcache")

TIMEOUT_SECONDS = 0.5  # one command, connecting included: a slow Redis is a down Redis
PROBE_SECONDS = 1.0  # how often a down link is tried again
MAX_CONNECTIONS = 64  # per process; Redis answers each command in microseconds
POOL_WAIT_SECONDS = 2.0  # the longest a command waits for a free connection
MAX_WAIT_SECONDS = 5.0  # the longest a command waits for Redis while this process's loop lags
LAG_TICK_SECONDS = 0.05
RESUBSCRIBE_SECONDS = 0.5
LISTEN_SECONDS = 0.25  # how often the subscription looks up from waiting for events
KEY_PREFIX = "mitmcache:"
CHANNEL = KEY_PREFIX + "events"

type Handler = Callable[[str, Sequence[Any]], None]


@dataclass(frozen=True, slots=True)
class Health:
    backend: str
    state: str  # "up" or "down"
    since: float  # when it entered this state (Unix time)
    url: str  # the store's URL, password redacted


class RedisLink:
    def __init__(self, url: str, shown: str) -> None:
        self.shown = shown  # the URL with its password redacted: the only form ever logged
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # A bounded pool that callers wait for (briefly): a burst of lookups queues for a connection
        # instead of failing, which would look like Redis being down.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            # _timed() times commands out, connecting included: a client-side timeout would fire
            # while this process's own loop is merely busy (at startup, under a herd)
            socket_timeout=None,
            socket_connect_timeout=MAX_WAIT_SECONDS,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            client_name="mitmcache",
        )
        self.client = redis.Redis(connection_pool=pool)
        self._up = True
        self._since = time.time()
        self._handlers: dict[str, Handler] = {}
        self._on_restored: list[Callable[[], None]] = []
        self._on_lost: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._lagged_until = 0.0
        self._resubscribe = asyncio.Event()
        self.unreadable = 0  # values found that this cache cannot read (corrupt, foreign, other version)

    # -- health ----------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    def health(self) -> Health:
        return Health("redis", "up" if self._up else "down", self._since, self.shown)

    def on_restored(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` whenever notifications may have been lost (the link came back)."""
        self._on_restored.append(callback)

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the link goes down."""
        self._on_lost.append(callback)

    async def run[T](self, command: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis command (or script, or pipeline) under the breaker.

        Its timeout is measured here rather than by the client's sockets: a timeout measured on a
        busy event loop (a herd of a thousand requests) fires although Redis answered in time, so
        it is extended while this process's own loop is lagging, up to ``MAX_WAIT_SECONDS``."""
        if not self._up:
            raise Unavailable(self.shown)
        try:
            return await self._timed(command())
        except ResponseError:
            raise  # Redis answered: a bug or a foreign value, not an outage
        except (RedisError, OSError, TimeoutError) as e:
            self._went_down(e)
            raise Unavailable(self.shown) from None

    async def _timed[T](self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result, or TimeoutError after ``TIMEOUT_SECONDS`` of no answer that this
        process's own lateness does not explain."""
        task = asyncio.ensure_future(awaitable)
        try:
            waited = 0.0
            while True:
                done, _ = await asyncio.wait((task,), timeout=TIMEOUT_SECONDS)
                if done:
                    return task.result()
                waited += TIMEOUT_SECONDS
                if not self._lagging() or waited >= MAX_WAIT_SECONDS:
                    raise TimeoutError(f"no answer within {waited:g}s")
        finally:
            if not task.done():
                task.cancel()  # the client drops that connection

    def _lagging(self) -> bool:
        return time.monotonic() < self._lagged_until

    async def _watch_lag(self) -> None:
        """Note when this process's event loop runs late (it is busy), so that its lateness is not
        taken for a slow Redis."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_TICK_SECONDS)
            late = time.monotonic() - started - LAG_TICK_SECONDS
            if late > LAG_TICK_SECONDS:
                self._lagged_until = time.monotonic() + TIMEOUT_SECONDS + late

    def _went_down(self, error: BaseException) -> None:
        if self._up:
            self._up, self._since = False, time.time()
            log.warning(
                "shared store %s is down (%s): serving from this process's tier and the upstream "
                "until it is back",
                self.shown,
                type(error).__name__,
            )
            for callback in self._on_lost:
                callback()

    def _came_back(self) -> None:
        """A new subscription: drop what lost notifications may have left stale, then go up."""
        for callback in self._on_restored:
            callback()
        if not self._up:
            self._up, self._since = True, time.time()
            log.warning("shared store %s is back: sharing resumes", self.shown)

    async def _probe(self) -> None:
        """While down, ping once a second; an answer makes the subscription start anew, which
        brings the link back up (notifications may have been lost meanwhile)."""
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            if self._up:
                continue
            try:
                await self._timed(self.client.ping())
            except (RedisError, OSError, TimeoutError):
                continue
            self._resubscribe.set()

    # -- events ----------------------------------------------------------------------------------

    def on_event(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def event(self, kind: str, *args: Any) -> bytes:
        """An event as published (scripts publish it together with the change it announces)."""
        return msgpack.packb([self.origin, kind, *args])

    async def publish(self, kind: str, *args: Any) -> None:
        await self.run(lambda: self.client.publish(CHANNEL, self.event(kind, *args)))

    def _dispatch(self, data: bytes) -> None:
        try:
            origin, kind, *args = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException):
            return  # not one of ours
        handler = self._handlers.get(kind)
        if handler is not None and origin != self.origin:
            handler(origin, args)

    async def _listen(self) -> None:
        """Stay subscribed. A new subscription is what brings the link (back) up: whatever was
        published before it is lost, so the tiers that notifications keep are dropped first."""
        while True:
            pubsub = self.client.pubsub()
            try:
                await self._timed(self._subscribe(pubsub))
                self._resubscribe.clear()
                self._came_back()
                while not self._resubscribe.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_SECONDS)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message["data"])
                continue  # the probe found Redis answering again: subscribe anew at once
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as e:
                self._went_down(e)
            except Exception:  # a handler's bug must not end the subscription
                log.exception("shared store events: handler failed")
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    @staticmethod
    async def _subscribe(pubsub: PubSub) -> None:
        await pubsub.subscribe(CHANNEL)
        while await pubsub.get_message(timeout=TIMEOUT_SECONDS) is None:  # the confirmation
            pass

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(t) for t in (self._listen(), self._probe(), self._watch_lag())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        try:
            await self.client.aclose()
            await self.client.connection_pool.disconnect()
        except (RedisError, OSError, TimeoutError):
            pass
