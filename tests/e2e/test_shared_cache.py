"""One cache for several proxy processes (CACHE_STORE=redis://...), end to end: a real redis-server
of the tests' own on a free port, two or more real proxies sharing it, a real origin.

Without a redis-server binary these tests skip, except under CI=true, where they fail.
"""

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from mitmcache.policy.key import primary_key
from mitmcache.store.redis import hash_key
from tests.e2e.test_mitmweb import MITMWEB, PASSWORD, Web
from tests.support.harness import Proxy, free_port
from tests.support.late_replies import LateReplies
from tests.support.redis_server import RedisServer

KEY = "shared-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROPAGATION = 0.1  # an entry dropped on one proxy is dropped on every other within this


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def shared(redis_server, proxy_factory):
    """Start a proxy on the test's Redis: ``shared()``, ``shared(settings)``."""

    def start(settings: dict | None = None, **kwargs):
        return proxy_factory(
            {"cache_store": redis_server.url, "cache_admin_key": KEY, **(settings or {})}, **kwargs
        )

    return start


async def gather_gets(urls: list[str], timeout: float = 15) -> list[httpx.Response]:
    """One concurrent GET per URL, each on its own connection."""
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        return await asyncio.gather(*(client.get(url) for url in urls))


def x_cache(http: httpx.Client, url: str) -> str:
    return http.get(url).headers["x-cache"]


# -- sharing -------------------------------------------------------------------------------------


def test_a_response_stored_by_one_proxy_is_a_hit_on_another(origin, shared, http):
    origin.route("/a", headers={"Cache-Control": "max-age=60"}, body="shared body")
    one, two = shared(), shared()
    assert x_cache(http, f"{one.url}/a") == "MISS"
    answer = http.get(f"{two.url}/a")
    assert (answer.text, answer.headers["x-cache"]) == ("shared body", "HIT")
    assert "detail=tier-shared" in answer.headers["cache-status"]
    again = http.get(f"{two.url}/a")  # now in the second proxy's own tier
    assert "detail=tier-local" in again.headers["cache-status"]
    assert origin.count("/a") == 1


async def test_a_herd_spread_over_processes_makes_one_upstream_request(origin, shared):
    origin.route("/herd", headers={"Cache-Control": "max-age=60"}, body="one answer", delay=0.5)
    proxies = [shared(), shared(), shared()]
    responses = await gather_gets([f"{p.url}/herd" for p in proxies for _ in range(15)])
    assert origin.count("/herd") == 1
    assert {r.status_code for r in responses} == {200}
    assert {r.text for r in responses} == {"one answer"}
    assert sorted(r.headers["x-cache"] for r in responses).count("MISS") == 1


async def test_a_process_late_to_redis_answers_rereads_what_another_stored_meanwhile(
    origin, shared, redis_server
):
    """Under a herd, a process's loop gets to the answer of its store read late: another process can
    fetch and store the URL in between. The late one re-reads it, and does not fetch it again."""
    origin.route("/late", headers={"Cache-Control": "max-age=60"}, body="one answer")
    origin.route("/warm", body="first requests")
    # The read of /late's entry names its Redis key: only that read's answer is held back, not the
    # late process's other traffic (the schedule it reads every 0.25 s, events).
    marker = hash_key(primary_key("http", origin.url.removeprefix("http://"), "/late")).encode()
    with LateReplies(redis_server.port) as relay:
        late = shared({"cache_store": f"redis://127.0.0.1:{relay.port}/0"})
        prompt = shared()
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=15, limits=limits, trust_env=False) as client:
            for proxy in (late, prompt):  # a fresh process's first request is slow: not this one
                await client.get(f"{proxy.url}/warm")
            relay.hold(marker, limit=0.3)  # within the link's 0.5 s timeout
            waiting = asyncio.ensure_future(client.get(f"{late.url}/late"))
            assert await asyncio.to_thread(relay.held.wait, 5)  # Redis said "nothing stored"
            first = await client.get(f"{prompt.url}/late")  # fetched and stored meanwhile
            relay.release()
            answer = await waiting
        log = late.log_text()  # read before the relay closes: the late process then loses Redis
    assert first.headers["x-cache"] == "MISS", first.headers["cache-status"]
    assert (answer.status_code, answer.text) == (200, "one answer")
    assert origin.count("/late") == 1
    assert "is down" not in log  # it coalesced through Redis, not alone


