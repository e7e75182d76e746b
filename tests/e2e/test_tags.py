"""Tags (surrogate keys), end to end: tags parsed from each convention's field and kept from clients,
purge, soft purge and refresh by tag, Clear-Cache-Tag from a client with the key and on an upstream
response, the stats; and across two proxies sharing a redis-server of the tests' own."""

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.redis_server import RedisServer

KEY = "tag-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROPAGATION = 0.1  # a purge on one proxy reaches every other within this
FRESH = {"Cache-Control": "max-age=60"}


def x_cache(http: httpx.Client, url: str) -> str:
    return http.get(url).headers["x-cache"]


def tagged(origin, path: str, *tag_fields: tuple[str, str], body: str | None = None, **route) -> None:
    origin.route(path, headers=[("Cache-Control", "max-age=60"), *tag_fields], body=body or path, **route)


def purge(http: httpx.Client, proxy, query: str) -> dict:
    answer = http.post(f"{proxy.url}/__cache/purge?{query}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def proxy(proxy_factory):
    return proxy_factory({"cache_admin_key": KEY})


# -- tags from the upstream, kept from clients --------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "tags"),
    [
        ("Surrogate-Key", "item-1  list:items", ["item-1", "list:items"]),
        ("xkey", "item-1 list:items", ["item-1", "list:items"]),
        ("Cache-Tag", "item-1, list:items ,bad tag", ["item-1", "list:items"]),
    ],
)
def test_tags_are_read_by_each_convention_and_kept_from_clients(origin, proxy, http, field, value, tags):
    tagged(origin, "/t", (field, value))
    first = http.get(f"{proxy.url}/t")
    assert first.headers["x-cache"] == "MISS" and field.lower() not in first.headers
    hit = http.get(f"{proxy.url}/t")
    assert hit.headers["x-cache"] == "HIT" and field.lower() not in hit.headers
    for tag in tags:
        assert purge(http, proxy, httpx.QueryParams({"tag": tag}))["purged"] == 1
        assert x_cache(http, f"{proxy.url}/t") == "MISS"


def test_tag_fields_reach_clients_when_kept(origin, proxy_factory, http):
    proxy = proxy_factory({"cache_admin_key": KEY, "cache_tag_fields_keep": "on"})
    tagged(origin, "/t", ("Surrogate-Key", "a b"))
    assert http.get(f"{proxy.url}/t").headers["surrogate-key"] == "a b"
    assert http.get(f"{proxy.url}/t").headers["surrogate-key"] == "a b"  # the hit too
    assert purge(http, proxy, "tag=b")["purged"] == 1


def test_only_the_configured_fields_carry_tags(origin, proxy_factory, http):
    proxy = proxy_factory({"cache_admin_key": KEY, "cache_tag_fields": "X-Tags"})
    tagged(origin, "/t", ("X-Tags", "a,b"), ("Surrogate-Key", "c"))
    response = http.get(f"{proxy.url}/t")
    assert "x-tags" not in response.headers and response.headers["surrogate-key"] == "c"
    assert purge(http, proxy, "tag=c")["purged"] == 0
    assert purge(http, proxy, "tag=b")["purged"] == 1


# -- purge, soft purge, refresh ---------------------------------------------------------------------


def test_a_purge_by_tag_drops_every_entry_carrying_one_of_its_tags(origin, proxy, http):
    tagged(origin, "/item/1", ("Surrogate-Key", "item-1"))
    tagged(origin, "/list", ("Surrogate-Key", "item-1 item-2"))
    tagged(origin, "/item/2", ("Surrogate-Key", "item-2"))
    tagged(origin, "/item/3", ("Surrogate-Key", "item-3"))
    for path in ("/item/1", "/list", "/item/2", "/item/3"):
        http.get(f"{proxy.url}{path}")
    assert purge(http, proxy, "tag=item-1&tag=item-2") == {
        "tags": ["item-1", "item-2"],
        "purged": 3,
        "soft": False,
    }
    assert [x_cache(http, f"{proxy.url}{p}") for p in ("/item/1", "/list", "/item/2", "/item/3")] == [
        "MISS",
        "MISS",
        "MISS",
        "HIT",
    ]


