"""Response Cache-Control directives (RFC 9111 §5.2, §5.2.2), end to end in pure RFC mode."""

import time

import pytest

from tests.e2e import conformance
from tests.e2e.conformance import request_header

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy


def two_gets(origin, http, proxy, path, headers, *, request_headers=None, body="body"):
    origin.route(path, headers=headers, body=body)
    first = http.get(f"{proxy.url}{path}", headers=request_headers or {})
    second = http.get(f"{proxy.url}{path}", headers=request_headers or {})
    return first, second


@pytest.mark.parametrize(
    "cache_control", ["MaX-AgE=3600", "max-age=3600, foobar", 'community="UCI", max-age=3600']
)
def test_directive_names_are_case_insensitive_and_unknown_ones_ignored(
    origin, rfc_proxy, http, path, cache_control
):
    """RFC 9111 §5.2: directive names are case-insensitive; §5.2.3: "Cache directives that are
    unrecognized ... MUST be ignored"."""
    _, second = two_gets(origin, http, rfc_proxy, path, [("Cache-Control", cache_control)])
    assert second.headers["x-cache"] == "HIT"


@pytest.mark.parametrize("cache_control", ["No-StOrE", "max-age=3600, NO-STORE", "PRIVATE, max-age=3600"])
def test_no_store_and_private_in_any_case_are_not_stored(origin, rfc_proxy, http, path, cache_control):
    """RFC 9111 §5.2.2.5, §5.2.2.7: no-store and private keep a response out of a shared cache."""
    two_gets(origin, http, rfc_proxy, path, [("Cache-Control", cache_control)])
    assert origin.count(path) == 2


def test_repeated_directives_across_lines_the_first_counts(origin, rfc_proxy, http, path):
    """RFC 9111 §4.2.1: with more than one value of a directive "either the first occurrence should
    be used or the response should be considered stale" -- we use the first."""
    headers = [("Cache-Control", "max-age=3600"), ("Cache-Control", "max-age=0")]
    _, second = two_gets(origin, http, rfc_proxy, path, headers)
    assert second.headers["x-cache"] == "HIT"


