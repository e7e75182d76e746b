"""Expiry, the refresh window, and stale serving (issue 7, SPEC §5), end to end."""

import time

import httpx


def poll(http: httpx.Client, url: str, seconds: float, interval: float = 0.1) -> list[httpx.Response]:
    responses = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        responses.append(http.get(url))
        time.sleep(interval)
    return responses


def test_a_stale_entry_is_served_while_one_background_refresh_runs(origin, proxy_factory, http):
    origin.route("/s", sequence=[{"body": "v1"}, {"body": "v2", "delay": 2.0}])
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "10"})
    http.get(f"{proxy.url}/s")
    time.sleep(1.1)  # expired; the scheduler started the refresh, which takes 2 s
    started = time.monotonic()
    stale = [http.get(f"{proxy.url}/s") for _ in range(3)]
    assert time.monotonic() - started < 1.5  # none of them waited for the refresh
    assert [r.headers["x-cache"] for r in stale] == ["STALE"] * 3
    assert [r.text for r in stale] == ["v1"] * 3
    assert "detail=refresh-window" in stale[0].headers["cache-status"]
    origin.wait_for_count(2, "/s", timeout=3)  # the refresh may still be on its way to the origin
    time.sleep(0.3)
    assert origin.count("/s") == 2  # one refresh, however many clients were served stale
    # The refresh began with the first stale request and takes 2 s upstream: a second more for it
    # to be stored, so that test processes sharing the cores cannot make this a race.
    time.sleep(3.0)
    assert http.get(f"{proxy.url}/s").text == "v2"


def test_a_key_that_keeps_being_asked_for_never_shows_a_miss(origin, proxy_factory, http):
    origin.route("/hot", body="data")
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "10"})
    responses = poll(http, f"{proxy.url}/hot", 3.5)
    assert responses[0].headers["x-cache"] == "MISS"
    assert {r.headers["x-cache"] for r in responses[1:]} <= {"HIT", "STALE"}
    assert 3 <= origin.count("/hot") <= 5


def test_a_key_nobody_asks_for_is_dropped_at_expiry(origin, proxy_factory, http):
    origin.route("/cold", body="data")
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "0.5"})
    http.get(f"{proxy.url}/cold")
    time.sleep(2.5)
    assert origin.count("/cold") == 1  # no refresh for a key nobody asked for
    assert http.get(f"{proxy.url}/cold").headers["x-cache"] == "MISS"


def test_refreshes_are_conditional_and_a_304_renews_the_entry(origin, proxy_factory, http):
    origin.route(
        "/v",
        sequence=[
            {"headers": [("ETag", '"v1"')], "body": "original"},
            {"status": 304, "headers": [("ETag", '"v1"')], "body": ""},
        ],
    )
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "10"})
    http.get(f"{proxy.url}/v")
    http.get(f"{proxy.url}/v")
    origin.wait_for_count(2, "/v", timeout=3)
    refresh = origin.requests("/v")[1]
    assert ["If-None-Match", '"v1"'] in refresh["headers"] or ["if-none-match", '"v1"'] in refresh["headers"]
    time.sleep(0.2)
    renewed = http.get(f"{proxy.url}/v")
    assert (renewed.headers["x-cache"], renewed.text) == ("HIT", "original")


def test_refreshes_send_a_clean_request(origin, proxy_factory, http):
    origin.route("/clean", body="data")
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "10"})
    http.get(f"{proxy.url}/clean", headers={"Cookie": "session=secret", "X-Client": "mine"})
    http.get(f"{proxy.url}/clean")
    origin.wait_for_count(2, "/clean", timeout=3)
    refresh = origin.requests("/clean")[1]
    names = {name.lower() for name, _ in refresh["headers"]}
    assert refresh["method"] == "GET"
    assert not names & {"cookie", "authorization", "x-client"}


def test_an_entry_that_varies_on_cookie_is_never_refreshed_in_the_background(origin, proxy_factory, http):
    """A refresh would have to replay the client's Cookie: the hot entry is left to expire and
    the next client's own request fetches it again."""
    origin.route("/mine", headers=[("Vary", "Cookie"), ("Cache-Control", "max-age=2")], body="yours")
    proxy = proxy_factory({"cache_refresh_window": "10"})
    cookie = {"Cookie": "session=secret"}
    http.get(f"{proxy.url}/mine", headers=cookie)
    assert http.get(f"{proxy.url}/mine", headers=cookie).headers["x-cache"] == "HIT"
    time.sleep(3.5)  # past expiry: a refreshable hot entry would have been refreshed by now
    assert origin.count("/mine") == 1
    again = http.get(f"{proxy.url}/mine", headers=cookie)
    assert (again.text, again.headers["x-cache"]) == ("yours", "MISS")
    assert origin.count("/mine") == 2


def test_a_failed_refresh_keeps_serving_the_stale_copy(origin, proxy_factory, http):
    origin.route("/f", sequence=[{"body": "good"}, {"fail": "close"}])
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "10"})
    http.get(f"{proxy.url}/f")
    responses = poll(http, f"{proxy.url}/f", 3)
    assert {r.text for r in responses} == {"good"}
    assert {r.status_code for r in responses} == {200}
    assert origin.count("/f") <= 4  # retried with backoff, not once per request


