"""The cache's statistics, modelled on Varnish's counters (``varnishstat``), as JSON and Prometheus.

The engine's parts count what they do in one ``Counters`` (counters.py: ``Count`` names them); this module is
the one place that gives those raw counts meaning. ``snapshot`` reads them, together with the
store's usage, into a ``Stats``; the admin ``stats`` endpoint and the ``cache.stats`` command show
it as JSON, and ``CacheCollector`` exposes the same numbers to ``prometheus_client``. The
collector reads the counts when it is scraped, so nothing is counted twice and no global registry
is involved.

Raw count keys and what they mean (the Varnish counter each one is modelled on in brackets):

=====================================  ==========================================================
``HIT``, ``STALE``                     fresh hits [MAIN.cache_hit], stale hits [cache_hit_grace]
``MISS``, ``MISS:<reason>``            misses, and why they could not be served [cache_miss]
``COALESCED``                          answered from another request's fetch [busy_wakeup]
``REVALIDATED``                        answered after the upstream confirmed the copy (304)
``BYPASS``, ``BYPASS:<reason>``        not looked up (unsafe methods) [s_pass]
``coalesced_wait``/``_timeout``        requests held behind a fetch; holds that timed out
                                       [busy_sleep, busy_killed]
``upstream_fetch``                     client requests that went upstream [backend_req]
``refresh_background``/``_ahead``/     background refreshes started by a stale hit, ahead of
``_expired``/``_control``              expiry, at expiry, by the control plane
``refresh_revalidated``/``_replaced``  refresh fetches: 304 [fetch_304], new response,
``/_failed``/``_unshareable``          upstream failure, response no longer storable
``stored``, ``expired``                responses stored, entries dropped at the end of their
                                       store lifetime [n_expired]
``stored_compressed``                  of those and of refreshes, stored compressed
``decodes``, ``decode_microseconds``   compressed bodies decoded for clients, and the time taken
``not_stored_invalidated``             fetches not stored: their URL was invalidated meanwhile
``purges``; ``purged``, ``cleared``,   purge operations [n_purges]; entries they dropped by
``clear_cache_dropped``,               purge, clear, the Clear-Cache header, and unsafe-method
``invalidated``                        invalidation [n_obj_purged]
=====================================  ==========================================================

Evictions, bytes and entries come from the store itself [n_lru_nuked, SMA.g_bytes, n_object].
"""

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from .store.base import Usage

PREFIX = "mitmcache"
NO_REASON = "none"  # the label of misses and bypasses that carry no detail

_REFRESH_TRIGGERS = {
    "request": "refresh_background",
    "ahead": "refresh_ahead",
    "expiry": "refresh_expired",
    "control": "refresh_control",
}
_REFRESH_RESULTS = {
    "not_modified": "refresh_revalidated",
    "replaced": "refresh_replaced",
    "failed": "refresh_failed",
    "unshareable": "refresh_unshareable",
}
_PURGED = {
    "purge": "purged",
    "clear": "cleared",
    "clear_cache": "clear_cache_dropped",
    "invalidated": "invalidated",
}


def reason_label(detail: str) -> str:
    """A bounded label value for a decision's detail: ``upstream-error: Server disconnected``
    and ``upstream-timeout after 10s`` become ``upstream-error`` and ``upstream-timeout``."""
    word = detail.replace(":", " ").split(maxsplit=1)
    return word[0] if word else NO_REASON


def _by_reason(counts: Mapping[str, int], decision: str) -> dict[str, int]:
    """``MISS:<detail>`` counts grouped by reason; decisions without a detail under ``none``."""
    reasons: dict[str, int] = {}
    for name, value in counts.items():
        if name.startswith(decision + ":"):
            label = reason_label(name[len(decision) + 1 :])
            reasons[label] = reasons.get(label, 0) + value
    plain = counts.get(decision, 0) - sum(reasons.values())
    if plain > 0:
        reasons[NO_REASON] = reasons.get(NO_REASON, 0) + plain
    return dict(sorted(reasons.items()))


