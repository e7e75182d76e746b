"""Rates: the token bucket that paces deliveries (``ASYNC_RATE``) and the one-second window that
decides whether a write is queued at all (``ASYNC_ENQUEUE_RATE``)."""

import asyncio
import time
from collections import deque


class TokenBucket:
    """At most ``rate`` starts per second, with a burst of one second's worth. Rate 0: no limit."""

    def __init__(self, rate: float, clock=time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def available(self) -> int:
        if not self.rate:
            return 1 << 30
        self._refill()
        return int(self._tokens)

    def take(self, n: int) -> None:
        if self.rate:
            self._refill()
            self._tokens -= n

    def give_back(self, n: int) -> None:
        if self.rate:
            self._tokens = min(self.rate, self._tokens + n)

    async def wait(self) -> None:
        """Until at least one token is there."""
        while self.available() < 1:
            await asyncio.sleep((1 - self._tokens) / self.rate)


class RecentRate:
    """How many events happened in the last second (bounded: it never holds more than ``limit``)."""

    def __init__(self, limit: float, clock=time.monotonic) -> None:
        self._limit = max(int(limit), 1)
        self._clock = clock
        self._stamps: deque[float] = deque(maxlen=self._limit)

    def below(self) -> bool:
        """Record an event; whether fewer than ``limit`` came in the second before it."""
        now = self._clock()
        while self._stamps and self._stamps[0] <= now - 1.0:
            self._stamps.popleft()
        below = len(self._stamps) < self._limit
        self._stamps.append(now)
        return below