def test_a_purge_names_its_tags_in_a_json_body_too(origin, proxy, http):
    tagged(origin, "/a", ("Cache-Tag", "x"))
    http.get(f"{proxy.url}/a")
    answer = http.post(f"{proxy.url}/__cache/purge", json={"tag": "x"}, headers=AUTH).json()
    assert answer["purged"] == 1


def test_a_soft_purge_serves_the_stale_copy_while_one_refresh_runs(origin, proxy, http):
    origin.route(
        "/s",
        headers=[("Cache-Control", "max-age=60"), ("Surrogate-Key", "s")],
        sequence=[{"body": "old"}, {"body": "new", "delay": 0.5}],
    )
    http.get(f"{proxy.url}/s")
    assert purge(http, proxy, "tag=s&soft=1") == {"tags": ["s"], "purged": 1, "soft": True}
    stale = [http.get(f"{proxy.url}/s") for _ in range(3)]
    assert [(r.headers["x-cache"], r.text) for r in stale] == [("STALE", "old")] * 3
    time.sleep(1.0)
    fresh = http.get(f"{proxy.url}/s")
    assert (fresh.headers["x-cache"], fresh.text) == ("HIT", "new")
    assert origin.count("/s") == 2  # one refresh for the three stale answers


def test_a_refresh_by_tag_refetches_each_tagged_url_in_the_background(origin, proxy, http):
    for path in ("/r/1", "/r/2"):
        origin.route(
            path,
            headers=[("Cache-Control", "max-age=60"), ("xkey", "r")],
            sequence=[{"body": "v1"}, {"body": "v2"}],
        )
        http.get(f"{proxy.url}{path}")
    answer = http.post(f"{proxy.url}/__cache/refresh?tag=r", headers=AUTH).json()
    assert answer == {"tags": ["r"], "result": "refreshing", "refreshing": 2, "keys": 2}
    time.sleep(0.5)
    assert [http.get(f"{proxy.url}{p}").text for p in ("/r/1", "/r/2")] == ["v2", "v2"]
    assert origin.count("/r/1") == origin.count("/r/2") == 2


# -- Clear-Cache-Tag ---------------------------------------------------------------------------------


def test_clear_cache_tag_with_the_key_refreshes_hot_entries_and_drops_cold_ones(origin, proxy_factory, http):
    proxy = proxy_factory({"cache_admin_key": KEY, "cache_refresh_window": "1"})
    tagged(origin, "/cold", ("Surrogate-Key", "t"))
    origin.route(
        "/hot", headers=[*FRESH.items(), ("Surrogate-Key", "t")], sequence=[{"body": "v1"}, {"body": "v2"}]
    )
    http.get(f"{proxy.url}/cold")
    time.sleep(1.2)
    http.get(f"{proxy.url}/hot")
    answer = http.get(f"{proxy.url}/anything", headers={"Clear-Cache-Tag": "t", "Clear-Cache-Key": KEY})
    assert answer.status_code == 200
    assert {k: answer.json()[k] for k in ("tags", "result", "refreshing", "cleared")} == {
        "tags": ["t"],
        "result": "refreshing",
        "refreshing": 1,
        "cleared": 1,
    }
    time.sleep(0.5)
    assert x_cache(http, f"{proxy.url}/cold") == "MISS"
    hot = http.get(f"{proxy.url}/hot")
    assert (hot.headers["x-cache"], hot.text) == ("HIT", "v2")
    assert origin.count("/anything") == 0


