"""The control plane (issue 3, SPEC §6), end to end through a real mitmdump: the seed's Clear-Cache
header, the admin API, and the Prometheus endpoint.

Most tests share one proxy per configuration (starting one costs ~0.5 s) and use paths of their
own, so they do not see each other's entries; tests about global state (clear) start their own.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import harness
from tests.support.harness import Origin, Proxy

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLEAR = {"Clear-Cache": "1", "Clear-Cache-Key": KEY}
MAX_AGE = [("Cache-Control", "max-age=60")]


def _proxy(origin: Origin, tmp: Path, settings: dict[str, str]) -> Proxy:
    return Proxy(origin, settings, cwd=tmp / "cwd", log_path=tmp / "proxy.log")


@pytest.fixture(scope="module")
def proxy(origin_process: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A proxy with an admin key and the default refresh window (60 s): entries asked for are hot."""
    with _proxy(origin_process, tmp_path_factory.mktemp("keyed"), {"cache_admin_key": KEY}) as started:
        yield started


@pytest.fixture(scope="module")
def keyless(origin_process: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A proxy without an admin key: the control plane refuses."""
    with _proxy(origin_process, tmp_path_factory.mktemp("keyless"), {}) as started:
        yield started


def stats(http: httpx.Client, proxy: Proxy) -> dict:
    response = http.get(f"{proxy.url}/__cache/stats", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- the Clear-Cache header ---------------------------------------------------------------------


def test_clear_cache_refreshes_a_hot_entry_in_the_background(origin, proxy, http):
    origin.route("/news", headers=MAX_AGE, sequence=[{"body": "v1"}, {"body": "v2", "delay": 0.3}])
    http.get(f"{proxy.url}/news")
    answer = http.get(f"{proxy.url}/news", headers=CLEAR)
    assert answer.status_code == 200
    assert answer.json()["result"] == "refreshing"
    assert answer.json()["key"].endswith("/news")
    # While the refresh runs the stored copy is served; then the new one.
    during = http.get(f"{proxy.url}/news")
    assert (during.headers["x-cache"], during.text) == ("HIT", "v1")
    wait_for(lambda: http.get(f"{proxy.url}/news").text == "v2")
    assert origin.count("/news") == 2


def test_clear_cache_request_is_never_forwarded(origin, proxy, http):
    origin.route("/private-endpoint", headers=MAX_AGE, body="data")
    http.get(f"{proxy.url}/private-endpoint")
    http.get(f"{proxy.url}/private-endpoint", headers=CLEAR)
    origin.wait_for_count(2, "/private-endpoint")  # the background refresh
    seen = [{k.lower(): v for k, v in r["headers"]} for r in origin.requests("/private-endpoint")]
    assert not any("clear-cache" in h or "clear-cache-key" in h for h in seen)


def test_clear_cache_drops_a_cold_entry(origin, proxy_factory, http):
    origin.route("/cold", headers=MAX_AGE, body="data")
    cold = proxy_factory({"cache_admin_key": KEY, "cache_refresh_window": "0"})  # nothing is ever hot
    http.get(f"{cold.url}/cold")
    answer = http.get(f"{cold.url}/cold", headers=CLEAR)
    assert (answer.json()["result"], answer.json()["cleared"]) == ("cleared", 1)
    time.sleep(0.2)
    assert origin.count("/cold") == 1  # dropped, not refreshed
    assert http.get(f"{cold.url}/cold").headers["x-cache"] == "MISS"


def test_clear_cache_refreshes_every_vary_variant(origin, proxy, http):
    origin.route("/v", headers=[*MAX_AGE, ("Vary", "Accept-Language")], body="hello")
    for language in ("en", "de"):
        http.get(f"{proxy.url}/v", headers={"Accept-Language": language})
    answer = http.get(f"{proxy.url}/v", headers=CLEAR).json()
    assert answer["refreshing"] == 2
    assert sorted(v["vary"]["accept-language"] for v in answer["variants"]) == ["de", "en"]
    origin.wait_for_count(4, "/v")
    languages = [dict(r["headers"]).get("accept-language") for r in origin.requests("/v")[2:]]
    assert sorted(languages) == ["de", "en"]


def test_clear_cache_for_an_uncached_url_says_not_cached(origin, proxy, http):
    answer = http.post(f"{proxy.url}/never-fetched", headers=CLEAR)
    assert (answer.status_code, answer.json()["result"]) == (200, "not_cached")
    assert origin.count("/never-fetched") == 0


@pytest.mark.parametrize(
    "headers",
    [{"Clear-Cache": "1", "Clear-Cache-Key": "wrong"}, {"Clear-Cache": "1"}],
    ids=["wrong-key", "missing-key"],
)
def test_clear_cache_without_the_right_key_is_refused_and_changes_nothing(origin, proxy, http, headers):
    path = f"/guarded-{len(headers)}"
    origin.route(path, headers=MAX_AGE, body="data")
    http.get(f"{proxy.url}{path}")
    answer = http.get(f"{proxy.url}{path}", headers=headers)
    assert answer.status_code == 401
    assert http.get(f"{proxy.url}{path}").headers["x-cache"] == "HIT"
    assert origin.count(path) == 1


def test_clear_cache_is_refused_when_no_key_is_configured(origin, keyless, http):
    answer = http.get(f"{keyless.url}/x", headers=CLEAR)
    assert answer.status_code == 403
    assert "CLEAR_CACHE_KEY" in answer.json()["detail"]
    assert "cache_admin_key" in answer.json()["detail"]
    assert origin.count("/x") == 0


def test_a_post_clear_cache_keeps_the_hot_entry_while_it_refreshes(origin, proxy, http):
    origin.route("/posted", headers=MAX_AGE, sequence=[{"body": "v1"}, {"body": "v2", "delay": 0.5}])
    http.get(f"{proxy.url}/posted")
    answer = http.post(f"{proxy.url}/posted", headers=CLEAR)
    assert "x-cache" not in answer.headers
    assert http.get(f"{proxy.url}/posted").headers["x-cache"] == "HIT"


# -- the admin API: authentication --------------------------------------------------------------

ENDPOINTS = [
    ("GET", "stats"),
    ("GET", "entries"),
    ("GET", "metrics"),
    ("POST", "purge?prefix=/"),
    ("POST", "refresh?prefix=/"),
    ("POST", "clear"),
]


def test_health_needs_no_key(proxy, http):
    answer = http.get(f"{proxy.url}/__cache/health")
    assert (answer.status_code, answer.json()["service"]) == (200, "mitmcache")


@pytest.mark.parametrize(("method", "endpoint"), ENDPOINTS)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}], ids=["no-key", "wrong-key"])
def test_admin_endpoints_refuse_requests_without_the_key(origin, proxy, http, method, endpoint, headers):
    answer = http.request(method, f"{proxy.url}/__cache/{endpoint}", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert origin.count() == 0


@pytest.mark.parametrize(("method", "endpoint"), ENDPOINTS)
def test_admin_endpoints_refuse_when_no_key_is_configured(origin, keyless, http, method, endpoint):
    answer = http.request(method, f"{keyless.url}/__cache/{endpoint}", headers=AUTH)
    assert answer.status_code == 403
    assert "CLEAR_CACHE_KEY" in answer.json()["detail"]
    assert origin.count() == 0


@pytest.mark.parametrize("headers", [AUTH, {"Clear-Cache-Key": KEY}], ids=["bearer", "clear-cache-key"])
def test_admin_endpoints_accept_the_key_in_either_header(proxy, http, headers):
    assert http.get(f"{proxy.url}/__cache/stats", headers=headers).status_code == 200


def test_a_wrong_method_gets_405_with_allow(proxy, http):
    answer = http.get(f"{proxy.url}/__cache/purge", headers=AUTH)
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
    assert http.post(f"{proxy.url}/__cache/stats", headers=AUTH).status_code == 405


def test_an_unknown_endpoint_gets_404_and_is_not_forwarded(origin, proxy, http):
    assert http.get(f"{proxy.url}/__cache/nope", headers=AUTH).status_code == 404
    assert origin.count() == 0


# -- the admin API: what each endpoint does -----------------------------------------------------


def test_stats_count_hits_misses_and_upstream_fetches(origin, proxy, http):
    origin.route("/counted", headers=MAX_AGE, body="data")
    before = stats(http, proxy)
    for _ in range(3):
        http.get(f"{proxy.url}/counted")
    after = stats(http, proxy)
    assert after["misses"] - before["misses"] == 1
    assert after["hits"] - before["hits"] == 2
    assert after["upstream_fetches"]["client"] - before["upstream_fetches"]["client"] == 1
    assert after["stored"] - before["stored"] == 1


def test_entries_list_key_status_size_age_ttl_and_hits(origin, proxy, http):
    origin.route("/listed", headers=MAX_AGE, body="twelve bytes")
    for _ in range(3):
        http.get(f"{proxy.url}/listed")
    page = http.get(f"{proxy.url}/__cache/entries", params={"prefix": "/listed"}, headers=AUTH).json()
    assert page["total"] == 1
    (row,) = page["entries"]
    assert row["key"].endswith("/listed")
    assert (row["status"], row["state"], row["hits"]) == (200, "fresh", 2)
    assert row["size"] > len("twelve bytes")
    assert row["age"] <= 1 and 58 <= row["ttl"] <= 60


def test_entries_are_paginated_with_a_cursor(origin, proxy, http):
    origin.route("/paged", headers=MAX_AGE, body="p")
    for i in range(5):
        http.get(f"{proxy.url}/paged?n={i}")
    url, keys, cursor = f"{proxy.url}/__cache/entries", [], ""
    while True:
        page = http.get(url, params={"prefix": "/paged", "limit": 2, "cursor": cursor}, headers=AUTH).json()
        keys += [row["key"] for row in page["entries"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(keys) == 5 and keys == sorted(set(keys))


def test_entries_are_paginated_with_limit_and_offset(origin, proxy, http):
    origin.route("/offset", headers=MAX_AGE, body="o")
    for i in range(3):
        http.get(f"{proxy.url}/offset?n={i}")
    params = {"prefix": "/offset", "limit": 2, "offset": 2}
    page = http.get(f"{proxy.url}/__cache/entries", params=params, headers=AUTH).json()
    assert (page["total"], page["count"], page["next_cursor"]) == (3, 1, None)
    assert page["entries"][0]["key"].endswith("/offset?n=2")


def test_purge_by_url_drops_every_variant_and_says_how_many(origin, proxy, http):
    origin.route("/pv", headers=[*MAX_AGE, ("Vary", "Accept-Language")], body="x")
    for language in ("en", "de", "fr"):
        http.get(f"{proxy.url}/pv", headers={"Accept-Language": language})
    answer = http.post(f"{proxy.url}/__cache/purge", json={"url": "/pv"}, headers=AUTH)
    assert answer.json() == {"url": "/pv", "purged": 3, "keys": 1}
    assert http.get(f"{proxy.url}/pv", headers={"Accept-Language": "en"}).headers["x-cache"] == "MISS"


def test_purge_by_url_sorts_the_query_like_cache_keys(origin, proxy, http):
    origin.route("/pq", headers=MAX_AGE, body="x")
    http.get(f"{proxy.url}/pq?b=2&a=1")
    answer = http.post(f"{proxy.url}/__cache/purge", params={"url": "/pq?a=1&b=2"}, headers=AUTH)
    assert answer.json()["purged"] == 1


def test_purge_by_prefix_drops_every_url_under_it(origin, proxy, http):
    origin.route("/api/items", headers=MAX_AGE, body="x")
    origin.route("/api/users", headers=MAX_AGE, body="x")
    origin.route("/apiary", headers=MAX_AGE, body="x")
    for path in ("/api/items", "/api/items?page=2", "/api/users", "/apiary"):
        http.get(f"{proxy.url}{path}")
    answer = http.post(f"{proxy.url}/__cache/purge", params={"prefix": "/api/"}, headers=AUTH)
    assert answer.json() == {"prefix": "/api/", "purged": 3, "keys": 3}
    assert http.get(f"{proxy.url}/apiary").headers["x-cache"] == "HIT"


def test_purge_by_full_url_as_listed_by_entries(origin, proxy, http):
    origin.route("/full", headers=MAX_AGE, body="x")
    http.get(f"{proxy.url}/full")
    page = http.get(f"{proxy.url}/__cache/entries", params={"prefix": "/full"}, headers=AUTH).json()
    key = page["entries"][0]["key"]
    answer = http.post(f"{proxy.url}/__cache/purge", json={"url": key}, headers=AUTH)
    assert answer.json()["purged"] == 1


def test_purge_needs_a_url_or_a_prefix(proxy, http):
    answer = http.post(f"{proxy.url}/__cache/purge", headers=AUTH)
    assert answer.status_code == 400
    assert "url" in answer.json()["detail"]


def test_refresh_refetches_in_the_background_and_keeps_serving(origin, proxy, http):
    origin.route("/r", headers=MAX_AGE, sequence=[{"body": "v1"}, {"body": "v2"}])
    http.get(f"{proxy.url}/r")
    answer = http.post(f"{proxy.url}/__cache/refresh", json={"url": "/r"}, headers=AUTH)
    assert answer.json() == {"url": "/r", "result": "refreshing", "refreshing": 1, "keys": 1}
    wait_for(lambda: http.get(f"{proxy.url}/r").text == "v2")
    assert origin.count("/r") == 2


def test_clear_drops_everything_and_says_how_many(origin, proxy_factory, http):
    origin.route("/c", headers=MAX_AGE, body="x")
    own = proxy_factory({"cache_admin_key": KEY})
    for i in range(4):
        http.get(f"{own.url}/c?n={i}")
    answer = http.post(f"{own.url}/__cache/clear", headers=AUTH)
    assert answer.json()["cleared"] == 4
    assert stats(http, own)["entries"] == 0


def test_the_python_seeds_admin_paths_work_under_the_admin_prefix(origin, proxy_factory, http, monkeypatch):
    monkeypatch.setattr(harness, "HEALTH_PATH", "/__admin/health")  # the harness's readiness probe
    origin.route("/products/1", headers=MAX_AGE, body="x")
    seed = proxy_factory({"cache_admin_key": KEY, "cache_admin_prefix": "/__admin"})
    http.get(f"{seed.url}/products/1")
    assert http.get(f"{seed.url}/__admin/stats", headers=AUTH).json()["entries"] == 1
    assert http.post(f"{seed.url}/__admin/clear-cache", headers=AUTH).json()["cleared"] == 1
    assert origin.count() == 1


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_are_prometheus_text_with_varnish_style_counters(origin, proxy, http):
    origin.route("/m", headers=MAX_AGE, body="x")
    for _ in range(2):
        http.get(f"{proxy.url}/m")
    answer = http.get(f"{proxy.url}/__cache/metrics", headers=AUTH)
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert families["mitmcache_cache_hit"].type == "counter"
    assert samples[("mitmcache_cache_hit_total", ())] >= 1
    assert samples[("mitmcache_cache_miss_total", (("reason", "none"),))] >= 1
    assert samples[("mitmcache_upstream_fetches_total", (("source", "client"),))] >= 1
    assert samples[("mitmcache_entries", ())] >= 1
    assert {"mitmcache_coalesced_waits", "mitmcache_evictions", "mitmcache_purged_entries"} <= set(families)
