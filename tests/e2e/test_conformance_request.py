"""Request Cache-Control directives and Pragma (RFC 9111 §5.2.1, §5.4), end to end in pure RFC mode."""

from tests.e2e import conformance
from tests.e2e.conformance import request_header

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

FRESH = [("Cache-Control", "max-age=3600"), ("ETag", '"a"')]
# Stale on arrival (Age beyond max-age) yet stored, since it can be validated.
STALE = [("Cache-Control", "max-age=10"), ("Age", "20"), ("ETag", '"a"')]


def store(origin, http, proxy, path, headers, **route):
    origin.route(path, headers=headers, body="stored", **route)
    http.get(f"{proxy.url}{path}")


def test_max_age_zero_revalidates_a_fresh_response(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.1: max-age=0: the client does not accept a response older than 0 seconds."""
    origin.route(
        path, sequence=[{"headers": FRESH, "body": "stored"}, {"status": 304, "headers": [("ETag", '"a"')]}]
    )
    http.get(f"{rfc_proxy.url}{path}")
    again = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "max-age=0"})
    assert (again.headers["x-cache"], again.text) == ("REVALIDATED", "stored")
    assert "fwd=request" in again.headers["cache-status"]


def test_max_age_refuses_a_response_older_than_it(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.1: a fresh response with Age 1800 is too old for max-age=600."""
    store(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600"), ("Age", "1800")])
    http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "max-age=600"})
    assert origin.count(path) == 2


def test_max_age_accepts_a_response_younger_than_it(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.1: a response younger than max-age may be reused."""
    store(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600"), ("Age", "100")])
    hit = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "max-age=600"})
    assert hit.headers["x-cache"] == "HIT"


def test_max_stale_accepts_a_stale_response(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.2: max-stale=N: "the client will accept a response that has exceeded its
    freshness lifetime by no more than the specified number of seconds"."""
    store(origin, http, rfc_proxy, path, STALE)
    stale = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "max-stale=1000"})
    assert (stale.headers["x-cache"], stale.text) == ("STALE", "stored")
    assert "detail=max-stale" in stale.headers["cache-status"]


def test_a_bare_max_stale_accepts_any_staleness(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.2: "If no value is assigned to max-stale, then the client will accept a stale
    response of any age"."""
    store(
        origin, http, rfc_proxy, path, [("Cache-Control", "max-age=10"), ("Age", "100000"), ("ETag", '"a"')]
    )
    assert (
        http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "max-stale"}).headers["x-cache"]
        == "STALE"
    )


def test_max_stale_does_not_stretch_further(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.2: staleness beyond max-stale: not reused without validation."""
    store(origin, http, rfc_proxy, path, STALE)
    http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "max-stale=5"})
    assert origin.count(path) == 2


def test_min_fresh_wants_freshness_left(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.3: min-fresh=N: the response must stay fresh for at least N more seconds."""
    store(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=1500")])
    http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "min-fresh=2000"})
    assert origin.count(path) == 2
    hit = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "min-fresh=100"})
    assert hit.headers["x-cache"] == "HIT"


def test_no_cache_validates_with_the_stored_etag(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.4: request no-cache: the cache "MUST NOT use a stored response to satisfy
    the request without successful validation on the origin server"."""
    origin.route(
        path, sequence=[{"headers": FRESH, "body": "stored"}, {"status": 304, "headers": [("ETag", '"a"')]}]
    )
    http.get(f"{rfc_proxy.url}{path}")
    again = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "no-cache"})
    assert (again.headers["x-cache"], again.text) == ("REVALIDATED", "stored")
    validation = origin.requests(path)[1]
    assert request_header(validation, "if-none-match") == '"a"'
    assert request_header(validation, "cache-control") == "no-cache"  # the client's request, passed on


