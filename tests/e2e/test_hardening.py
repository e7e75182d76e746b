"""What a hostile client or a careless upstream must not do to the cache, through real proxies.

Each test here was an attack that worked once: a number too long for ``int()``, a quadratic
``If-None-Match``, an admin request that crashed and was then forwarded, a head that never ends,
a burst of connections. Each runs through both launchers (see conftest).
"""

import time

import pytest

HUGE = "9" * 5000  # more digits than Python's int() converts (sys.get_int_max_str_digits)


def _addon_errors(proxy) -> list[str]:
    return [line for line in proxy.log_text().splitlines() if "Addon error" in line or "Traceback" in line]


# -- numbers too long for int() (items 2 and 15) ---------------------------------------------------


def test_an_upstream_max_age_of_thousands_of_digits_is_stored_as_the_largest_lifetime(
    origin, proxy_factory, http
):
    origin.route("/huge-max-age", headers=[("Cache-Control", f"max-age={HUGE}")], body="long-lived")
    proxy = proxy_factory({"cache_upstream_timeout": 2})
    first = http.get(f"{proxy.url}/huge-max-age")
    started = time.monotonic()
    second = http.get(f"{proxy.url}/huge-max-age")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.headers["x-cache"] == "HIT"
    assert time.monotonic() - started < 1.5  # not a wait for a fetch that never resolves
    assert origin.count("/huge-max-age") == 1
    assert _addon_errors(proxy) == []


def test_an_upstream_age_of_thousands_of_digits_does_not_wedge_the_url(origin, proxy_factory, http):
    origin.route("/huge-age", headers=[("Cache-Control", "max-age=60"), ("Age", HUGE)], body="old")
    proxy = proxy_factory({"cache_upstream_timeout": 2})
    answers = [http.get(f"{proxy.url}/huge-age") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.text == "old" for a in answers)
    assert _addon_errors(proxy) == []


def test_a_request_cache_control_of_thousands_of_digits_is_honoured_not_a_traceback(
    origin, proxy_factory, http
):
    origin.route("/cc", headers=[("Cache-Control", "max-age=60")], body="cached")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/cc")
    hit = http.get(f"{proxy.url}/cc", headers={"Cache-Control": f"max-age={HUGE}, min-fresh=1"})
    assert hit.headers["x-cache"] == "HIT"
    assert origin.count("/cc") == 1
    assert _addon_errors(proxy) == []


def test_a_range_of_thousands_of_digits_is_answered_from_the_cache(origin, proxy_factory, http):
    origin.route("/r", headers=[("Cache-Control", "max-age=60")], body="0123456789")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/r")
    whole = http.get(f"{proxy.url}/r", headers={"Range": f"bytes=2-{HUGE}"})
    past_the_end = http.get(f"{proxy.url}/r", headers={"Range": f"bytes={HUGE}-"})
    assert (whole.status_code, whole.content) == (206, b"23456789")
    assert whole.headers["content-range"] == "bytes 2-9/10"
    assert past_the_end.status_code == 416
    assert origin.count("/r") == 1
    assert _addon_errors(proxy) == []


# -- Vary: only list fields are normalised as lists (item 14) ----------------------------------------


def test_a_trailing_comma_does_not_select_another_origins_variant(origin, proxy_factory, http):
    origin.route(
        "/cors",
        headers=[("Cache-Control", "max-age=60"), ("Vary", "Origin")],
        sequence=[{"body": "for app"}, {"body": "for the other one"}],
    )
    proxy = proxy_factory()
    real = http.get(f"{proxy.url}/cors", headers={"Origin": "https://app.example"})
    forged = http.get(f"{proxy.url}/cors", headers={"Origin": "https://app.example,"})
    assert real.text == "for app"
    assert forged.headers["x-cache"] == "MISS"
    assert forged.text == "for the other one"
    again = http.get(f"{proxy.url}/cors", headers={"Origin": "https://app.example"})
    assert (again.headers["x-cache"], again.text) == ("HIT", "for app")


def test_list_fields_still_share_a_variant_when_spelled_differently(origin, proxy_factory, http):
    origin.route("/lang", headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")], body="x")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/lang", headers={"Accept-Language": "en, fr"})
    same = http.get(f"{proxy.url}/lang", headers={"Accept-Language": "fr,EN"})
    assert same.headers["x-cache"] == "HIT"


# -- responses to Cookie requests and the default lifetime (item 12) ---------------------------------


def test_a_cookie_requests_page_without_freshness_is_not_served_to_others(origin, proxy_factory, http):
    origin.route("/account/x.css", sequence=[{"body": "alice's account"}, {"body": "anonymous"}])
    proxy = proxy_factory()
    victim = http.get(f"{proxy.url}/account/x.css", headers={"Cookie": "session=alice"})
    attacker = http.get(f"{proxy.url}/account/x.css")
    assert victim.text == "alice's account"
    assert "detail=cookie" in victim.headers["cache-status"]
    assert (attacker.headers["x-cache"], attacker.text) == ("MISS", "anonymous")
    assert origin.count("/account/x.css") == 2


def test_the_origins_max_age_still_makes_a_cookie_requests_response_shared(origin, proxy_factory, http):
    origin.route("/styles.css", headers=[("Cache-Control", "max-age=60")], body="body{}")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/styles.css", headers={"Cookie": "session=alice"})
    assert http.get(f"{proxy.url}/styles.css").headers["x-cache"] == "HIT"


def test_cookie_default_ttl_on_restores_the_default_lifetime_for_cookie_requests(origin, proxy_factory, http):
    origin.route("/page", body="page")
    proxy = proxy_factory({"cache_cookie_default_ttl": "on"})
    http.get(f"{proxy.url}/page", headers={"Cookie": "session=alice"})
    assert http.get(f"{proxy.url}/page").headers["x-cache"] == "HIT"


# -- settings that make no sense stop startup (item 21) ----------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"cache_max_bytes": "0"}, "CACHE_MAX_BYTES"),
        ({"cache_max_object_bytes": "0"}, "CACHE_MAX_OBJECT_BYTES"),
        ({"cache_upstream_timeout": "1e9"}, "REQ_TIMEOUT"),
        ({"cache_max_request_head_bytes": "10"}, "CACHE_MAX_REQUEST_HEAD_BYTES"),
        ({"cache_listen_backlog": "0"}, "CACHE_LISTEN_BACKLOG"),
    ],
)
def test_a_setting_that_would_disable_the_cache_or_makes_no_sense_stops_startup(
    proxy_factory, settings, named
):
    returncode, output = proxy_factory.run_expecting_failure(settings)
    assert returncode != 0
    assert named in output


@pytest.mark.parametrize(
    "upstream", ["not-a-url", "example.com:8080", "http://exa_mple..com", "ftp://x.example"]
)
def test_a_reverse_upstream_without_http_or_https_or_a_valid_host_stops_startup(proxy_factory, upstream):
    returncode, output = proxy_factory.run_expecting_failure(upstream=upstream)
    assert returncode != 0
    assert "expected http://host[:port] or https://host[:port]" in output
    assert f"reverse:{upstream}" in output
