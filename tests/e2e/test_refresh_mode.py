"""CACHE_REFRESH_MODE: on request (the default), background fetches of a key never outnumber the
client requests for it; continuous refreshes at every expiry within the refresh window."""

import time


def test_one_request_per_url_is_not_amplified_into_refreshes(origin, proxy_factory, http):
    paths = [f"/u{i}" for i in range(20)]
    for path in paths:
        origin.route(path, headers={"Cache-Control": "max-age=1"}, body="data")
    proxy = proxy_factory({"cache_refresh_window": "60"})
    for path in paths:
        http.get(f"{proxy.url}{path}")
    time.sleep(3.5)
    assert origin.count() == len(paths)  # no request was asked for since it was stored


def test_a_request_since_the_last_store_buys_one_refresh_at_expiry(origin, proxy_factory, http):
    origin.route("/hot", headers={"Cache-Control": "max-age=1"}, body="data")
    proxy = proxy_factory({"cache_refresh_window": "60"})
    http.get(f"{proxy.url}/hot")
    assert http.get(f"{proxy.url}/hot").headers["x-cache"] == "HIT"
    time.sleep(3.5)
    assert origin.count("/hot") == 2  # the miss and one refresh: two client requests


def test_the_next_request_within_the_window_gets_the_stale_copy_and_starts_one_refresh(
    origin, proxy_factory, http
):
    origin.route("/k", headers={"Cache-Control": "max-age=1"}, sequence=[{"body": "v1"}, {"body": "v2"}])
    proxy = proxy_factory({"cache_refresh_window": "60"})
    http.get(f"{proxy.url}/k")
    time.sleep(1.6)
    stale = http.get(f"{proxy.url}/k")
    assert (stale.headers["x-cache"], stale.text) == ("STALE", "v1")
    origin.wait_for_count(2, "/k", timeout=3)
    time.sleep(0.3)
    assert http.get(f"{proxy.url}/k").text == "v2"


def test_a_key_polled_less_often_than_it_expires_never_shows_a_miss(origin, proxy_factory, http):
    origin.route("/poll", headers={"Cache-Control": "max-age=1"}, body="data")
    proxy = proxy_factory({"cache_refresh_window": "10"})
    seen, why = [], []
    for _ in range(4):
        response = http.get(f"{proxy.url}/poll")
        seen.append(response.headers["x-cache"])
        why.append((response.status_code, response.headers["cache-status"]))
        time.sleep(1.5)
    assert seen[0] == "MISS" and "MISS" not in seen[1:], why
    assert origin.count("/poll") <= len(seen)


def test_refresh_ahead_obeys_the_same_bound(origin, proxy_factory, http):
    origin.route("/ahead", headers={"Cache-Control": "max-age=2"}, body="data")
    proxy = proxy_factory({"cache_refresh_window": "60", "cache_refresh_ahead": "1"})
    http.get(f"{proxy.url}/ahead")
    time.sleep(3.5)
    assert origin.count("/ahead") == 1


def test_continuous_mode_refreshes_at_every_expiry_within_the_window(origin, proxy_factory, http):
    origin.route("/c", headers={"Cache-Control": "max-age=1"}, body="data")
    proxy = proxy_factory({"cache_refresh_window": "60", "cache_refresh_mode": "continuous"})
    http.get(f"{proxy.url}/c")
    http.get(f"{proxy.url}/c")
    time.sleep(3.6)
    assert origin.count("/c") >= 3


def test_an_invalid_refresh_mode_stops_startup_naming_it(proxy_factory):
    code, output = proxy_factory.run_expecting_failure({"cache_refresh_mode": "sometimes"})
    assert code != 0
    assert "invalid value 'sometimes' for cache_refresh_mode" in output
    assert "expected on-request or continuous" in output