async def test_an_unshareable_answer_releases_the_waiters_of_every_process(origin, shared, http):
    origin.route("/private", headers={"Cache-Control": "private"}, body="yours", delay=1.0)
    one, two = shared(), shared()
    responses = await gather_gets([f"{one.url}/private"] * 3 + [f"{two.url}/private"] * 3)
    assert [r.status_code for r in responses] == [200] * 6
    assert origin.count("/private") == 6  # each went upstream itself: nothing was shared
    started = time.monotonic()
    later = await gather_gets([f"{two.url}/private"] * 4)
    assert time.monotonic() - started < 3.0  # hit-for-miss: concurrent (1 s), not one after another (4 s)
    assert all("detail=private" in r.headers["cache-status"] for r in later)


async def test_hit_for_miss_reaches_every_process(origin, shared, http):
    origin.route("/mine", headers={"Set-Cookie": "session=1"}, body="yours", delay=0.3)
    one, two = shared(), shared()
    http.get(f"{one.url}/mine")  # found unshareable by the first proxy only
    await asyncio.sleep(PROPAGATION)
    await gather_gets([f"{two.url}/mine"] * 4)
    stats = http.get(f"{two.url}/__cache/stats", headers=AUTH).json()
    assert stats["coalesced_waits"] == 0  # none queued behind another: hit-for-miss reached it
    assert origin.count("/mine") == 5


def test_a_key_is_refreshed_by_one_process_not_by_each(origin, shared, http):
    origin.route("/fresh", headers={"Cache-Control": "max-age=1"}, body="v")
    one, two = shared(), shared()
    http.get(f"{one.url}/fresh")
    for proxy in (one, two):
        assert http.get(f"{proxy.url}/fresh").status_code == 200  # asked for on both since stored
    time.sleep(2.5)  # at expiry: one refresh, by one of the two; then nobody asked again
    assert origin.count("/fresh") == 2


# -- invalidation reaches every process ------------------------------------------------------------


def both_hold(http: httpx.Client, proxies, path: str) -> None:
    for proxy in proxies:
        http.get(f"{proxy.url}{path}")
        assert x_cache(http, f"{proxy.url}{path}") == "HIT"  # in each proxy's own tier


def test_a_purge_on_one_proxy_drops_the_entry_on_every_proxy(origin, shared, http):
    origin.route("/p", headers={"Cache-Control": "max-age=60"}, body="x")
    one, two = shared(), shared()
    both_hold(http, (one, two), "/p")
    assert http.post(f"{one.url}/__cache/purge", json={"url": "/p"}, headers=AUTH).json()["purged"] == 1
    time.sleep(PROPAGATION)
    assert x_cache(http, f"{two.url}/p") == "MISS"


def test_a_prefix_purge_on_one_proxy_drops_the_entries_on_every_proxy(origin, shared, http):
    for path in ("/api/1", "/api/2", "/other"):
        origin.route(path, headers={"Cache-Control": "max-age=60"}, body=path)
    one, two = shared(), shared()
    for path in ("/api/1", "/api/2", "/other"):
        both_hold(http, (one, two), path)
    answer = http.post(f"{one.url}/__cache/purge", json={"prefix": "/api/"}, headers=AUTH).json()
    assert answer["purged"] == 2
    time.sleep(PROPAGATION)
    assert [x_cache(http, f"{two.url}{p}") for p in ("/api/1", "/api/2", "/other")] == ["MISS", "MISS", "HIT"]