def test_no_cache_validates_with_the_stored_last_modified(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.4, §4.3.1: without an ETag the Last-Modified date validates."""
    last_modified = "Wed, 01 Jan 2020 00:00:00 GMT"
    origin.route(
        path,
        sequence=[
            {
                "headers": [("Cache-Control", "max-age=3600"), ("Last-Modified", last_modified)],
                "body": "stored",
            },
            {"status": 304},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    again = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "no-cache"})
    assert again.text == "stored"
    assert request_header(origin.requests(path)[1], "if-modified-since") == last_modified


def test_no_store_keeps_the_response_out_of_the_cache(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.5: request no-store: "a cache MUST NOT store any part of either this request
    or any response to it"."""
    origin.route(path, headers=FRESH, body="x")
    http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "no-store"})
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] == "MISS"
    assert origin.count(path) == 2


def test_only_if_cached_gets_504_on_a_miss(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.7: only-if-cached: "respond using a stored response ... or respond with a 504
    (Gateway Timeout) status code"; the origin is not contacted."""
    origin.route(path, headers=FRESH, body="x")
    response = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "only-if-cached"})
    assert response.status_code == 504
    assert origin.count(path) == 0


def test_only_if_cached_is_answered_from_a_fresh_response(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.7: a stored response that may be used is used."""
    store(origin, http, rfc_proxy, path, FRESH)
    response = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "only-if-cached"})
    assert (response.status_code, response.text) == (200, "stored")


def test_only_if_cached_gets_504_when_the_stored_response_needs_validation(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.1.7: a stale response that may not be served stale cannot be used either."""
    store(origin, http, rfc_proxy, path, STALE)
    response = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "only-if-cached"})
    assert response.status_code == 504
    assert origin.count(path) == 1


def test_pragma_no_cache_counts_without_cache_control(origin, rfc_proxy, http, path):
    """RFC 9111 §5.4: Pragma: no-cache is the HTTP/1.0 no-cache, honoured when the request has no
    Cache-Control."""
    store(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600")])
    http.get(f"{rfc_proxy.url}{path}", headers={"Pragma": "no-cache"})
    assert origin.count(path) == 2


def test_pragma_is_ignored_when_cache_control_is_present(origin, rfc_proxy, http, path):
    """RFC 9111 §5.4: "When the Cache-Control header field is also present and understood in a
    request, Pragma is ignored"."""
    store(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600")])
    hit = http.get(f"{rfc_proxy.url}{path}", headers={"Pragma": "no-cache", "Cache-Control": "max-stale=10"})
    assert hit.headers["x-cache"] == "HIT"


def test_an_unknown_pragma_changes_nothing(origin, rfc_proxy, http, path):
    """RFC 9111 §5.4: only Pragma: no-cache has a meaning."""
    store(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600")])
    assert http.get(f"{rfc_proxy.url}{path}", headers={"Pragma": "x-ext"}).headers["x-cache"] == "HIT"


def test_request_stale_if_error_allows_stale_on_an_error(origin, rfc_proxy, http, path):
    """RFC 5861 §4: stale-if-error in a request: the client accepts a stale response when the
    origin answers with an error."""
    origin.route(path, sequence=[{"headers": STALE, "body": "stored"}, {"status": 500, "body": "broken"}])
    http.get(f"{rfc_proxy.url}{path}")
    answer = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "stale-if-error=3600"})
    assert (answer.status_code, answer.text, answer.headers["x-cache"]) == (200, "stored", "STALE")


def test_without_permission_the_origins_error_is_passed_on(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.4: "A cache MUST NOT generate a stale response unless it is disconnected or
    doing so is explicitly permitted": the origin's 500 reaches the client as it was."""
    origin.route(path, sequence=[{"headers": STALE, "body": "stored"}, {"status": 500, "body": "broken"}])
    http.get(f"{rfc_proxy.url}{path}")
    answer = http.get(f"{rfc_proxy.url}{path}")
    assert (answer.status_code, answer.text) == (500, "broken")
    assert "fwd=stale; fwd-status=500" in answer.headers["cache-status"]
