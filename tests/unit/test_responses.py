"""responses.py: the responses the cache builds itself."""

import copy

from mitmproxy import http

from mitmcache import responses
from mitmcache.policy.cache_status import Status, XCache
from tests.support.entries import stored_entry

FIELDS = (
    (b"Content-Type", b"text/plain"),
    (b"Set-Cookie", b"a=1"),
    (b"set-cookie", b"b=2"),
    (b"ETag", b'"v1"'),
)


def test_headers_built_without_the_constructor_are_the_constructors():
    """``_headers`` skips ``Headers.__init__`` (a hit's hot path); the result must be the same object
    in every way mitmproxy and addons use one."""
    fast, slow = responses._headers(FIELDS), http.Headers(list(FIELDS))
    assert fast == slow
    assert bytes(fast) == bytes(slow)
    assert fast["content-type"] == slow["content-type"] == "text/plain"
    assert fast.get_all("SET-COOKIE") == slow.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert list(fast.items()) == list(slow.items())
    assert fast.get_state() == slow.get_state()
    assert copy.deepcopy(fast) == slow
    fast["x-added"] = "1"
    del fast["etag"]
    assert fast.fields[-1] == (b"x-added", b"1") and "etag" not in fast
    assert responses._headers(FIELDS) == slow  # the stored tuple itself was not changed


def test_responses_built_without_the_constructor_are_the_constructors():
    """``_response`` skips ``Response.__init__`` (a hit's hot path); the result must be the same
    response in every way mitmproxy and addons use one."""
    headers = responses._headers(FIELDS)
    fast = responses._response(200, b"OK", headers, b"hello", 12.5)
    slow = http.Response(b"HTTP/1.1", 200, b"OK", headers, b"hello", None, 12.5, 12.5)
    assert fast.get_state() == slow.get_state()
    assert fast.data == slow.data
    assert (fast.status_code, fast.reason, fast.http_version) == (200, "OK", "HTTP/1.1")
    assert fast.raw_content == b"hello" and fast.trailers is None and fast.stream is False
    assert copy.deepcopy(fast).get_state() == slow.get_state()


def test_the_fields_of_our_decision_are_remembered_per_whole_second_of_age():
    status = Status(XCache.HIT, hit=True, ttl=59)
    first = responses._status_fields(status, "mitmcache", 1.2)
    assert responses._status_fields(status, "mitmcache", 1.9) is first
    assert responses._status_fields(status, "mitmcache", 2.0)[-1] == (b"age", b"2")
    assert responses._status_fields(status, "other", 1.2)[1] == (b"cache-status", b"other; hit; ttl=59")
    assert responses._status_fields(status, "mitmcache", None) == first[:2]


def test_a_hit_carries_the_stored_fields_then_ours():
    entry = stored_entry("http://example/a", fields=FIELDS, body=b"hello", etag='"v1"', upstream_etag='"v1"')
    status = Status(XCache.HIT, hit=True, ttl=59)
    response = responses.from_entry(entry, head=False, age=1.4, status=status, cache_name="mitmcache")
    assert response.headers.fields == (
        *FIELDS,
        (b"x-cache", b"HIT"),
        (b"cache-status", b"mitmcache; hit; ttl=59"),
        (b"age", b"1"),
    )
    assert response.raw_content == b"hello"
    head = responses.from_entry(entry, head=True, age=1.4, status=status, cache_name="mitmcache")
    assert head.raw_content == b""
    not_modified = responses.not_modified(entry, age=1.4, status=status, cache_name="mitmcache")
    assert not_modified.status_code == 304
    assert [k for k, _ in not_modified.headers.fields] == [b"ETag", b"x-cache", b"cache-status", b"age"]


def forwarded(*fields: tuple[bytes, bytes]) -> http.Response:
    return http.Response(b"HTTP/1.1", 200, b"OK", http.Headers(list(fields)), b"x", None, 0.0, 0.0)


def test_a_forwarded_response_gets_our_x_cache_in_place_of_the_upstreams():
    response = forwarded((b"X-Cache", b"HIT from upstream-cdn"), (b"Content-Type", b"text/plain"))
    responses.add_status(response, Status(XCache.MISS, fwd="uri-miss"), "mitmcache")
    assert response.headers.get_all("x-cache") == ["MISS"]
    assert response.headers["content-type"] == "text/plain"


def test_a_forwarded_response_keeps_the_upstreams_cache_status_before_ours():
    response = forwarded((b"Cache-Status", b"origin-cache; hit"))
    responses.add_status(response, Status(XCache.MISS, fwd="uri-miss"), "mitmcache")
    assert response.headers.get_all("cache-status") == ["origin-cache; hit", "mitmcache; fwd=uri-miss"]


def test_a_forwarded_response_gets_the_etag_generated_for_it():
    response = forwarded((b"Content-Type", b"text/plain"))
    responses.add_status(response, Status(XCache.MISS, fwd="uri-miss"), "mitmcache", etag='"gen"')
    assert response.headers.get_all("etag") == ['"gen"']