def test_a_clear_on_one_proxy_empties_every_proxy(origin, shared, http):
    origin.route("/c", headers={"Cache-Control": "max-age=60"}, body="x")
    one, two = shared(), shared()
    both_hold(http, (one, two), "/c")
    assert http.post(f"{one.url}/__cache/clear", headers=AUTH).json()["cleared"] == 1
    time.sleep(PROPAGATION)
    assert x_cache(http, f"{two.url}/c") == "MISS"


def test_clear_cache_on_one_proxy_drops_the_entry_on_every_proxy(origin, shared, http):
    origin.route("/cc", headers={"Cache-Control": "max-age=60"}, body="x")
    one, two = shared({"cache_refresh_window": "0"}), shared({"cache_refresh_window": "0"})
    both_hold(http, (one, two), "/cc")
    answer = http.get(f"{one.url}/cc", headers={"Clear-Cache": "1", "Clear-Cache-Key": KEY}).json()
    assert answer["cleared"] == 1
    time.sleep(PROPAGATION)
    assert x_cache(http, f"{two.url}/cc") == "MISS"


def test_a_post_through_one_proxy_invalidates_the_url_on_every_proxy(origin, shared, http):
    origin.route("/item", headers={"Cache-Control": "max-age=60"}, body="before")
    one, two = shared(), shared()
    both_hold(http, (one, two), "/item")
    assert http.post(f"{one.url}/item", content=b"change").status_code == 200
    time.sleep(PROPAGATION)
    assert x_cache(http, f"{two.url}/item") == "MISS"


def test_a_refresh_on_one_proxy_replaces_the_entry_on_every_proxy(origin, shared, http):
    origin.route(
        "/r",
        headers={"Cache-Control": "max-age=60"},
        sequence=[{"body": "first"}, {"body": "second"}],
    )
    one, two = shared(), shared()
    both_hold(http, (one, two), "/r")
    http.post(f"{one.url}/__cache/refresh", json={"url": "/r"}, headers=AUTH)
    origin.wait_for_count(2, "/r")
    deadline = time.monotonic() + 2
    while http.get(f"{two.url}/r").text != "second":
        assert time.monotonic() < deadline, "the refreshed entry never reached the other proxy"
        time.sleep(0.02)


# -- restarts ----------------------------------------------------------------------------------------


def test_restarted_proxies_serve_what_was_cached_with_its_age(origin, shared, http, proxy_factory):
    origin.route("/kept", headers={"Cache-Control": "max-age=600"}, body="kept")
    one, _ = shared(), shared()
    http.get(f"{one.url}/kept")
    proxy_factory.stop_all()
    time.sleep(2)
    answer = http.get(f"{shared().url}/kept")
    assert (answer.text, answer.headers["x-cache"]) == ("kept", "HIT")
    assert int(answer.headers["age"]) >= 2
    assert origin.count("/kept") == 1


def test_with_redis_persistence_the_cache_survives_a_redis_restart(origin, proxy_factory, http, tmp_path):
    with RedisServer(persist=True, workdir=tmp_path / "redis") as redis_server:
        origin.route("/durable", headers={"Cache-Control": "max-age=600"}, body="durable")
        proxy = proxy_factory({"cache_store": redis_server.url})
        http.get(f"{proxy.url}/durable")
        redis_server.stop()
        redis_server.start()
        proxy_factory.stop_all()
        answer = http.get(f"{proxy_factory({'cache_store': redis_server.url}).url}/durable")
        assert (answer.text, answer.headers["x-cache"]) == ("durable", "HIT")
        assert origin.count("/durable") == 1


# -- Redis going away ----------------------------------------------------------------------------------


async def load(urls: list[str], until: float, errors: list[str]) -> int:
    """GETs round-robin over ``urls`` until ``until`` (monotonic); failures go to ``errors``."""
    sent = 0
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        while time.monotonic() < until:
            url = urls[sent % len(urls)]
            try:
                answer = await client.get(url)
                if answer.status_code != 200 or not answer.text.startswith("body"):
                    errors.append(f"{url}: {answer.status_code} {answer.text[:80]!r}")
            except httpx.HTTPError as e:
                errors.append(f"{url}: {e!r}")
            sent += 1
    return sent


