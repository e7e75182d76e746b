"""Storing responses (RFC 9111 §3), end to end in pure RFC mode."""

import httpx
import pytest

from tests.e2e import conformance

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

FRESH = [("Cache-Control", "max-age=3600")]


@pytest.mark.parametrize(
    "status",
    [
        200,
        203,
        204,
        299,
        300,
        301,
        302,
        303,
        307,
        308,
        400,
        404,
        405,
        410,
        414,
        499,
        500,
        501,
        502,
        503,
        504,
        599,
    ],
)
def test_any_final_status_with_explicit_freshness_is_stored(origin, rfc_proxy, http, path, status):
    """RFC 9111 §3: a final response may be stored if it "contains ... a max-age response
    directive" (among others), whatever its status code; the status is replayed as it was."""
    origin.route(path, status=status, headers=FRESH, body="" if status == 204 else "body")
    http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert (hit.status_code, hit.headers["x-cache"]) == (status, "HIT")
    assert origin.count(path) == 1


def test_a_204_from_cache_has_no_content_length(origin, rfc_proxy, http, path):
    """RFC 9110 §8.6: a 204 carries no Content-Length."""
    origin.route(path, status=204, headers=FRESH)
    http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert (hit.headers["x-cache"], "content-length" in hit.headers) == ("HIT", False)


def test_a_206_is_not_stored_as_a_complete_response(origin, rfc_proxy, http, path):
    """RFC 9111 §3.3: a partial response is not stored as if complete; the next full GET goes to
    the origin."""
    origin.route(path, status=206, headers=[*FRESH, ("Content-Range", "bytes 0-4/10")], body="01234")
    partial = http.get(f"{rfc_proxy.url}{path}", headers={"Range": "bytes=0-4"})
    full = http.get(f"{rfc_proxy.url}{path}")
    assert (partial.status_code, full.headers["x-cache"]) == (206, "MISS")
    assert origin.count(path) == 2


def test_a_response_to_head_is_not_stored_for_get(origin, rfc_proxy, http, path):
    """RFC 9111 §3: the cache stores responses to GET; a HEAD response has no content to reuse."""
    origin.route(path, headers=FRESH, body="body")
    http.head(f"{rfc_proxy.url}{path}")
    get = http.get(f"{rfc_proxy.url}{path}")
    assert (get.headers["x-cache"], get.text) == ("MISS", "body")


def test_a_response_to_post_is_not_stored(origin, rfc_proxy, http, path):
    """RFC 9111 §3 / RFC 9110 §9.3.3: a POST response is not reused for GET here."""
    origin.route(path, headers=FRESH, body="created")
    http.post(f"{rfc_proxy.url}{path}", content=b"x")
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] == "MISS"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_incomplete_response_is_not_stored(origin, rfc_proxy, http, path, chunked):
    """RFC 9111 §3.3: "A cache MUST NOT use an incomplete response to answer requests": the
    connection closed in the middle of the body, so nothing may be stored."""
    origin.route(
        path,
        headers=FRESH,
        chunked=chunked,
        sequence=[{"size": 20_000, "fail": "partial"}, {"size": 20_000}],
    )
    try:
        http.get(f"{rfc_proxy.url}{path}")
    except httpx.HTTPError:
        pass  # the client may well see the broken connection
    complete = http.get(f"{rfc_proxy.url}{path}")
    assert (complete.status_code, len(complete.content), complete.headers["x-cache"]) == (200, 20_000, "MISS")
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] == "HIT"


def test_connection_listed_and_hop_by_hop_fields_are_not_stored(origin, rfc_proxy, http, path):
    """RFC 9111 §3.1: the cache does not store "the Connection header field and header fields whose
    names are listed in it", nor the other hop-by-hop and proxy-specific fields."""
    origin.route(
        path,
        headers=[
            *FRESH,
            ("Connection", "a, b"),
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authentication-Info", "x"),
        ],
        body="x",
    )
    http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["c"] == "3"
    names = {name.lower() for name in hit.headers}
    assert not names & {
        "a",
        "b",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authentication-info",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Content-Type", "text/plain;charset=utf-8"),
        ("Content-Location", "/bar"),
        ("Content-Security-Policy", "default-src 'self'"),
        ("Clear-Site-Data", "cookies"),
        ("X-Frame-Options", "deny"),
        ("WWW-Authenticate", "Basic"),
        ("Strict-Transport-Security", "max-age=60"),
        ("Expires", "Fri, 01 Jan 2038 01:01:01 GMT"),
        ("ETag", '"abcdef"'),
    ],
)
def test_end_to_end_fields_are_stored(origin, rfc_proxy, http, path, name, value):
    """RFC 9111 §3.1: the cache stores the response's header fields, except the hop-by-hop ones."""
    origin.route(path, headers=[*FRESH, (name, value)], body="x")
    http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert (hit.headers["x-cache"], hit.headers[name]) == ("HIT", value)


def test_a_response_with_set_cookie_is_not_shared(origin, rfc_proxy, http, path):
    """A deliberate policy beyond RFC 9111 (§7.3 notes Set-Cookie does not inhibit caching):
    a response that sets a cookie is one user's, so a shared cache does not hand it to others."""
    origin.route(path, headers=[*FRESH, ("Set-Cookie", "a=b")], body="x")
    first = http.get(f"{rfc_proxy.url}{path}")
    http.get(f"{rfc_proxy.url}{path}")
    assert origin.count(path) == 2
    assert "detail=set-cookie" in first.headers["cache-status"]


def test_a_request_with_a_cookie_may_get_a_stored_response(origin, rfc_proxy, http, path):
    """RFC 9111 §3: Cookie in the request does not prevent reuse (the origin says Vary: Cookie when
    it matters)."""
    origin.route(path, headers=FRESH, body="x")
    http.get(f"{rfc_proxy.url}{path}")
    assert http.get(f"{rfc_proxy.url}{path}", headers={"Cookie": "a=b"}).headers["x-cache"] == "HIT"
