"""The cache's counters, by name: an enum instead of string keys kept by hand in several modules.

``Counters`` is a ``Counter`` keyed by ``Count`` members (string enums, so the ``counts`` object of
``/__cache/stats`` reads as before) plus the per-decision keys ``annotate`` writes (``MISS``,
``MISS:<reason>``, ...). ``metrics`` is the one place that gives them meaning.
"""

from collections import Counter
from enum import StrEnum


class Count(StrEnum):
    UPSTREAM_FETCH = "upstream_fetch"  # client requests that went upstream
    COALESCED_WAIT = "coalesced_wait"
    COALESCED_TIMEOUT = "coalesced_timeout"
    STORED = "stored"
    HEAD_FRESHENED = "head_freshened"
    EXPIRED = "expired"  # entries dropped at the end of their store lifetime
    INVALIDATED = "invalidated"
    NOT_STORED_INVALIDATED = "not_stored_invalidated"  # a fetch that began before an invalidation
    PURGES = "purges"
    PURGED = "purged"
    CLEARED = "cleared"
    CLEAR_CACHE_DROPPED = "clear_cache_dropped"
    REFRESH_BACKGROUND = "refresh_background"
    REFRESH_AHEAD = "refresh_ahead"
    REFRESH_EXPIRED = "refresh_expired"
    REFRESH_CONTROL = "refresh_control"
    REFRESH_REVALIDATED = "refresh_revalidated"
    REFRESH_REPLACED = "refresh_replaced"
    REFRESH_FAILED = "refresh_failed"
    REFRESH_UNSHAREABLE = "refresh_unshareable"
    STORED_COMPRESSED = "stored_compressed"  # of ``stored`` and refreshes: bodies the cache compressed
    DECODES = "decodes"  # coded bodies decoded for clients that do not accept the coding
    DECODE_MICROSECONDS = "decode_microseconds"  # the time those decodes took


class Counters(Counter[str]):
    def add(self, count: Count, n: int = 1) -> None:
        self[count] += n

    def decision(self, x_cache: str, detail: str | None) -> None:
        """One answered request: its ``X-Cache`` value, and why, for misses and bypasses."""
        self[x_cache] += 1
        if detail and x_cache in ("MISS", "BYPASS"):
            self[f"{x_cache}:{detail}"] += 1
