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
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from .tiered import Unavailable

log = logging.getLogger("mitmcache")

TIMEOUT_SECONDS = 0.5  # one command, connecting included: a slow Redis is a down Redis
PROBE_SECONDS = 1.0  # how often a down link is tried again
RESUBSCRIBE_SECONDS = 0.5
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
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            client_name="mitmcache",
        )
        self._up = True
        self._since = time.time()
        self._handlers: dict[str, Handler] = {}
        self._on_restored: list[Callable[[], None]] = []
        self._on_lost: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
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
        """Run one Redis command (or script, or pipeline) under the breaker."""
        if not self._up:
            raise Unavailable(self.shown)
        try:
            return await command()
        except ResponseError:
            raise  # Redis answered: a bug or a foreign value, not an outage
        except (RedisError, OSError, TimeoutError) as e:
            self._went_down(e)
            raise Unavailable(self.shown) from None

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
        for callback in self._on_restored:
            callback()
        if not self._up:
            self._up, self._since = True, time.time()
            log.warning("shared store %s is back: sharing resumes", self.shown)

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            if self._up:
                continue
            try:
                await self.client.ping()
            except (RedisError, OSError, TimeoutError):
                continue
            self._came_back()

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
        """Stay subscribed; every (re)subscription first drops what lost notifications may have
        left stale."""
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                await pubsub.get_message(timeout=TIMEOUT_SECONDS)  # the subscribe confirmation
                self._came_back()  # a new subscription: whatever was sent before it is lost
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as e:
                self._went_down(e)
            except Exception:  # a handler's bug must not end the subscription
                log.exception("shared store events: handler failed")
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError, TimeoutError):
                    pass
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._probe())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        try:
            await self.client.aclose()
        except (RedisError, OSError, TimeoutError):
            pass