def test_clear_cache_tag_without_the_key_is_refused_and_never_forwarded(origin, proxy, http):
    tagged(origin, "/t", ("Surrogate-Key", "t"))
    http.get(f"{proxy.url}/t")
    for headers in ({"Clear-Cache-Tag": "t"}, {"Clear-Cache-Tag": "t", "Clear-Cache-Key": "guess"}):
        assert http.get(f"{proxy.url}/t", headers=headers).status_code == 401
    assert x_cache(http, f"{proxy.url}/t") == "HIT"
    assert origin.count("/t") == 1


def test_clear_cache_tag_on_an_upstream_response_clears_its_tags_and_never_reaches_the_client(
    origin, proxy_factory, http
):
    proxy = proxy_factory({"cache_admin_key": KEY, "cache_refresh_window": "1"})
    origin.route(
        "/list",
        headers=[*FRESH.items(), ("Surrogate-Key", "item-7")],
        sequence=[{"body": "before"}, {"body": "after"}],
    )
    tagged(origin, "/other", ("Surrogate-Key", "item-8"))
    origin.route("/write", status=201, headers=[("Clear-Cache-Tag", "item-7")], body="created")
    http.get(f"{proxy.url}/list")
    http.get(f"{proxy.url}/other")
    time.sleep(1.2)  # both cold now: a clear drops them
    written = http.post(f"{proxy.url}/write", content=b"x")  # the upstream needs no key: it is trusted
    assert written.status_code == 201 and "clear-cache-tag" not in written.headers
    after = http.get(f"{proxy.url}/list")
    assert (after.headers["x-cache"], after.text) == ("MISS", "after")
    assert x_cache(http, f"{proxy.url}/other") == "HIT"


# -- stats --------------------------------------------------------------------------------------------


def test_stats_and_metrics_count_tags_known_and_purges_by_tag(origin, proxy, http):
    tagged(origin, "/a", ("Surrogate-Key", "x y"))
    tagged(origin, "/b", ("Surrogate-Key", "y z"))
    http.get(f"{proxy.url}/a")
    http.get(f"{proxy.url}/b")
    assert http.get(f"{proxy.url}/__cache/stats", headers=AUTH).json()["tags"]["known"] == 3
    purge(http, proxy, "tag=y")
    tags = http.get(f"{proxy.url}/__cache/stats", headers=AUTH).json()["tags"]
    assert tags["known"] == 0 and tags["operations"]["purge"] == 1 and tags["entries"]["purge"] == 2
    assert tags["entries_per_operation"]["buckets"]["10"] == 1
    metrics = http.get(f"{proxy.url}/__cache/metrics", headers=AUTH).text
    assert 'mitmcache_tag_operations_total{action="purge"} 1.0' in metrics
    assert "mitmcache_tags 0.0" in metrics
    assert 'mitmcache_tag_operation_entries_bucket{le="10"} 1.0' in metrics


# -- across proxies sharing Redis ------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def shared(redis_server, proxy_factory):
    def start(settings: dict | None = None):
        return proxy_factory({"cache_store": redis_server.url, "cache_admin_key": KEY, **(settings or {})})

    return start


def both_hold(http: httpx.Client, proxies, path: str) -> None:
    for proxy in proxies:
        http.get(f"{proxy.url}{path}")
        assert x_cache(http, f"{proxy.url}{path}") == "HIT"


def test_a_tag_purge_on_one_proxy_drops_the_tagged_entries_on_every_proxy(origin, shared, http):
    for path, tags in (("/a", "t"), ("/b", "t u"), ("/c", "u")):
        tagged(origin, path, ("Surrogate-Key", tags))
    one, two = shared(), shared()
    for path in ("/a", "/b", "/c"):
        both_hold(http, (one, two), path)
    assert purge(http, one, "tag=t")["purged"] == 2
    time.sleep(PROPAGATION)
    assert [x_cache(http, f"{two.url}{p}") for p in ("/a", "/b", "/c")] == ["MISS", "MISS", "HIT"]