def test_stale_copies_stop_once_the_error_allowance_is_spent(origin, proxy_factory, http):
    origin.route("/f", sequence=[{"body": "good"}, {"fail": "close"}])
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "10", "cache_stale_if_error": "1"})
    http.get(f"{proxy.url}/f")
    responses = poll(http, f"{proxy.url}/f", 3.5, interval=0.2)
    assert responses[-1].status_code == 502
    assert "good" in {r.text for r in responses}


def test_upstream_stale_while_revalidate_is_honoured_in_pure_rfc_mode(origin, proxy_factory, http):
    origin.route(
        "/swr",
        sequence=[
            {"headers": [("Cache-Control", "max-age=1, stale-while-revalidate=30")], "body": "v1"},
            {
                "headers": [("Cache-Control", "max-age=1, stale-while-revalidate=30")],
                "body": "v2",
                "delay": 1,
            },
        ],
    )
    proxy = proxy_factory({"cache_ttl": "0", "cache_refresh_window": "0"})
    http.get(f"{proxy.url}/swr")
    time.sleep(1.2)
    stale = http.get(f"{proxy.url}/swr")
    assert (stale.headers["x-cache"], stale.text) == ("STALE", "v1")
    assert "detail=stale-while-revalidate" in stale.headers["cache-status"]


def test_pure_rfc_mode_does_not_serve_stale_without_permission(origin, proxy_factory, http):
    origin.route(
        "/strict",
        sequence=[
            {"headers": [("Cache-Control", "max-age=1"), ("ETag", '"a"')], "body": "v1"},
            {"headers": [("Cache-Control", "max-age=1"), ("ETag", '"b"')], "body": "v2"},
        ],
    )
    proxy = proxy_factory({"cache_ttl": "0", "cache_refresh_window": "0"})
    http.get(f"{proxy.url}/strict")
    time.sleep(1.2)
    again = http.get(f"{proxy.url}/strict")
    assert again.text == "v2"
    assert again.headers["x-cache"] != "STALE"


def test_must_revalidate_forbids_serving_stale(origin, proxy_factory, http):
    origin.route(
        "/mr",
        sequence=[
            {"headers": [("Cache-Control", "max-age=1, must-revalidate"), ("ETag", '"a"')], "body": "v1"},
            {"status": 304, "headers": [("ETag", '"a"')], "body": "", "delay": 2},
        ],
    )
    proxy = proxy_factory({"cache_ttl": "60", "cache_refresh_window": "10"})
    http.get(f"{proxy.url}/mr")
    time.sleep(1.3)  # expired; the scheduler's refresh is under way for 2 s
    started = time.monotonic()
    revalidated = http.get(f"{proxy.url}/mr")
    assert time.monotonic() - started > 0.3  # it waited for the upstream instead of serving stale
    assert (revalidated.headers["x-cache"], revalidated.text) == ("REVALIDATED", "v1")
    assert "fwd=stale; fwd-status=304" in revalidated.headers["cache-status"]


def test_must_revalidate_gives_an_error_rather_than_stale_when_the_upstream_fails(
    origin, proxy_factory, http
):
    origin.route(
        "/mr",
        sequence=[
            {"headers": [("Cache-Control", "max-age=1, must-revalidate")], "body": "v1"},
            {"fail": "close", "delay": 1.5},
        ],
    )
    proxy = proxy_factory({"cache_ttl": "60", "cache_refresh_window": "10"})
    http.get(f"{proxy.url}/mr")
    time.sleep(1.3)
    failed = http.get(f"{proxy.url}/mr")
    assert failed.status_code == 502
    assert failed.headers["x-cache"] == "MISS"


def test_upstream_stale_if_error_serves_stale_when_the_upstream_fails(origin, proxy_factory, http):
    origin.route(
        "/sie",
        sequence=[
            {"headers": [("Cache-Control", "max-age=1, stale-if-error=60")], "body": "v1"},
            {"status": 503},
        ],
    )
    proxy = proxy_factory({"cache_ttl": "0", "cache_refresh_window": "0"})
    http.get(f"{proxy.url}/sie")
    time.sleep(1.2)
    fallback = http.get(f"{proxy.url}/sie")
    assert (fallback.status_code, fallback.headers["x-cache"], fallback.text) == (200, "STALE", "v1")
    assert "upstream-status-503" in fallback.headers["cache-status"]


def test_refresh_ahead_keeps_a_hot_key_from_ever_being_stale(origin, proxy_factory, http):
    origin.route("/ahead", body="data", delay=0.2)
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "10", "cache_refresh_ahead": "0.5"})
    responses = poll(http, f"{proxy.url}/ahead", 3.5)
    assert {r.headers["x-cache"] for r in responses[1:]} == {"HIT"}
    assert origin.count("/ahead") >= 3
