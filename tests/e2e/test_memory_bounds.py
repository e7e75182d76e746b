"""What the memory budget counts (issue 13 item 10): every byte an entry holds, its key, URL and
Vary values included, and hit-for-miss keys within a share of it; through both launchers."""

import asyncio

import httpx
import pytest

from mitmcache.store.memory import MAX_VARIANTS_PER_KEY

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LONG = "q" * 16_000


def test_long_urls_count_against_the_memory_budget(origin, proxy_factory, http):
    origin.route("/p", headers=[("Cache-Control", "max-age=60")], body="x")
    proxy = proxy_factory({"cache_max_bytes": "4MB", "cache_admin_key": KEY})
    for i in range(300):
        assert http.get(f"{proxy.url}/p?{i}-{LONG}").status_code == 200
    stats = http.get(f"{proxy.url}/__cache/stats", headers=AUTH).json()
    assert stats["bytes"] <= 4 * 1024 * 1024
    # each entry holds its key and its URL: 32 KB of strings, whatever its one-byte body
    assert stats["entries"] * 2 * len(LONG) <= 4 * 1024 * 1024
    assert stats["evictions"] > 0


def test_long_vary_values_count_against_the_memory_budget(origin, proxy_factory, http):
    origin.route("/v", headers=[("Cache-Control", "max-age=60"), ("Vary", "X-Long")], body="x")
    proxy = proxy_factory({"cache_max_bytes": "2MB", "cache_admin_key": KEY})
    for i in range(200):
        http.get(f"{proxy.url}/v?{i}", headers={"X-Long": f"{i}{LONG}"})
    stats = http.get(f"{proxy.url}/__cache/stats", headers=AUTH).json()
    assert stats["entries"] * len(LONG) <= 2 * 1024 * 1024


async def test_hit_for_miss_keys_are_bounded_by_bytes_the_oldest_forgotten_first(origin, proxy_factory, http):
    """Hit-for-miss keys take at most 1/16 of CACHE_MAX_BYTES (here 256 KB: about 15 keys of 16 KB).
    A remembered key's requests go upstream together; a forgotten one's wait behind a leader again."""
    origin.route("/private", headers=[("Cache-Control", "private")], body="mine", delay=0.5)
    proxy = proxy_factory({"cache_max_bytes": "4MB"})
    queries = [f"{i}-{LONG}" for i in range(40)]
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        await asyncio.gather(*(client.get(f"{proxy.url}/private?{q}") for q in queries))
        await asyncio.gather(*(client.get(f"{proxy.url}/private?{queries[-1]}") for _ in range(3)))
        await asyncio.gather(*(client.get(f"{proxy.url}/private?{queries[0]}") for _ in range(3)))
    assert origin.count("/private") == 46
    newest = [r["time"] for r in origin.requests("/private") if r["path"] == f"/private?{queries[-1]}"][1:]
    oldest = [r["time"] for r in origin.requests("/private") if r["path"] == f"/private?{queries[0]}"][1:]
    assert max(newest) - min(newest) < 0.3  # still remembered: not serialised
    assert max(oldest) - min(oldest) >= 0.4  # forgotten: the others waited for the first's head


def test_junk_vary_values_evict_the_least_recently_used_variant_not_the_popular_one(
    origin, proxy_factory, http
):
    """32 junk values of a varied-on field (the cap of variants per URL) evicted the popular
    variant, the oldest stored, though it was asked for between every two of them (item 20)."""
    origin.route("/page", headers=[("Cache-Control", "max-age=60"), ("Vary", "X-Junk")], body="x")
    proxy = proxy_factory()
    popular = {"X-Junk": "popular"}
    http.get(f"{proxy.url}/page", headers=popular)
    for i in range(MAX_VARIANTS_PER_KEY):
        assert http.get(f"{proxy.url}/page", headers=popular).headers["x-cache"] == "HIT"
        http.get(f"{proxy.url}/page", headers={"X-Junk": f"junk{i}"})
    assert http.get(f"{proxy.url}/page", headers=popular).headers["x-cache"] == "HIT"
    assert http.get(f"{proxy.url}/page", headers={"X-Junk": "junk0"}).headers["x-cache"] == "MISS"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_response_larger_than_the_whole_cache_is_not_reported_stored(origin, proxy_factory, http, chunked):
    """Item 18: the store dropped it, but Cache-Status and the stats said ``stored``."""
    origin.route("/huge", headers=[("Cache-Control", "max-age=60")], size=300_000, chunked=chunked)
    proxy = proxy_factory(
        {"cache_max_bytes": "100k", "cache_max_object_bytes": "1MB", "cache_admin_key": KEY}
    )
    first = http.get(f"{proxy.url}/huge")
    second = http.get(f"{proxy.url}/huge")
    assert len(first.content) == 300_000
    assert "stored" not in first.headers["cache-status"]
    assert second.headers["x-cache"] == "MISS"
    stats = http.get(f"{proxy.url}/__cache/stats", headers=AUTH).json()
    assert (stats["stored"], stats["entries"]) == (0, 0)
