"""Statistics (metrics.py): raw counts read into varnishstat-style numbers, and the Prometheus
collector over them."""

from collections import Counter

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from mitmcache.metrics import CacheCollector, exposition, reason_label, registry_for, snapshot
from mitmcache.store.base import Usage

USAGE = Usage(entries=3, keys=2, bytes=1000, evictions=4)


def read(counts: Counter[str]):
    return snapshot(counts, USAGE, max_bytes=2000, max_entries=10, inflight=1, started=0.0, now=5.0)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_misses_are_grouped_by_reason_and_plain_misses_fall_under_none():
    stats = read(Counter({"MISS": 5, "MISS:private": 2, "MISS:hit-for-miss": 1}))
    assert stats.misses == 5
    assert stats.miss_reasons == {"hit-for-miss": 1, "none": 2, "private": 2}


@pytest.mark.parametrize(
    ("detail", "label"),
    [
        ("upstream-error: Server disconnected", "upstream-error"),
        ("upstream-timeout after 10s", "upstream-timeout"),
        ("private", "private"),
        ("", "none"),
    ],
)
def test_free_text_details_become_bounded_labels(detail, label):
    assert reason_label(detail) == label


def test_the_hit_ratio_counts_what_was_answered_without_an_own_fetch():
    assert read(Counter()).hit_ratio is None
    stats = read(Counter({"HIT": 5, "STALE": 1, "COALESCED": 2, "MISS": 1, "REVALIDATED": 1, "BYPASS": 7}))
    assert stats.hit_ratio == 0.8


def test_refresh_results_add_up_to_the_refresh_fetches():
    counts = Counter(
        {"refresh_revalidated": 2, "refresh_replaced": 1, "refresh_failed": 3, "upstream_fetch": 4}
    )
    stats = read(counts)
    assert stats.upstream_fetches == {"client": 4, "refresh": 6}
    assert stats.revalidations == 2


def test_store_usage_gives_entries_bytes_and_evictions():
    stats = read(Counter())
    assert (stats.entries, stats.keys, stats.bytes, stats.evictions) == (3, 2, 1000, 4)
    assert (stats.max_bytes, stats.max_entries, stats.inflight, stats.uptime) == (2000, 10, 1, 5.0)


def test_the_exposition_parses_as_prometheus_text():
    counts = Counter({"HIT": 2, "STALE": 1, "MISS": 1, "BYPASS": 1, "BYPASS:invalidated": 1, "purged": 3})
    registry = registry_for(CacheCollector(lambda: read(counts)))
    body, content_type = exposition(registry)
    assert content_type.startswith("text/plain; version=0.0.4")
    found = samples(body.decode())
    assert found[("mitmcache_cache_hit_total", ())] == 2
    assert found[("mitmcache_cache_hit_stale_total", ())] == 1
    assert found[("mitmcache_cache_bypass_total", (("reason", "invalidated"),))] == 1
    assert found[("mitmcache_purged_entries_total", (("reason", "purge"),))] == 3
    assert found[("mitmcache_bytes", ())] == 1000


def test_counters_are_read_at_scrape_time():
    counts: Counter[str] = Counter()
    registry = registry_for(CacheCollector(lambda: read(counts)))
    counts["HIT"] += 7
    assert samples(exposition(registry)[0].decode())[("mitmcache_cache_hit_total", ())] == 7


def test_openmetrics_is_served_when_the_scraper_asks_for_it():
    registry = registry_for(CacheCollector(lambda: read(Counter({"HIT": 1}))))
    body, content_type = exposition(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert "mitmcache_cache_hit" in {f.name for f in parse_openmetrics(body.decode())}


def test_compression_is_reported_as_bytes_held_against_bytes_as_sent_and_decodes():
    usage = Usage(entries=3, keys=2, bytes=1000, evictions=0, sent_bytes=4000)
    counts = Counter({"stored_compressed": 2, "decodes": 5, "decode_microseconds": 1500})
    stats = snapshot(counts, usage, max_bytes=2000, max_entries=10, inflight=0, started=0.0, now=1.0)
    assert (stats.bytes_as_sent, stats.compression_ratio) == (4000, 4.0)
    assert (stats.stored_compressed, stats.decodes, stats.decode_seconds) == (2, 5, 0.0015)
    found = samples(exposition(registry_for(CacheCollector(lambda: stats)))[0].decode())
    assert found[("mitmcache_bytes_as_sent", ())] == 4000
    assert found[("mitmcache_decodes_total", ())] == 5
    assert found[("mitmcache_decode_seconds_total", ())] == 0.0015
    assert found[("mitmcache_stored_compressed_total", ())] == 2


def test_a_store_that_does_not_track_bytes_as_sent_gives_no_ratio():
    assert read(Counter()).compression_ratio is None
