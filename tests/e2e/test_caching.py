"""The core cache, end to end: a real mitmdump with our addon in front of a real origin."""

import gzip
import hashlib
import re
import time
from pathlib import Path

import httpx

from tests.support.harness import Origin, pattern_sha256

BINARY = bytes(range(256)) * 8


def proxy_rss_mb(proxy) -> float:
    return _status_kb(proxy.pid, "VmRSS") / 1024


def proxy_peak_rss_mb(proxy) -> float:
    return _status_kb(proxy.pid, "VmHWM") / 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def test_second_get_is_served_from_cache_without_reaching_upstream(origin, proxy_factory, http):
    origin.route("/a", headers=[("Cache-Control", "max-age=60")], body="hello")
    proxy = proxy_factory()
    first = http.get(f"{proxy.url}/a")
    second = http.get(f"{proxy.url}/a")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.text == "hello"
    assert origin.count("/a") == 1


def test_every_response_says_what_the_cache_did(origin, proxy_factory, http):
    origin.route("/a", headers=[("Cache-Control", "max-age=60")], body="hello")
    proxy = proxy_factory()
    miss = http.get(f"{proxy.url}/a")
    hit = http.get(f"{proxy.url}/a")
    # ttl counts the age the response had on arrival (RFC 9111 §4.2.3): 60 s less under a second.
    assert (
        miss.headers["cache-status"].rsplit("=", 1)[0]
        == "mitmcache; fwd=uri-miss; fwd-status=200; stored; ttl"
    )
    assert int(miss.headers["cache-status"].rsplit("=", 1)[1]) in (59, 60)
    assert hit.headers["cache-status"].startswith("mitmcache; hit; ttl=")
    assert int(hit.headers["age"]) >= 0


def test_query_parameter_order_does_not_matter(origin, proxy_factory, http):
    origin.route("/items", headers=[("Cache-Control", "max-age=60")], body="items")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/items?b=2&a=1")
    again = http.get(f"{proxy.url}/items?a=1&b=2")
    assert again.headers["x-cache"] == "HIT"
    assert origin.count("/items") == 1


def test_repeated_query_names_keep_their_order_in_the_key(origin, proxy_factory, http):
    origin.route("/tags", headers=[("Cache-Control", "max-age=60")], body="tags")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/tags?t=x&t=y")
    other = http.get(f"{proxy.url}/tags?t=y&t=x")
    assert other.headers["x-cache"] == "MISS"


def test_upstream_etag_is_kept_and_if_none_match_gets_304(origin, proxy_factory, http):
    origin.route("/e", headers=[("Cache-Control", "max-age=60"), ("ETag", '"v1"')], body="body")
    proxy = proxy_factory()
    assert http.get(f"{proxy.url}/e").headers["etag"] == '"v1"'
    conditional = http.get(f"{proxy.url}/e", headers={"If-None-Match": 'W/"v0", W/"v1"'})
    assert conditional.status_code == 304
    assert conditional.content == b""
    assert conditional.headers["etag"] == '"v1"'
    assert conditional.headers["cache-control"] == "max-age=60"


def test_a_generated_etag_validates_too(origin, proxy_factory, http):
    origin.route("/g", headers=[("Cache-Control", "max-age=60")], body="no etag upstream")
    proxy = proxy_factory()
    etag = http.get(f"{proxy.url}/g").headers["etag"]
    assert etag.startswith('"')
    assert http.get(f"{proxy.url}/g", headers={"If-None-Match": etag}).status_code == 304
    assert http.get(f"{proxy.url}/g", headers={"If-None-Match": '"other"'}).status_code == 200


def test_a_conditional_first_request_is_answered_after_the_fetch(origin, proxy_factory, http):
    origin.route("/c", headers=[("Cache-Control", "max-age=60"), ("ETag", '"v1"')], body="x")
    proxy = proxy_factory()
    response = http.get(f"{proxy.url}/c", headers={"If-None-Match": '"v1"'})
    assert response.status_code == 304
    assert origin.requests("/c")[0]["headers"] == [
        pair for pair in origin.requests("/c")[0]["headers"] if pair[0].lower() != "if-none-match"
    ]
    assert http.get(f"{proxy.url}/c").headers["x-cache"] == "HIT"