def test_qualified_private_stores_the_response_without_the_named_fields(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.7: private with field names: "a shared cache MUST NOT store the specified
    field names", the rest of the response may be stored."""
    headers = [("Cache-Control", 'max-age=3600, private="X-User"'), ("X-User", "alice"), ("X-Public", "p")]
    _, second = two_gets(origin, http, rfc_proxy, path, headers)
    assert second.headers["x-cache"] == "HIT"
    assert "x-user" not in second.headers
    assert second.headers["x-public"] == "p"


def test_qualified_no_cache_stores_the_response_without_the_named_fields(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.4: no-cache with field names: those fields "MUST NOT" be sent in a response
    reused without validation; we do not store them."""
    headers = [("Cache-Control", 'no-cache="a, b"'), ("Cache-Control", "max-age=3600")]
    _, second = two_gets(origin, http, rfc_proxy, path, [*headers, ("a", "1"), ("b", "2"), ("c", "3")])
    assert second.headers["x-cache"] == "HIT"
    assert ("a" not in second.headers, "b" not in second.headers, second.headers["c"]) == (True, True, "3")


def test_no_cache_is_revalidated_on_every_use(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.4: no-cache "indicates that the response MUST NOT be used to satisfy any
    other request without forwarding it for validation and receiving a successful response"."""
    origin.route(
        path,
        sequence=[
            {"headers": [("Cache-Control", "max-age=3600, no-cache"), ("ETag", '"a"')], "body": "stored"},
            {"status": 304, "headers": [("ETag", '"a"')]},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    second = http.get(f"{rfc_proxy.url}{path}")
    assert (second.headers["x-cache"], second.text) == ("REVALIDATED", "stored")
    assert request_header(origin.requests(path)[1], "if-none-match") == '"a"'


def test_no_cache_without_validators_is_not_stored(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.4: a no-cache response could only be reused after validation, and without
    validators there is nothing to validate with."""
    two_gets(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600, no-cache")])
    assert origin.count(path) == 2


def test_must_revalidate_is_reused_while_fresh(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.2: must-revalidate changes nothing while the response is fresh."""
    _, second = two_gets(
        origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600, must-revalidate"), ("ETag", '"a"')]
    )
    assert second.headers["x-cache"] == "HIT"


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "s-maxage=1"])
def test_once_stale_it_is_revalidated_even_when_the_client_accepts_stale(
    origin, rfc_proxy, http, path, directive
):
    """RFC 9111 §5.2.2.2: once stale, a must-revalidate response "MUST NOT" be used "without
    successful validation" -- whatever max-stale says; §5.2.2.8 and §5.2.2.10: proxy-revalidate
    and s-maxage mean the same for a shared cache."""
    origin.route(
        path,
        sequence=[
            {"headers": [("Cache-Control", f"max-age=1, {directive}"), ("ETag", '"a"')], "body": "v1"},
            {"status": 304, "headers": [("ETag", '"a"')]},
        ],
    )
    http.get(f"{rfc_proxy.url}{path}")
    time.sleep(1.1)
    again = http.get(f"{rfc_proxy.url}{path}", headers={"Cache-Control": "max-stale=3600"})
    assert (again.headers["x-cache"], again.text) == ("REVALIDATED", "v1")
    assert origin.count(path) == 2


@pytest.mark.parametrize("directive", ["public", "s-maxage=3600", "must-revalidate"])
def test_authorized_responses_are_shared_only_when_allowed(origin, rfc_proxy, http, path, directive):
    """RFC 9111 §3.5: a shared cache reuses a response to a request with Authorization only if it
    has must-revalidate, public or s-maxage (§5.2.2.2, §5.2.2.9, §5.2.2.10)."""
    origin.route(path, headers=[("Cache-Control", f"max-age=3600, {directive}")], body="shared")
    http.get(f"{rfc_proxy.url}{path}", headers={"Authorization": "Bearer a"})
    second = http.get(f"{rfc_proxy.url}{path}")
    assert (second.headers["x-cache"], origin.count(path)) == ("HIT", 1)


def test_authorized_responses_are_not_shared_without_permission(origin, rfc_proxy, http, path):
    """RFC 9111 §3.5: without must-revalidate, public or s-maxage, not stored."""
    origin.route(path, headers=[("Cache-Control", "max-age=3600")], body="mine")
    http.get(f"{rfc_proxy.url}{path}", headers={"Authorization": "Bearer a"})
    http.get(f"{rfc_proxy.url}{path}")
    assert origin.count(path) == 2
    assert request_header(origin.requests(path)[0], "authorization") == "Bearer a"


def test_immutable_is_reused_while_fresh(origin, rfc_proxy, http, path):
    """RFC 8246 §2: immutable says the response will not change while fresh; a shared cache serves
    it as any fresh response (the directive is for clients' reloads)."""
    _, second = two_gets(origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600, immutable")])
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["cache-control"] == "max-age=3600, immutable"


def test_must_understand_stores_a_known_status_despite_no_store(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.3: a cache that understands the status code ignores no-store when
    must-understand is present."""
    _, second = two_gets(
        origin, http, rfc_proxy, path, [("Cache-Control", "max-age=3600, no-store, must-understand")]
    )
    assert second.headers["x-cache"] == "HIT"


def test_must_understand_keeps_an_unknown_status_out(origin, rfc_proxy, http, path):
    """RFC 9111 §5.2.2.3: with must-understand, a cache that does not understand the status code
    (599) must not store the response."""
    origin.route(path, status=599, headers=[("Cache-Control", "max-age=3600, no-store, must-understand")])
    http.get(f"{rfc_proxy.url}{path}")
    http.get(f"{rfc_proxy.url}{path}")
    assert origin.count(path) == 2
