"""Age, Date and the other fields of responses served from the cache (RFC 9111 §4, §5.1), end to end."""

import concurrent.futures
import time

import pytest

from tests.e2e import conformance
from tests.e2e.conformance import http_date

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

FRESH = [("Cache-Control", "max-age=3600"), ("ETag", '"a"')]


@pytest.mark.parametrize(
    ("request_headers", "x_cache"),
    [
        pytest.param({}, "HIT", id="hit"),
        pytest.param({"If-None-Match": '"a"'}, "HIT", id="304 from the cache"),
        pytest.param({"Range": "bytes=0-1"}, "HIT", id="206 from the cache"),
    ],
)
def test_every_response_from_the_cache_has_an_age(origin, rfc_proxy, http, path, request_headers, x_cache):
    """RFC 9111 §5.1: "a cache SHOULD ... generate an Age header field" on responses it serves from
    storage; §4: "When a stored response is used ... a cache MUST generate an Age header field"."""
    origin.route(path, headers=FRESH, body="body")
    http.get(f"{rfc_proxy.url}{path}")
    served = http.get(f"{rfc_proxy.url}{path}", headers=request_headers)
    assert served.headers["x-cache"] == x_cache
    assert served.headers["age"].isdigit()


def test_stale_responses_have_an_age(origin, rfc_proxy, http, path):
    """RFC 9111 §4, §5.1: the same holds for a stale response."""
    stale = [("Cache-Control", "max-age=10"), ("Age", "20"), ("ETag", '"a"')]
    origin.route(path, sequence=[{"headers": stale, "body": "body"}, {"status": 304}])
    http.get(f"{rfc_proxy.url}{path}")
    served_stale = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "max-stale"})
    assert (served_stale.headers["x-cache"], int(served_stale.headers["age"])) == ("STALE", 20)


def test_revalidated_responses_have_an_age(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.4, §5.1: and for one freshened by a 304."""
    stale = [("Cache-Control", "max-age=10"), ("Age", "20"), ("ETag", '"a"')]
    origin.route(path, sequence=[{"headers": stale, "body": "body"}, {"status": 304}])
    http.get(f"{rfc_proxy.url}{path}")
    revalidated = http.get(f"{rfc_proxy.url}{path}")
    assert revalidated.headers["x-cache"] == "REVALIDATED"
    assert revalidated.headers["age"].isdigit()


def test_coalesced_responses_have_an_age(origin, rfc_proxy, http, path):
    """RFC 9111 §5.1: a response a waiting client gets from the leader's stored one carries Age."""
    origin.route(path, headers=FRESH, body="body", delay=0.3)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: http.get(f"{rfc_proxy.url}{path}"), range(4)))
    coalesced = [a for a in answers if a.headers["x-cache"] == "COALESCED"]
    assert coalesced and all(a.headers["age"].isdigit() for a in coalesced)


def test_age_grows_while_the_response_is_stored(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.3: current_age adds the time the response has been resident in the cache."""
    origin.route(path, headers=[("Cache-Control", "max-age=3600"), ("Age", "100")], body="x")
    http.get(f"{rfc_proxy.url}{path}")
    time.sleep(1.1)
    assert int(http.get(f"{rfc_proxy.url}{path}").headers["age"]) >= 101


def test_the_stored_date_is_kept(origin, rfc_proxy, http, path):
    """RFC 9110 §6.6.1 / RFC 9111 §4: the Date of a stored response is the origin's, not the time it
    is served; Expires is left alone too."""
    date, expires = http_date(-100), http_date(3600)
    origin.route(path, headers=[("Date", date), ("Expires", expires)], body="x")
    http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert (hit.headers["x-cache"], hit.headers["date"], hit.headers["expires"]) == ("HIT", date, expires)
    assert int(hit.headers["age"]) >= 100


def test_a_date_is_added_to_a_stored_response_without_one(origin, rfc_proxy, http, path):
    """RFC 9110 §6.6.1: a cache with a clock adds Date to a response that has none when it stores it.
    (Our origin always sends Date; an invalid one stands in for a missing one here.)"""
    origin.route(path, headers=[("Date", "not a date"), ("Cache-Control", "max-age=3600")], body="x")
    http.get(f"{rfc_proxy.url}{path}")
    hit = http.get(f"{rfc_proxy.url}{path}")
    assert hit.headers["date"].endswith(" GMT")
