"""Serving stale responses (RFC 9111 §4.2.4; RFC 5861), end to end in pure RFC mode."""

import time

import pytest

from tests.e2e import conformance
from tests.e2e.conformance import cache_status

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy


def test_stale_while_revalidate_serves_stale_and_revalidates_in_the_background(origin, rfc_proxy, http, path):
    """RFC 5861 §3: within stale-while-revalidate "caches MAY serve the response in which it appears
    after it becomes stale ... while revalidating it in the background"."""
    origin.route(
        path,
        sequence=[
            {
                "headers": [("Cache-Control", "max-age=0, stale-while-revalidate=3600"), ("ETag", '"abc"')],
                "body": "v1",
            },
            {"headers": [("Cache-Control", "max-age=3600"), ("ETag", '"def"')], "body": "v2", "delay": 0.3},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    stale = http.get(f"{rfc_proxy.url}{path}")
    assert (stale.headers["x-cache"], stale.text, stale.headers["etag"]) == ("STALE", "v1", '"abc"')
    assert "detail=stale-while-revalidate" in cache_status(stale)
    origin.wait_for_count(2, path)
    time.sleep(0.5)
    fresh = http.get(f"{rfc_proxy.url}{path}")
    assert (fresh.headers["x-cache"], fresh.text, fresh.headers["etag"]) == ("HIT", "v2", '"def"')
    assert (
        origin.requests(path)[1]["headers"].count(["If-None-Match", '"abc"'])
        + origin.requests(path)[1]["headers"].count(["if-none-match", '"abc"'])
        == 1
    )


def test_past_stale_while_revalidate_the_response_is_validated_first(origin, rfc_proxy, http, path):
    """RFC 5861 §3: the allowance is a number of seconds; past it, the response is not served
    stale (RFC 9111 §4.2.4)."""
    origin.route(
        path,
        sequence=[
            {
                "headers": [
                    ("Cache-Control", "max-age=10, stale-while-revalidate=5"),
                    ("Age", "20"),
                    ("ETag", '"a"'),
                ]
            },
            {"status": 304},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] == "REVALIDATED"


def test_must_revalidate_overrides_stale_while_revalidate(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.4: "A cache MUST NOT generate a stale response if it is prohibited by an
    explicit in-protocol directive (e.g., by a no-cache response directive, a must-revalidate
    response directive ...)"."""
    origin.route(
        path,
        sequence=[
            {
                "headers": [
                    ("Cache-Control", "max-age=0, must-revalidate, stale-while-revalidate=60"),
                    ("ETag", '"a"'),
                ]
            },
            {"status": 304},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] == "REVALIDATED"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_stale_if_error_serves_stale_when_the_origin_errs(origin, rfc_proxy, http, path, status):
    """RFC 5861 §4: within stale-if-error a stale response may be used when revalidation "encounters
    an error, such as a 500, 502, 503, or 504 status code"."""
    origin.route(
        path,
        sequence=[
            {"headers": [("Cache-Control", "max-age=0, stale-if-error=3600")], "body": "good"},
            {"status": status},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    answer = http.get(f"{rfc_proxy.url}{path}")
    assert (answer.status_code, answer.text, answer.headers["x-cache"]) == (200, "good", "STALE")
    assert f"upstream-status-{status}" in cache_status(answer)


def test_past_stale_if_error_the_error_is_passed_on(origin, rfc_proxy, http, path):
    """RFC 5861 §4: the allowance is in seconds; once it has run out the error reaches the client."""
    origin.route(
        path,
        sequence=[
            {"headers": [("Cache-Control", "max-age=0, stale-if-error=1")], "body": "good"},
            {"status": 500, "body": "broken"},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    time.sleep(1.2)
    answer = http.get(f"{rfc_proxy.url}{path}")
    assert (answer.status_code, answer.text) == (500, "broken")


def test_a_disconnected_cache_may_serve_stale(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.4: a cache may serve stale when "it is disconnected": the origin closes the
    connection without an answer (within the operator's cache_stale_if_error allowance)."""
    origin.route(
        path,
        sequence=[
            {"headers": [("Cache-Control", "max-age=0"), ("ETag", '"a"')], "body": "good"},
            {"fail": "close"},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    answer = http.get(f"{rfc_proxy.url}{path}")
    assert (answer.status_code, answer.text, answer.headers["x-cache"]) == (200, "good", "STALE")


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=0"])
def test_no_stale_when_the_origin_forbids_it_even_disconnected(origin, rfc_proxy, http, path, directive):
    """RFC 9111 §5.2.2.2: with must-revalidate, "if a cache is disconnected, the cache MUST generate
    an error response rather than reuse the stale response"; §5.2.2.8, §5.2.2.10, §5.2.2.4 likewise."""
    origin.route(
        path,
        sequence=[
            {"headers": [("Cache-Control", f"max-age=0, {directive}"), ("ETag", '"a"')], "body": "good"},
            {"fail": "close"},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    answer = http.get(f"{rfc_proxy.url}{path}")
    assert answer.status_code in (502, 504)
    assert answer.text != "good"


def test_no_stale_without_permission(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.4: "A cache MUST NOT generate a stale response unless it is disconnected or
    doing so is explicitly permitted by the client or origin server": a stale response is validated
    before it is used."""
    origin.route(
        path,
        sequence=[
            {"headers": [("Cache-Control", "max-age=0"), ("ETag", '"a"')], "body": "v1"},
            {"body": "v2"},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    assert http.get(f"{rfc_proxy.url}{path}").text == "v2"


def test_nothing_is_fetched_that_no_client_asked_for(origin, rfc_proxy, http, path):
    """Pure RFC mode: no refresh runs ahead of clients when a response expires; the stored response
    (it has a validator) waits for the next client, who gets it validated (RFC 9111 §4.3)."""
    origin.route(
        path,
        sequence=[
            {"headers": [("Cache-Control", "max-age=1"), ("ETag", '"a"')], "body": "v1"},
            {"status": 304},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    time.sleep(1.6)
    assert origin.count(path) == 1
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] == "REVALIDATED"
