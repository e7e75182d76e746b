"""The Cache-Status response field (RFC 9211) and targeted cache control (RFC 9213), end to end."""

import concurrent.futures

import pytest

from tests.e2e import conformance
from tests.e2e.conformance import cache_status, http_date

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

FRESH = [("Cache-Control", "max-age=3600"), ("ETag", '"a"')]
STALE = [("Cache-Control", "max-age=10"), ("Age", "20"), ("ETag", '"a"')]


# ---- RFC 9211 ----


def test_a_hit_says_hit_and_its_ttl(origin, rfc_proxy, http, path):
    """RFC 9211 §2.1: hit -- "the request was satisfied by the cache"; §2.5: ttl -- the response's
    remaining freshness lifetime."""
    origin.route(path, headers=FRESH, body="x")
    http.get(f"{rfc_proxy.url}{path}")
    member = cache_status(http.get(f"{rfc_proxy.url}{path}"))
    assert member.startswith("mitmcache; hit; ttl=")
    assert 3590 <= int(member.rsplit("ttl=", 1)[1]) <= 3600


def test_a_first_request_is_a_uri_miss_that_was_stored(origin, rfc_proxy, http, path):
    """RFC 9211 §2.2: fwd=uri-miss -- "the cache did not contain any responses that matched the
    request URI"; §2.3: fwd-status; §2.4: stored -- the response was stored."""
    origin.route(path, headers=FRESH, body="x")
    member = cache_status(http.get(f"{rfc_proxy.url}{path}"))
    assert member.startswith("mitmcache; fwd=uri-miss; fwd-status=200; stored; ttl=")


def test_another_variant_is_a_vary_miss(origin, rfc_proxy, http, path):
    """RFC 9211 §2.2: fwd=vary-miss -- a response matched the URI but not the request's header
    fields named by Vary."""
    origin.route(path, headers=[*FRESH, ("Vary", "Foo")], body="x")
    http.get(f"{rfc_proxy.url}{path}", headers={"Foo": "1"})
    assert "fwd=vary-miss" in cache_status(http.get(f"{rfc_proxy.url}{path}", headers={"Foo": "2"}))


def test_a_fresh_response_the_request_refused_is_fwd_request(origin, rfc_proxy, http, path):
    """RFC 9211 §2.2: fwd=request -- "the cache was able to select a fresh response for the request,
    but the request's semantics (e.g., Cache-Control request directives) did not allow its use"."""
    origin.route(path, sequence=[{"headers": FRESH, "body": "x"}, {"status": 304}])
    http.get(f"{rfc_proxy.url}{path}")
    member = cache_status(http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "no-cache"}))
    assert "fwd=request; fwd-status=304; stored" in member


def test_a_stale_response_that_was_validated_is_fwd_stale(origin, rfc_proxy, http, path):
    """RFC 9211 §2.2: fwd=stale -- "the cache was able to select a response for the request, but it
    was stale"; fwd-status is the status of the validation (304)."""
    origin.route(path, sequence=[{"headers": STALE, "body": "x"}, {"status": 304}])
    http.get(f"{rfc_proxy.url}{path}")
    assert "fwd=stale; fwd-status=304" in cache_status(http.get(f"{rfc_proxy.url}{path}"))


def test_an_unsafe_method_is_fwd_method(origin, rfc_proxy, http, path):
    """RFC 9211 §2.2: fwd=method -- "the request method's semantics require the request to be
    forwarded"."""
    origin.route(path, body="x")
    assert cache_status(http.post(f"{rfc_proxy.url}{path}", content=b"x")).startswith("mitmcache; fwd=method")


def test_a_request_the_cache_does_not_handle_is_fwd_bypass(origin, rfc_proxy, http, path):
    """RFC 9211 §2.2: fwd=bypass -- "the cache was configured to not handle this request": origin
    preconditions (If-Match, If-Unmodified-Since) are left to the origin."""
    origin.route(path, headers=FRESH, body="x")
    member = cache_status(http.get(f"{rfc_proxy.url}{path}", headers={"If-Match": '"a"'}))
    assert member.startswith("mitmcache; fwd=bypass")


def test_collapsed_requests_say_collapsed(origin, rfc_proxy, http, path):
    """RFC 9211 §2.6: collapsed -- the request was collapsed with another one."""
    origin.route(path, headers=FRESH, body="x", delay=0.3)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        members = [cache_status(r) for r in pool.map(lambda _: http.get(f"{rfc_proxy.url}{path}"), range(3))]
    assert any("collapsed" in member for member in members)