def test_if_modified_since_gets_304(origin, proxy_factory, http):
    origin.route(
        "/m",
        headers=[("Cache-Control", "max-age=60"), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")],
        body="m",
    )
    proxy = proxy_factory()
    http.get(f"{proxy.url}/m")
    later = http.get(f"{proxy.url}/m", headers={"If-Modified-Since": "Mon, 07 Nov 1994 00:00:00 GMT"})
    earlier = http.get(f"{proxy.url}/m", headers={"If-Modified-Since": "Sat, 05 Nov 1994 00:00:00 GMT"})
    assert (later.status_code, earlier.status_code) == (304, 200)


def test_malformed_conditional_headers_are_ignored(origin, proxy_factory, http):
    origin.route("/bad", headers=[("Cache-Control", "max-age=60")], body="fine")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/bad")
    for header, value in [("If-None-Match", 'W/"unterminated'), ("If-Modified-Since", "yesterday")]:
        response = http.get(f"{proxy.url}/bad", headers={header: value})
        assert (response.status_code, response.text) == (200, "fine")


def test_head_is_answered_from_the_cached_get(origin, proxy_factory, http):
    origin.route("/h", headers=[("Cache-Control", "max-age=60")], body="0123456789")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/h")
    head = http.head(f"{proxy.url}/h")
    assert head.headers["x-cache"] == "HIT"
    assert head.headers["content-length"] == "10"
    assert head.content == b""
    assert origin.count("/h") == 1


def test_binary_bodies_are_replayed_byte_exact(origin, proxy_factory, http):
    origin.route(
        "/bin", headers=[("Cache-Control", "max-age=60"), ("Content-Type", "image/png")], body=BINARY
    )
    proxy = proxy_factory()
    http.get(f"{proxy.url}/bin")
    hit = http.get(f"{proxy.url}/bin")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.content == BINARY


def test_gzip_bodies_are_stored_encoded_and_replayed_byte_exact(origin, proxy_factory):
    compressed = gzip.compress(b"squeeze me " * 500)
    origin.route(
        "/gz",
        headers=[("Cache-Control", "max-age=60"), ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")],
        body=compressed,
    )
    proxy = proxy_factory()
    with httpx.Client(timeout=10, trust_env=False, headers={"Accept-Encoding": "gzip"}) as client:
        client.get(f"{proxy.url}/gz")
        with client.stream("GET", f"{proxy.url}/gz") as hit:
            raw = b"".join(hit.iter_raw())
    assert hit.headers["x-cache"] == "HIT"
    assert raw == compressed


def test_a_client_that_accepts_no_gzip_never_gets_the_gzip_variant(origin, proxy_factory):
    origin.route(
        "/gz",
        headers=[("Cache-Control", "max-age=60"), ("Content-Encoding", "gzip")],
        body=gzip.compress(b"x"),
    )
    proxy = proxy_factory()
    with httpx.Client(timeout=10, trust_env=False, headers={"Accept-Encoding": "gzip"}) as client:
        client.get(f"{proxy.url}/gz")
    with httpx.Client(timeout=10, trust_env=False, headers={"Accept-Encoding": "identity"}) as client:
        other = client.get(f"{proxy.url}/gz")
    assert other.headers["x-cache"] == "MISS"
    assert other.headers["cache-status"].startswith("mitmcache; fwd=vary-miss")


def test_vary_keeps_one_variant_per_request_header_value(origin, proxy_factory, http):
    origin.route("/v", headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")], echo=True)
    proxy = proxy_factory()
    english = http.get(f"{proxy.url}/v", headers={"Accept-Language": "en"})
    french = http.get(f"{proxy.url}/v", headers={"Accept-Language": "fr"})
    english_again = http.get(f"{proxy.url}/v", headers={"Accept-Language": "en"})
    assert (english.headers["x-cache"], french.headers["x-cache"]) == ("MISS", "MISS")
    assert english_again.headers["x-cache"] == "HIT"
    assert english_again.content == english.content


def test_a_404_is_cached_and_replayed_as_404(origin, proxy_factory, http):
    origin.route("/gone", status=404, body="not here")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/gone")
    hit = http.get(f"{proxy.url}/gone")
    assert (hit.status_code, hit.headers["x-cache"], hit.text) == (404, "HIT", "not here")


def test_a_status_that_is_not_cacheable_by_default_is_not_stored(origin, proxy_factory, http):
    origin.route("/err", status=500, body="boom")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/err")
    again = http.get(f"{proxy.url}/err")
    assert again.status_code == 500
    assert origin.count("/err") == 2


def test_no_store_private_and_set_cookie_are_not_stored(origin, proxy_factory, http):
    origin.route("/ns", headers=[("Cache-Control", "no-store")], body="a")
    origin.route("/pr", headers=[("Cache-Control", "private, max-age=60")], body="b")
    origin.route("/sc", headers=[("Cache-Control", "max-age=60"), ("Set-Cookie", "id=1")], body="c")
    proxy = proxy_factory()
    for path, reason in [("/ns", "no-store"), ("/pr", "private"), ("/sc", "set-cookie")]:
        first = http.get(f"{proxy.url}{path}")
        http.get(f"{proxy.url}{path}")
        assert origin.count(path) == 2, path
        assert f"detail={reason}" in first.headers["cache-status"]


def test_a_request_with_authorization_is_not_shared(origin, proxy_factory, http):
    origin.route("/me", headers=[("Cache-Control", "max-age=60")], body="mine")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/me", headers={"Authorization": "Bearer alice"})
    http.get(f"{proxy.url}/me", headers={"Authorization": "Bearer bob"})
    assert origin.count("/me") == 2


def test_repeated_header_values_are_all_kept(origin, proxy_factory, http):
    origin.route("/l", headers=[("Cache-Control", "max-age=60"), ("Link", "<a>"), ("Link", "<b>")], body="l")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/l")
    hit = http.get(f"{proxy.url}/l")
    assert hit.headers.get_list("link") == ["<a>", "<b>"]


def test_hop_by_hop_headers_are_not_stored(origin, proxy_factory, http):
    origin.route(
        "/hop",
        headers=[
            ("Cache-Control", "max-age=60"),
            ("Connection", "X-Secret"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
        ],
        body="hop",
    )
    proxy = proxy_factory()
    http.get(f"{proxy.url}/hop")
    hit = http.get(f"{proxy.url}/hop")
    assert "x-secret" not in hit.headers
    assert "keep-alive" not in hit.headers


def test_chunked_responses_are_stored_and_replayed(origin, proxy_factory, http):
    origin.route("/chunky", headers=[("Cache-Control", "max-age=60")], size=100_000, chunked=True)
    proxy = proxy_factory()
    first = http.get(f"{proxy.url}/chunky")
    hit = http.get(f"{proxy.url}/chunky")
    assert hit.headers["x-cache"] == "HIT"
    assert hashlib.sha256(first.content).hexdigest() == hashlib.sha256(hit.content).hexdigest()
    assert hashlib.sha256(hit.content).hexdigest() == pattern_sha256(100_000)


def test_a_chunked_response_is_stored_without_the_cache_status_it_was_sent_with(origin, proxy_factory, http):
    """A streamed miss is stamped before its body arrives; the stored copy must not keep that stamp."""
    origin.route("/chunky", headers=[("Cache-Control", "max-age=60")], size=1000, chunked=True)
    proxy = proxy_factory()
    http.get(f"{proxy.url}/chunky")
    hit = http.get(f"{proxy.url}/chunky")
    (status,) = hit.headers.get_list("cache-status")
    assert re.fullmatch(r"mitmcache; hit; ttl=5[7-9]", status)  # a second or two late on a slow machine


def test_a_successful_post_invalidates_the_cached_url(origin, proxy_factory, http):
    origin.route("/doc", headers=[("Cache-Control", "max-age=60")], body="v1")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/doc")
    post = http.post(f"{proxy.url}/doc", content=b"change")
    after = http.get(f"{proxy.url}/doc")
    assert post.headers["x-cache"] == "BYPASS"
    assert after.headers["x-cache"] == "MISS"
    assert origin.count("/doc", "GET") == 2


def test_a_failed_post_does_not_invalidate(origin, proxy_factory, http):
    origin.route("/doc", headers=[("Cache-Control", "max-age=60")], body="v1")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/doc")
    origin.route("/doc", status=500, body="nope")
    http.post(f"{proxy.url}/doc", content=b"change")
    assert http.get(f"{proxy.url}/doc").headers["x-cache"] == "HIT"


def test_entries_expire_after_the_configured_lifetime(origin, proxy_factory, http):
    origin.route("/t", body="no freshness from upstream")
    proxy = proxy_factory({"cache_ttl": "1", "cache_refresh_window": "0"})
    http.get(f"{proxy.url}/t")
    assert http.get(f"{proxy.url}/t").headers["x-cache"] == "HIT"
    time.sleep(1.6)
    assert http.get(f"{proxy.url}/t").headers["x-cache"] == "MISS"
    assert origin.count("/t") == 2


def test_with_a_zero_lifetime_nothing_is_reused_without_explicit_freshness(origin, proxy_factory, http):
    origin.route("/plain", body="plain")
    origin.route("/fresh", headers=[("Cache-Control", "max-age=60")], body="fresh")
    proxy = proxy_factory({"cache_ttl": "0"})
    for path in ("/plain", "/fresh"):
        http.get(f"{proxy.url}{path}")
        http.get(f"{proxy.url}{path}")
    assert (origin.count("/plain"), origin.count("/fresh")) == (2, 1)


def test_override_mode_applies_the_configured_lifetime_to_everything(origin, proxy_factory, http):
    origin.route("/short", headers=[("Cache-Control", "max-age=0")], body="s")
    proxy = proxy_factory({"cache_ttl": "60", "cache_ttl_mode": "override"})
    http.get(f"{proxy.url}/short")
    hit = http.get(f"{proxy.url}/short")
    assert hit.headers["x-cache"] == "HIT"
    assert "detail=lifetime-override" in hit.headers["cache-status"]


def test_a_large_body_is_streamed_through_and_not_stored(origin, proxy_factory, http):
    size = 3 * 1024 * 1024
    origin.route("/big", headers=[("Cache-Control", "max-age=60")], size=size)
    proxy = proxy_factory({"cache_max_object_bytes": "1MB"})
    digest = hashlib.sha256()
    with http.stream("GET", f"{proxy.url}/big") as response:
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == pattern_sha256(size)
    assert "detail=too-large" in response.headers["cache-status"]
    http.get(f"{proxy.url}/big")
    assert origin.count("/big") == 2


def test_a_body_of_unknown_length_past_the_limit_is_streamed_and_not_stored(origin, proxy_factory, http):
    size = 2 * 1024 * 1024
    origin.route("/bigc", headers=[("Cache-Control", "max-age=60")], size=size, chunked=True)
    proxy = proxy_factory({"cache_max_object_bytes": "1MB"})
    first = http.get(f"{proxy.url}/bigc")
    second = http.get(f"{proxy.url}/bigc")
    assert hashlib.sha256(first.content).hexdigest() == pattern_sha256(size)
    assert second.headers["x-cache"] == "MISS"
    assert origin.count("/bigc") == 2


def test_a_large_response_to_a_post_streams_through_without_growing_the_proxy(origin, proxy_factory, http):
    """Nothing of a POST's response is stored, so a large one must stream, not sit in memory."""
    size = 64 * 1024 * 1024
    origin.route("/export", size=size)
    proxy = proxy_factory({"cache_max_object_bytes": "1MB"})
    before = proxy_rss_mb(proxy)
    digest = hashlib.sha256()
    with http.stream("POST", f"{proxy.url}/export", content=b"query") as response:
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == pattern_sha256(size)
    assert response.headers["x-cache"] == "BYPASS"
    assert proxy_peak_rss_mb(proxy) - before < 32


def test_a_large_upload_streams_upstream(origin, proxy_factory, http):
    size = 8 * 1024 * 1024
    origin.route("/upload", body="received")
    proxy = proxy_factory({"cache_max_object_bytes": "1MB"})
    response = http.post(f"{proxy.url}/upload", content=(b"u" * 65536 for _ in range(size // 65536)))
    assert (response.status_code, response.text) == (200, "received")
    assert origin.requests("/upload")[0]["body_size"] == size


def test_an_options_request_passes_by_and_says_so(origin, proxy_factory, http):
    origin.route("/opt", headers=[("Allow", "GET, OPTIONS")])
    proxy = proxy_factory()
    response = http.options(f"{proxy.url}/opt")
    assert response.headers["x-cache"] == "BYPASS"
    assert "fwd=method" in response.headers["cache-status"]


def test_the_least_recently_used_entry_is_evicted_at_the_entry_bound(origin, proxy_factory, http):
    for name in "abc":
        origin.route(f"/{name}", headers=[("Cache-Control", "max-age=60")], body=name)
    proxy = proxy_factory({"cache_max_entries": "2"})
    http.get(f"{proxy.url}/a")
    http.get(f"{proxy.url}/b")
    http.get(f"{proxy.url}/a")  # a is now the most recently used
    http.get(f"{proxy.url}/c")  # evicts b
    assert http.get(f"{proxy.url}/a").headers["x-cache"] == "HIT"
    assert http.get(f"{proxy.url}/b").headers["x-cache"] == "MISS"


def test_hits_are_served_while_the_upstream_is_down(proxy_factory, http, tmp_path):
    with Origin(workdir=tmp_path) as own_origin:
        own_origin.route("/up", headers=[("Cache-Control", "max-age=60")], body="still here")
        proxy = proxy_factory(upstream=own_origin)
        http.get(f"{proxy.url}/up")
    hit = http.get(f"{proxy.url}/up")
    assert (hit.status_code, hit.text) == (200, "still here")