@dataclass(frozen=True, slots=True)
class Stats:
    """One reading of every counter and gauge."""

    hits: int
    stale_hits: int
    misses: int
    miss_reasons: dict[str, int]
    coalesced: int
    revalidated: int
    bypasses: int
    bypass_reasons: dict[str, int]
    hit_ratio: float | None  # (hits + stale + coalesced) / every looked-up request; None before any
    coalesced_waits: int
    coalesced_wait_timeouts: int
    upstream_fetches: dict[str, int]  # client, refresh
    revalidations: int  # conditional fetches answered 304
    refreshes_started: dict[str, int]
    refreshes: dict[str, int]
    stored: int
    evictions: int
    expirations: int
    purges: int
    purged: dict[str, int]
    entries: int
    keys: int
    bytes: int
    bytes_as_sent: int  # what the stored entries would take stored as the upstream sent them
    compression_ratio: float | None  # bytes_as_sent / bytes; None when the store does not say
    stored_compressed: int  # responses stored compressed (cache_compress)
    decodes: int  # compressed bodies decoded for clients that do not accept the coding
    decode_seconds: float  # the time those decodes took
    max_bytes: int
    max_entries: int
    inflight: int
    uptime: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(
    counts: Mapping[str, int],
    usage: Usage,
    *,
    max_bytes: int,
    max_entries: int,
    inflight: int,
    started: float,
    now: float | None = None,
) -> Stats:
    refreshes = {result: counts.get(name, 0) for result, name in _REFRESH_RESULTS.items()}
    hits, stale, coalesced = counts.get("HIT", 0), counts.get("STALE", 0), counts.get("COALESCED", 0)
    looked_up = hits + stale + coalesced + counts.get("MISS", 0) + counts.get("REVALIDATED", 0)
    return Stats(
        hits=hits,
        stale_hits=stale,
        misses=counts.get("MISS", 0),
        miss_reasons=_by_reason(counts, "MISS"),
        coalesced=coalesced,
        revalidated=counts.get("REVALIDATED", 0),
        bypasses=counts.get("BYPASS", 0),
        bypass_reasons=_by_reason(counts, "BYPASS"),
        hit_ratio=round((hits + stale + coalesced) / looked_up, 4) if looked_up else None,
        coalesced_waits=counts.get("coalesced_wait", 0),
        coalesced_wait_timeouts=counts.get("coalesced_timeout", 0),
        upstream_fetches={"client": counts.get("upstream_fetch", 0), "refresh": sum(refreshes.values())},
        revalidations=refreshes["not_modified"],
        refreshes_started={trigger: counts.get(name, 0) for trigger, name in _REFRESH_TRIGGERS.items()},
        refreshes=refreshes,
        stored=counts.get("stored", 0),
        evictions=usage.evictions,
        expirations=counts.get("expired", 0),
        purges=counts.get("purges", 0),
        purged={reason: counts.get(name, 0) for reason, name in _PURGED.items()},
        entries=usage.entries,
        keys=usage.keys,
        bytes=usage.bytes,
        bytes_as_sent=usage.sent_bytes,
        compression_ratio=round(usage.sent_bytes / usage.bytes, 3)
        if usage.bytes and usage.sent_bytes
        else None,
        stored_compressed=counts.get("stored_compressed", 0),
        decodes=counts.get("decodes", 0),
        decode_seconds=counts.get("decode_microseconds", 0) / 1e6,
        max_bytes=max_bytes,
        max_entries=max_entries,
        inflight=inflight,
        uptime=round((time.time() if now is None else now) - started, 3),
    )


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _labelled_counter(name: str, doc: str, label: str, values: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
    for value, count in values.items():
        family.add_metric([value], count)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class CacheCollector:
    """A ``prometheus_client`` collector that reads the cache's counters at scrape time."""

    def __init__(self, read: Callable[[], Stats]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        s = self._read()
        yield _counter("cache_hit", "Requests served fresh from the cache (varnish MAIN.cache_hit).", s.hits)
        yield _counter(
            "cache_hit_stale",
            "Requests served a stale copy while it is refreshed or the upstream fails "
            "(varnish MAIN.cache_hit_grace).",
            s.stale_hits,
        )
        yield _labelled_counter(
            "cache_miss",
            "Requests the cache could not answer from a stored copy, by reason (varnish MAIN.cache_miss).",
            "reason",
            s.miss_reasons,
        )
        yield _counter(
            "cache_coalesced",
            "Requests answered from another request's upstream fetch (varnish MAIN.busy_wakeup).",
            s.coalesced,
        )
        yield _counter(
            "cache_revalidated",
            "Requests answered after the upstream confirmed the stored copy with a 304.",
            s.revalidated,
        )
        yield _labelled_counter(
            "cache_bypass",
            "Requests that went upstream without a cache lookup, by reason (varnish MAIN.s_pass).",
            "reason",
            s.bypass_reasons,
        )
        yield _counter(
            "coalesced_waits",
            "Requests held behind another request's fetch for the same key (varnish MAIN.busy_sleep).",
            s.coalesced_waits,
        )
        yield _counter(
            "coalesced_wait_timeouts",
            "Held requests whose wait timed out (varnish MAIN.busy_killed).",
            s.coalesced_wait_timeouts,
        )
        yield _labelled_counter(
            "upstream_fetches",
            "Requests sent upstream: client requests forwarded, and refresh/revalidation fetches "
            "(varnish MAIN.backend_req).",
            "source",
            s.upstream_fetches,
        )
        yield _counter(
            "revalidations",
            "Conditional fetches the upstream answered 304 Not Modified (varnish MAIN.fetch_304).",
            s.revalidations,
        )
        yield _labelled_counter(
            "refreshes_started",
            "Background refreshes started, by trigger: request (stale hit or refresh-ahead on a hit), "
            "ahead (scheduled before expiry), expiry (scheduled at expiry), control (admin API, "
            "commands, Clear-Cache header).",
            "trigger",
            s.refreshes_started,
        )
        yield _labelled_counter(
            "refreshes",
            "Refresh and revalidation fetches by result: not_modified (304), replaced (new response), "
            "failed (the stored copy is kept), unshareable (the entry was dropped).",
            "result",
            s.refreshes,
        )
        yield _counter("stored", "Responses stored in the cache.", s.stored)
        yield _counter(
            "evictions",
            "Entries evicted to stay within the memory bounds (varnish MAIN.n_lru_nuked).",
            s.evictions,
        )
        yield _counter(
            "expirations",
            "Entries dropped when their store lifetime ended: expired, not asked for within the refresh "
            "window, and past their stale allowances (varnish MAIN.n_expired).",
            s.expirations,
        )
        yield _counter(
            "purges", "Purge operations: purge, clear, Clear-Cache (varnish MAIN.n_purges).", s.purges
        )
        yield _labelled_counter(
            "purged_entries",
            "Entries removed by purge, clear, the Clear-Cache header, and by unsafe requests that "
            "invalidate their URL (varnish MAIN.n_obj_purged).",
            "reason",
            s.purged,
        )
        yield _gauge("entries", "Stored entries (variants), (varnish MAIN.n_object).", s.entries)
        yield _gauge("keys", "Distinct URLs stored.", s.keys)
        yield _gauge("bytes", "Bytes the stored entries use (varnish SMA.g_bytes).", s.bytes)
        yield _gauge(
            "bytes_as_sent",
            "Bytes the stored entries would use stored as the upstream sent them (against bytes: "
            "what compression saves).",
            s.bytes_as_sent,
        )
        yield _counter(
            "stored_compressed", "Responses stored compressed (cache_compress).", s.stored_compressed
        )
        yield _counter(
            "decodes", "Compressed bodies decoded for clients that do not accept the coding.", s.decodes
        )
        yield _counter(
            "decode_seconds", "Time spent decoding compressed bodies for clients.", s.decode_seconds
        )
        yield _gauge("max_bytes", "Upper bound of the bytes stored (cache_max_bytes).", s.max_bytes)
        yield _gauge(
            "max_entries", "Upper bound of the entries stored (cache_max_entries; 0: none).", s.max_entries
        )
        yield _gauge("inflight_fetches", "Upstream fetches under way that others may wait for.", s.inflight)
        yield _gauge("uptime_seconds", "Seconds since the cache addon started.", s.uptime)


def registry_for(collector: CacheCollector) -> CollectorRegistry:
    """A registry of our own: the process-global one would carry Python process metrics of
    whatever else imported prometheus_client, and could hold only one cache."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The registry in the format the scraper asked for (Prometheus text, or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