def test_why_a_response_was_not_stored_is_in_detail(origin, rfc_proxy, http, path):
    """RFC 9211 §2.8: detail -- "additional information not captured in other parameters"."""
    origin.route(path, headers=[("Cache-Control", "no-store")], body="x")
    assert cache_status(http.get(f"{rfc_proxy.url}{path}")).endswith("detail=no-store")


def test_an_upstream_cache_status_is_kept_and_ours_comes_last(origin, rfc_proxy, http, path):
    """RFC 9211 §2: "the list ... orders caches from the origin to the client": an upstream cache's
    member is kept, ours appended after it -- on the miss and on the hit."""
    origin.route(path, headers=[*FRESH, ("Cache-Status", "OriginCache; hit")], body="x")
    miss = http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    for response in (miss, hit):
        members = [m.strip() for line in response.headers.get_list("cache-status") for m in line.split(",")]
        assert members[0] == "OriginCache; hit"
        assert members[-1].startswith("mitmcache;")


# ---- RFC 9213 targeted cache control ----


def reused(origin, http, proxy, path, headers) -> bool:
    origin.route(path, headers=headers, body="x")
    http.get(f"{proxy.url}{path}")
    http.get(f"{proxy.url}{path}")
    return origin.count(path) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([("CDN-Cache-Control", "max-age=3600")], True, id="CDN max-age alone"),
        pytest.param([("CDN-Cache-Control", "max-age=99999999999")], True, id="huge max-age"),
        pytest.param(
            [("Cache-Control", "max-age=1"), ("Age", "5"), ("CDN-Cache-Control", "max-age=3600")],
            True,
            id="long CDN beats short CC",
        ),
        pytest.param(
            [("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "max-age=10"), ("Age", "20")],
            False,
            id="short CDN beats long CC",
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=3600")],
            True,
            id="beats CC no-store",
        ),
        pytest.param(
            [("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "no-store")], False, id="CDN no-store"
        ),
        pytest.param(
            [("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "private")], False, id="CDN private"
        ),
        pytest.param(
            [("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "no-cache")], False, id="CDN no-cache"
        ),
        pytest.param(
            [("CDN-Cache-Control", "max-age=0"), ("Expires", http_date(3600)), ("Date", http_date())],
            False,
            id="CDN max-age=0 beats Expires",
        ),
        pytest.param(
            [("CDN-Cache-Control", "max-age=3600"), ("Expires", "0")], True, id="CDN ignores Expires"
        ),
        pytest.param([("CDN-Cache-Control", "max-age=3600"), ("Age", "7200")], False, id="Age counts"),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", 'max-age="3600"')],
            False,
            id="wrong type: ignored",
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=3600, &&&")],
            False,
            id="invalid: ignored",
        ),
        pytest.param(
            [("Cache-Control", "max-age=1"), ("Age", "5"), ("CDN-Cache-Control", "max-age =100")],
            False,
            id="space before = is invalid",
        ),
    ],
)
def test_cdn_cache_control_replaces_cache_control(origin, rfc_proxy, http, path, headers, expected):
    """RFC 9213 §2.2: the first valid targeted field on the cache's list decides, and the cache
    "MUST ignore the Cache-Control and Expires header fields"; §2.1: an invalid one is ignored."""
    assert reused(origin, http, rfc_proxy, path, headers) is expected


def test_the_targeted_field_still_reaches_the_client(origin, rfc_proxy, http, path):
    """RFC 9213 §2.2: the field is used, not consumed: it is in the stored response clients get."""
    origin.route(
        path, headers=[("Cache-Control", "max-age=1"), ("CDN-Cache-Control", "max-age=3600")], body="x"
    )
    miss = http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert miss.headers["cdn-cache-control"] == hit.headers["cdn-cache-control"] == "max-age=3600"
    assert hit.headers["cache-control"] == "max-age=1"


def test_the_target_list_is_configurable_and_ordered(origin, proxy_factory, http, path):
    """RFC 9213 §2.2: a cache has a target list, in order of precedence
    (``cache_targeted_fields``)."""
    proxy = proxy_factory(
        {"cache_ttl": "0", "cache_targeted_fields": "Acme-Cache-Control, CDN-Cache-Control"}
    )
    origin.route(
        path,
        headers=[("CDN-Cache-Control", "no-store"), ("Acme-Cache-Control", "max-age=3600")],
        body="x",
    )
    http.get(f"{proxy.url}{path}")
    assert http.get(f"{proxy.url}{path}").headers["x-cache"] == "HIT"


def test_an_empty_target_list_ignores_targeted_fields(origin, proxy_factory, http, path):
    """With ``cache_targeted_fields`` empty the cache targets nothing: Cache-Control decides."""
    proxy = proxy_factory({"cache_ttl": "0", "cache_targeted_fields": ""})
    assert not reused(
        origin, http, proxy, path, [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=3600")]
    )
