"""How long an expired copy is kept is policy's, not the refresh window's alone: a copy with
validators stays for revalidation (CACHE_KEEP_STALE_SECS), and in pure RFC 9111 mode one without
validators stays for as long as it may still stand in for an unreachable upstream, or be served
within a client's max-stale, or be freshened by a HEAD."""

import time


def header(request: dict, name: str) -> str | None:
    return next((v for k, v in request["headers"] if k.lower() == name), None)


def test_an_expired_entry_with_validators_is_revalidated_with_no_refresh_window(origin, proxy_factory, http):
    origin.route(
        "/doc",
        headers={"ETag": '"v1"', "Cache-Control": "max-age=1"},
        sequence=[{"body": "original"}, {"status": 304}],
    )
    proxy = proxy_factory({"cache_refresh_window": "0"})
    http.get(f"{proxy.url}/doc")
    time.sleep(1.6)
    again = http.get(f"{proxy.url}/doc")
    assert (again.status_code, again.headers["x-cache"], again.text) == (200, "REVALIDATED", "original")
    assert header(origin.requests("/doc")[1], "if-none-match") == '"v1"'


def test_keep_stale_zero_drops_an_expired_entry_with_validators(origin, proxy_factory, http):
    origin.route("/doc", headers={"ETag": '"v1"', "Cache-Control": "max-age=1"}, body="original")
    proxy = proxy_factory(
        {"cache_ttl": "0", "cache_refresh_window": "0", "cache_keep_stale": "0", "cache_stale_if_error": "0"}
    )
    http.get(f"{proxy.url}/doc")
    time.sleep(1.6)
    assert http.get(f"{proxy.url}/doc").headers["x-cache"] == "MISS"
    assert header(origin.requests("/doc")[1], "if-none-match") is None


def test_pure_rfc_mode_serves_a_stale_copy_when_the_upstream_closes_the_connection(
    origin, proxy_factory, http
):
    origin.route("/p", headers={"Cache-Control": "max-age=1"}, sequence=[{"body": "kept"}, {"fail": "close"}])
    proxy = proxy_factory({"cache_ttl": "0"})
    http.get(f"{proxy.url}/p")
    time.sleep(1.6)
    stale = http.get(f"{proxy.url}/p")
    assert (stale.status_code, stale.headers["x-cache"], stale.text) == (200, "STALE", "kept")


def test_pure_rfc_mode_honours_max_stale_after_expiry(origin, proxy_factory, http):
    origin.route("/p", headers={"Cache-Control": "max-age=1"}, body="kept")
    proxy = proxy_factory({"cache_ttl": "0"})
    http.get(f"{proxy.url}/p")
    time.sleep(1.6)
    stale = http.get(f"{proxy.url}/p", headers={"Cache-Control": "max-stale=30"})
    assert (stale.headers["x-cache"], stale.text) == ("STALE", "kept")


def test_pure_rfc_mode_freshens_an_expired_entry_by_head(origin, proxy_factory, http):
    origin.route("/p", headers={"Cache-Control": "max-age=1"}, body="kept")
    proxy = proxy_factory({"cache_ttl": "0"})
    http.get(f"{proxy.url}/p")
    time.sleep(1.6)
    http.head(f"{proxy.url}/p")  # RFC 9111 §4.3.5: its 200 freshens the stored GET response
    fresh = http.get(f"{proxy.url}/p")
    assert (fresh.headers["x-cache"], fresh.text) == ("HIT", "kept")
    assert origin.count("/p", method="GET") == 1
