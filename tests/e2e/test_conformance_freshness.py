"""Freshness (RFC 9111 §4.2), end to end through a pure RFC 9111 proxy (``cache_ttl=0``).

"Reused" means the second request was answered from the cache (the origin saw one request);
"not reused" that it reached the origin again.
"""

import time

import pytest

from tests.e2e import conformance
from tests.e2e.conformance import cache_status, http_date

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

HOUR = 3600


def reused(origin, http, proxy, path, headers, *, status=200) -> bool:
    origin.route(path, status=status, headers=headers, body="body")
    first = http.get(f"{proxy.url}{path}")
    second = http.get(f"{proxy.url}{path}")
    assert first.status_code == second.status_code == status
    return origin.count(path) == 1


def test_max_age_makes_a_response_reusable(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.1: max-age gives the freshness lifetime."""
    assert reused(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600")])


def test_a_response_without_freshness_information_is_not_reused(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.2 / pure RFC mode: no explicit lifetime and no Last-Modified: nothing to base a
    lifetime on, so the response is not reused."""
    assert not reused(origin, http, rfc_proxy, path, [])


def test_s_maxage_beats_a_longer_max_age(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.1, §5.2.2.10: a shared cache uses s-maxage before max-age (Age 20 makes the
    response stale by s-maxage=10, fresh by max-age=3600)."""
    headers = [("Cache-Control", "max-age=3600, s-maxage=10"), ("Age", "20")]
    assert not reused(origin, http, rfc_proxy, path, headers)


def test_s_maxage_beats_a_shorter_max_age(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.1, §5.2.2.10: s-maxage=3600 keeps fresh what max-age=1 would not."""
    headers = [("Cache-Control", "max-age=1, s-maxage=3600"), ("Age", "20")]
    assert reused(origin, http, rfc_proxy, path, headers)


def test_s_maxage_from_another_field_line_still_wins(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2: field lines of Cache-Control combine; s-maxage still comes first (§4.2.1)."""
    headers = [("Cache-Control", "max-age=3600"), ("Cache-Control", "s-maxage=10"), ("Age", "20")]
    assert not reused(origin, http, rfc_proxy, path, headers)


def test_max_age_beats_a_past_expires(origin, rfc_proxy, http, path):
    """RFC 9111 §5.3: "If a response includes a Cache-Control header field with the max-age
    directive, a recipient MUST ignore the Expires header field"."""
    headers = [("Cache-Control", "max-age=3600"), ("Expires", http_date(-HOUR)), ("Date", http_date())]
    assert reused(origin, http, rfc_proxy, path, headers)


def test_max_age_beats_an_invalid_expires(origin, rfc_proxy, http, path):
    """RFC 9111 §5.3: Expires, even an invalid one, is ignored when max-age is present."""
    headers = [("Cache-Control", "max-age=3600"), ("Expires", "0"), ("Date", http_date())]
    assert reused(origin, http, rfc_proxy, path, headers)


def test_max_age_zero_beats_a_future_expires(origin, rfc_proxy, http, path):
    """RFC 9111 §5.3, §5.2.2.1: max-age=0 makes the response stale whatever Expires says."""
    headers = [("Cache-Control", "max-age=0"), ("Expires", http_date(HOUR)), ("Date", http_date())]
    assert not reused(origin, http, rfc_proxy, path, headers)


def test_expires_minus_date_is_the_lifetime(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.1: freshness_lifetime = expires_value - date_value."""
    assert reused(origin, http, rfc_proxy, path, [("Expires", http_date(HOUR)), ("Date", http_date())])


def test_an_expires_in_the_past_is_not_reused(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.1: an Expires before Date gives no freshness."""
    headers = [("Expires", http_date(300)), ("Date", http_date(400))]
    assert not reused(origin, http, rfc_proxy, path, headers)


@pytest.mark.parametrize(
    "expires",
    [
        "0",
        "-1",
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
    ],
    ids=["zero", "negative", "UTC", "two-digit year", "one-digit hour"],
)
def test_an_invalid_expires_means_already_expired(origin, rfc_proxy, http, path, expires):
    """RFC 9111 §5.3: "A cache recipient MUST interpret invalid date formats, especially the value
    '0', as representing a time in the past (i.e., 'already expired')"."""
    assert not reused(origin, http, rfc_proxy, path, [("Expires", expires), ("Date", http_date())])


@pytest.mark.parametrize(
    "expires",
    ["Thursday, 18-Aug-50 02:01:18 GMT", "Thu Aug  8 02:01:18 2050", "THU, 18 AUG 2050 02:01:18 gmt"],
)
def test_obsolete_date_formats_are_understood(origin, rfc_proxy, http, path, expires):
    """RFC 9110 §5.6.7: "A recipient ... MUST accept all three HTTP-date formats"."""
    assert reused(origin, http, rfc_proxy, path, [("Expires", expires), ("Date", http_date())])


def test_expires_counts_from_receipt_when_date_is_invalid(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.1 with RFC 9110 §6.6.1: an invalid Date is replaced by the time of receipt."""
    origin.route(path, headers=[("Date", "foo"), ("Expires", http_date(HOUR))], body="x")
    http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers.get_list("date") != ["foo"]


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        ("max-age=-3600", False),
        ('max-age="3600"', True),
        ("max-age='3600'", False),
        ("max-age=3600.0", False),
        ("max-age=3600a", False),
        ("max-age=003600", True),
        ("max-age=2147483648", True),
        ("max-age=99999999999", True),
        ("max-age =3600", False),
        ("max-age= 3600", False),
        ('extension="max-age=3600", max-age=0', False),
        ("max-age=3600, max-age=0", True),
        ("max-age=0, max-age=3600", False),
    ],
)
def test_max_age_values(origin, rfc_proxy, http, path, cache_control, expected):
    """RFC 9111 §1.2.2: delta-seconds is 1*DIGIT, capped at 2147483648; quoted is tolerated;
    §4.2.1: an invalid value means stale, and of duplicates the first counts; §5.2: no whitespace
    around "=", and a directive inside a quoted string is none."""
    assert reused(origin, http, rfc_proxy, path, [("Cache-Control", cache_control)]) is expected


def test_an_upstream_age_older_than_max_age_is_stale(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.3: the Age field value counts in the current age."""
    headers = [("Cache-Control", "max-age=3600"), ("Age", "7200"), ("Date", http_date())]
    assert not reused(origin, http, rfc_proxy, path, headers)


def test_an_upstream_age_within_max_age_is_fresh_and_counted(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.3, §5.1: the Age sent on reuse includes the upstream's Age."""
    origin.route(path, headers=[("Cache-Control", "max-age=3600"), ("Age", "30")], body="x")
    http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert hit.headers["x-cache"] == "HIT"
    assert int(hit.headers["age"]) >= 30


def test_an_old_date_counts_in_the_age(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.3: apparent_age = max(0, response_time - date_value)."""
    headers = [("Cache-Control", "max-age=3600"), ("Date", http_date(-7200))]
    assert not reused(origin, http, rfc_proxy, path, headers)


def test_a_response_becomes_stale_when_its_lifetime_is_over(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2: fresh while freshness_lifetime > current_age; then not reused unvalidated."""
    origin.route(path, headers=[("Cache-Control", "max-age=1")], body="x")
    http.get(f"{rfc_proxy.url}{path}")
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] == "HIT"
    time.sleep(1.1)
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] != "HIT"
    assert origin.count(path) == 2


# ---- heuristic freshness (§4.2.2) ----


@pytest.mark.parametrize("status", [200, 203, 204, 404, 405, 410, 414, 501])
def test_heuristic_freshness_for_heuristically_cacheable_statuses(origin, rfc_proxy, http, path, status):
    """RFC 9111 §4.2.2: with Last-Modified and no explicit lifetime, a heuristically cacheable
    response is fresh for a fraction (10%) of the time since it was last modified."""
    headers = [("Last-Modified", http_date(-86_400)), ("Date", http_date())]
    assert reused(origin, http, rfc_proxy, path, headers, status=status)


@pytest.mark.parametrize("status", [201, 202, 403, 502, 503, 504, 599])
def test_no_heuristic_freshness_for_other_statuses(origin, rfc_proxy, http, path, status):
    """RFC 9111 §4.2.2, RFC 9110 §15.1: only heuristically cacheable statuses get a heuristic."""
    headers = [("Last-Modified", http_date(-86_400)), ("Date", http_date())]
    assert not reused(origin, http, rfc_proxy, path, headers, status=status)


def test_public_allows_heuristic_freshness_for_any_status(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.9: public makes even an unknown status cacheable with heuristic freshness."""
    headers = [("Cache-Control", "public"), ("Last-Modified", http_date(-86_400)), ("Date", http_date())]
    assert reused(origin, http, rfc_proxy, path, headers, status=599)


def test_the_heuristic_lifetime_shows_in_cache_status(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.2 (10% of one day: 8640 s), reported as Cache-Status ttl (RFC 9211 §2.5)."""
    origin.route(path, headers=[("Last-Modified", http_date(-86_400)), ("Date", http_date())], body="x")
    first = http.get(f"{rfc_proxy.url}{path}")
    assert 8630 <= int(cache_status(first).rsplit("ttl=", 1)[1]) <= 8640


def test_the_heuristic_can_be_switched_off(origin, proxy_factory, http, path):
    """``cache_heuristic_percent=0``: no heuristic; the response is stored (it has a validator) but
    revalidated on every use (RFC 9111 §4.3)."""
    proxy = proxy_factory({"cache_ttl": "0", "cache_heuristic_percent": "0"})
    origin.route(path, headers=[("Last-Modified", http_date(-86_400)), ("Date", http_date())], body="x")
    http.get(f"{proxy.url}{path}")
    second = http.get(f"{proxy.url}{path}")
    assert origin.count(path) == 2
    assert request_if_modified_since(origin, path)
    assert second.headers["x-cache"] != "HIT"


def test_with_a_configured_lifetime_that_lifetime_is_the_fallback(origin, proxy_factory, http, path):
    """With ``cache_ttl`` set (the seed's mode) the configured lifetime, not the heuristic, applies:
    a Last-Modified 10 s ago would give 1 s, yet the response stays fresh for cache_ttl."""
    proxy = proxy_factory({"cache_ttl": "60"})
    origin.route(path, headers=[("Last-Modified", http_date(-10)), ("Date", http_date())], body="x")
    http.get(f"{proxy.url}{path}")
    time.sleep(1.2)
    assert http.get(f"{proxy.url}{path}").headers["x-cache"] == "HIT"
    assert origin.count(path) == 1


def request_if_modified_since(origin, path) -> bool:
    return any(name.lower() == "if-modified-since" for name, _ in origin.requests(path)[-1]["headers"])