def wait_for_store_state(http: httpx.Client, proxy, state: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = http.get(f"{proxy.url}/__cache/health").json()
        if health["store"]["state"] == state:
            return health
        assert time.monotonic() < deadline, f"store never became {state}: {health}"
        time.sleep(0.1)


async def test_redis_killed_and_restarted_mid_traffic_fails_no_request(origin, shared, redis_server, http):
    for i in range(20):
        origin.route(f"/k{i}", headers={"Cache-Control": "max-age=60"}, body=f"body {i}")
    one, two = shared(), shared()
    urls = [f"{p.url}/k{i}" for i in range(20) for p in (one, two)]
    errors: list[str] = []
    traffic = asyncio.gather(*(load(urls, time.monotonic() + 5, errors) for _ in range(4)))
    await asyncio.sleep(1)
    redis_server.kill()
    await asyncio.sleep(1.5)
    health = await asyncio.to_thread(wait_for_store_state, http, one, "down")
    assert health["status"] == "degraded" and health["store"]["backend"] == "redis"
    redis_server.start()  # empty: the test's Redis keeps nothing
    sent = await traffic
    assert errors == [] and sum(sent) > 100
    for proxy in (one, two):
        wait_for_store_state(http, proxy, "up")
    origin.route("/after", headers={"Cache-Control": "max-age=60"}, body="body after")
    assert x_cache(http, f"{one.url}/after") == "MISS"
    assert x_cache(http, f"{two.url}/after") == "HIT"  # sharing resumed
    assert "shared store" in one.log_text() and "is down" in one.log_text() and "is back" in one.log_text()


def test_a_proxy_starts_and_serves_while_redis_is_down_and_shares_once_it_is_up(origin, proxy_factory, http):
    server = RedisServer()
    try:
        origin.route("/early", headers={"Cache-Control": "max-age=60"}, body="body early")
        proxy = proxy_factory({"cache_store": server.url, "cache_admin_key": KEY})
        answers = [http.get(f"{proxy.url}/early") for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[1].headers["x-cache"] == "HIT"  # from its own tier
        health = wait_for_store_state(http, proxy, "down")
        assert health["status"] == "degraded" and health["store"]["since"] <= time.time()
        metrics = http.get(f"{proxy.url}/__cache/metrics", headers=AUTH).text
        assert "mitmcache_store_up 0.0" in metrics
        server.start()
        wait_for_store_state(http, proxy, "up")
        other = proxy_factory({"cache_store": server.url})
        http.get(f"{proxy.url}/early")  # its tier was dropped on reconnecting: read from Redis, a miss
        assert x_cache(http, f"{other.url}/early") == "HIT"
    finally:
        server.remove()


# -- what Redis holds ----------------------------------------------------------------------------------


def hash_keys(redis_server: RedisServer) -> list[str]:
    """The per-URL hashes the cache wrote."""
    return redis_server.keys("mitmcache:{*}:v")


@pytest.mark.parametrize("garbage", ["field", "type"])
def test_a_garbage_value_in_redis_is_a_miss_not_an_error(origin, shared, redis_server, http, garbage):
    origin.route("/g", headers={"Cache-Control": "max-age=60"}, body="good")
    one = shared()
    http.get(f"{one.url}/g")
    (name,) = hash_keys(redis_server)
    if garbage == "field":
        entry_field = next(f for f in redis_server.command("HKEYS", name) if f.startswith(b"e:"))
        assert redis_server.command("HSET", name, entry_field, b"\x93\xa3not an entry") == 0
    else:
        assert redis_server.command("DEL", name) == 1
        assert redis_server.command("SET", name, "a foreign value") == "OK"
    two = shared()
    answer = http.get(f"{two.url}/g")
    assert (answer.status_code, answer.text, answer.headers["x-cache"]) == (200, "good", "MISS")
    assert origin.count("/g") == 2
    metrics = http.get(f"{two.url}/__cache/metrics", headers=AUTH).text
    assert "mitmcache_store_unreadable_total 1.0" in metrics
    assert x_cache(http, f"{shared().url}/g") == "HIT"  # stored anew over the garbage


def test_every_key_in_redis_has_a_lifetime(origin, shared, redis_server, http):
    origin.route("/t", headers={"Cache-Control": "max-age=60"}, body="x")
    one = shared()
    http.get(f"{one.url}/t")
    for name in ["mitmcache:urls", "mitmcache:due", *hash_keys(redis_server)]:
        assert redis_server.command("PTTL", name) > 0, name


def test_the_redis_password_is_never_shown(origin, proxy_factory, http, tmp_path):
    with RedisServer(workdir=tmp_path / "redis") as server:
        assert server.command("CONFIG", "SET", "requirepass", "pw-s3cret") == "OK"
        url = f"redis://:pw-s3cret@127.0.0.1:{server.port}/0"
        origin.route("/s", headers={"Cache-Control": "max-age=60"}, body="x")
        proxy = proxy_factory({"cache_store": url, "cache_admin_key": KEY, "termlog_verbosity": "info"})
        http.get(f"{proxy.url}/s")
        assert x_cache(http, f"{proxy.url}/s") == "HIT"
        stats = http.get(f"{proxy.url}/__cache/stats", headers=AUTH).text
        health = http.get(f"{proxy.url}/__cache/health").text
        assert "[redacted]" in stats and "[redacted]" in health
        for shown in (stats, health, proxy.log_text()):
            assert "pw-s3cret" not in shown


def test_mitmwebs_options_editor_shows_the_store_url_redacted(origin, tmp_path, http):
    with RedisServer(workdir=tmp_path / "redis") as server:
        server.command("CONFIG", "SET", "requirepass", "pw-s3cret")
        port = free_port()
        command = [str(MITMWEB), "--set", "web_open_browser=false", "--set", f"web_password={PASSWORD}"]
        command += ["--set", f"web_port={port}"]
        url = f"redis://:pw-s3cret@127.0.0.1:{server.port}/0"
        with Proxy(origin, {"cache_store": url}, command=command, cwd=tmp_path / "cwd") as proxy:
            web = Web(proxy, port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    options = web.api.get("/options")
                    if options.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "mitmweb's API never answered"
                time.sleep(0.1)
            shown = options.json()["cache_store"]
            assert (shown["value"], shown["default"]) == (
                f"redis://:[redacted]@127.0.0.1:{server.port}/0",
                "memory",
            )
            origin.route("/w", headers={"Cache-Control": "max-age=60"}, body="x")
            http.get(f"{proxy.url}/w")
            assert x_cache(http, f"{proxy.url}/w") == "HIT"
            assert http.get(f"{proxy.url}/__cache/health").json()["store"]["state"] == "up"  # authenticated
            assert "pw-s3cret" not in options.text + proxy.log_text()


def test_a_stalled_redis_fails_no_request_and_the_proxy_says_degraded(origin, shared, redis_server, http):
    origin.route("/st", headers={"Cache-Control": "max-age=60"}, body="body st")
    proxy = shared()
    http.get(f"{proxy.url}/st")
    redis_server.pause()  # accepts connections, answers nothing
    try:
        origin.route("/new", headers={"Cache-Control": "max-age=60"}, body="body new")
        started = time.monotonic()
        answers = [http.get(f"{proxy.url}/st"), http.get(f"{proxy.url}/new"), http.get(f"{proxy.url}/new")]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert time.monotonic() - started < 6
        assert wait_for_store_state(http, proxy, "down")["status"] == "degraded"
    finally:
        redis_server.resume()
    wait_for_store_state(http, proxy, "up")


def test_a_bad_store_url_stops_startup_naming_the_setting_without_its_password(proxy_factory):
    code, output = proxy_factory.run_expecting_failure(
        {"cache_store": "redis://:pw-s3cret@127.0.0.1:99999/0"}
    )
    assert code != 0
    assert "invalid value 'redis://:[redacted]@127.0.0.1:99999/0' for cache_store" in output
    assert "pw-s3cret" not in output
