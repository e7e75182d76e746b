"""GET and HEAD requests with a body (issue 13 items 7 and 8): refused by default, since a body is
not part of the cache key; with CACHE_GET_BODY=pass streamed upstream, never looked up or stored."""

import json

from tests.e2e.test_caching import proxy_peak_rss_mb, proxy_rss_mb

UPLOAD = 64 * 1024 * 1024


def upload(size: int):
    return (b"g" * 65536 for _ in range(size // 65536))


def test_a_get_with_a_body_is_refused_with_a_json_400_and_never_reaches_the_upstream(
    origin, proxy_factory, http
):
    origin.route("/search", headers=[("Cache-Control", "max-age=60")], body="for everyone")
    proxy = proxy_factory()
    refused = http.request("GET", f"{proxy.url}/search", content=b'{"q": "mine"}')
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/json"
    assert "body" in refused.json()["detail"]
    assert refused.headers["x-cache"] == "BYPASS"
    assert "detail=request-body" in refused.headers["cache-status"]
    assert origin.count("/search") == 0
    assert http.get(f"{proxy.url}/search").text == "for everyone"


def test_a_refused_get_body_is_not_held_in_memory(origin, proxy_factory, http):
    proxy = proxy_factory()
    before = proxy_rss_mb(proxy)
    refused = http.request("GET", f"{proxy.url}/big-query", content=upload(UPLOAD))
    assert refused.status_code == 400
    assert proxy_peak_rss_mb(proxy) - before < 32
    assert origin.count() == 0


def test_a_head_with_a_body_is_refused_too(origin, proxy_factory, http):
    proxy = proxy_factory()
    refused = http.request("HEAD", f"{proxy.url}/x", content=b"body")
    assert refused.status_code == 400
    assert origin.count() == 0


def test_with_pass_a_get_body_reaches_the_upstream_and_its_answer_is_never_stored(
    origin, proxy_factory, http
):
    origin.route("/search", headers=[("Cache-Control", "max-age=60")], echo=True)
    proxy = proxy_factory({"cache_get_body": "pass"})
    first = http.request("GET", f"{proxy.url}/search", content=b"mine")
    again = http.request("GET", f"{proxy.url}/search", content=b"mine")
    plain = http.get(f"{proxy.url}/search")
    assert json.loads(first.content)["body_size"] == 4
    assert first.headers["x-cache"] == again.headers["x-cache"] == "BYPASS"
    assert plain.headers["x-cache"] == "MISS"  # not answered with what a body asked for
    assert json.loads(plain.content)["body_size"] == 0
    assert origin.count("/search") == 3


def test_with_pass_a_large_get_body_streams_upstream_without_growing_the_proxy(origin, proxy_factory, http):
    origin.route("/search", body="found")
    proxy = proxy_factory({"cache_get_body": "pass"})
    before = proxy_rss_mb(proxy)
    response = http.request("GET", f"{proxy.url}/search", content=upload(UPLOAD))
    assert response.text == "found"
    assert proxy_peak_rss_mb(proxy) - before < 32
    assert origin.requests("/search")[0]["body_size"] == UPLOAD