def test_a_soft_purge_on_one_proxy_makes_every_proxy_serve_stale_while_one_refresh_runs(origin, shared, http):
    origin.route(
        "/s",
        headers=[*FRESH.items(), ("Surrogate-Key", "s")],
        sequence=[{"body": "old"}, {"body": "new", "delay": 0.5}],
    )
    one, two = shared(), shared()
    both_hold(http, (one, two), "/s")
    assert purge(http, one, "tag=s&soft=1")["purged"] == 1
    time.sleep(PROPAGATION)
    answers = [http.get(f"{p.url}/s") for p in (two, one, two)]
    assert [(r.headers["x-cache"], r.text) for r in answers] == [("STALE", "old")] * 3
    time.sleep(1.0)
    assert [http.get(f"{p.url}/s").text for p in (one, two)] == ["new", "new"]
    assert origin.count("/s") == 2


def test_tags_known_across_proxies_come_from_redis(origin, shared, http):
    tagged(origin, "/a", ("Cache-Tag", "x,y"))
    one, two = shared(), shared()
    http.get(f"{one.url}/a")
    stats = http.get(f"{two.url}/__cache/stats", headers=AUTH).json()
    assert stats["shared"]["tags"] == 2


# -- on the disk store (CACHE_STORE=disk), across restarts --------------------------------------------


@pytest.fixture
def on_disk(proxy_factory, tmp_path):
    """Start a proxy on the test's SQLite file: ``on_disk()``, ``on_disk(settings)``."""

    def start(settings: dict | None = None):
        path = tmp_path / "store" / "cache.db"
        return proxy_factory({"cache_store": f"sqlite://{path}", "cache_admin_key": KEY, **(settings or {})})

    return start


def only_if_cached(http: httpx.Client, url: str) -> int:
    return http.get(url, headers={"Cache-Control": "only-if-cached"}).status_code


def test_a_purge_by_tag_on_the_disk_store_drops_what_a_restarted_proxy_read_and_stays_purged(
    origin, on_disk, proxy_factory, http
):
    tagged(origin, "/item/1", ("Surrogate-Key", "item-1 list"))
    tagged(origin, "/item/2", ("Surrogate-Key", "item-2 list"))
    tagged(origin, "/other", ("Surrogate-Key", "other"))
    first = on_disk()
    for path in ("/item/1", "/item/2", "/other"):
        http.get(f"{first.url}{path}")
    proxy_factory.stop_all()
    restarted = on_disk()  # its tier starts empty: the tags are found in the file
    assert purge(http, restarted, "tag=list")["purged"] == 2
    assert [only_if_cached(http, f"{restarted.url}{p}") for p in ("/item/1", "/item/2", "/other")] == [
        504,
        504,
        200,
    ]
    stats = http.get(f"{restarted.url}/__cache/stats", headers=AUTH).json()
    assert stats["disk"]["entries"] == 1 and stats["disk"]["tags"] == 1  # "other"
    proxy_factory.stop_all()
    again = on_disk()
    assert (
        only_if_cached(http, f"{again.url}/item/1") == 504
        and only_if_cached(http, f"{again.url}/other") == 200
    )
    assert origin.count("/item/1") == origin.count("/other") == 1


def test_a_soft_purge_on_the_disk_store_is_served_stale_after_a_restart(origin, on_disk, proxy_factory, http):
    origin.route(
        "/s",
        headers=[("Cache-Control", "max-age=60"), ("Surrogate-Key", "s")],
        sequence=[{"body": "old"}, {"body": "new", "delay": 0.5}],
    )
    first = on_disk({"cache_refresh_window": "0"})
    http.get(f"{first.url}/s")
    assert purge(http, first, "tag=s&soft=1")["purged"] == 1
    proxy_factory.stop_all()
    restarted = on_disk()
    stale = http.get(f"{restarted.url}/s")
    assert (stale.headers["x-cache"], stale.text) == ("STALE", "old")
    time.sleep(1.0)
    fresh = http.get(f"{restarted.url}/s")
    assert (fresh.headers["x-cache"], fresh.text) == ("HIT", "new")
