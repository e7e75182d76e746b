"""Invalidation (RFC 9111 §4.4), end to end in pure RFC mode."""

import pytest

from tests.e2e import conformance

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

FRESH = [("Cache-Control", "max-age=3600")]


def stored(origin, http, proxy, target) -> None:
    origin.route(target, headers=FRESH, body=f"stored {target}")
    http.get(f"{proxy.url}{target}")
    assert http.get(f"{proxy.url}{target}").headers["x-cache"] == "HIT"


def is_hit(http, proxy, target) -> bool:
    return http.get(f"{proxy.url}{target}").headers["x-cache"] == "HIT"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "M-SEARCH"])
def test_a_successful_unsafe_request_invalidates_the_target_uri(origin, rfc_proxy, http, path, method):
    """RFC 9111 §4.4: "A cache MUST invalidate the target URI ... when it receives a non-error status
    code in response to an unsafe request method (including methods whose safety is unknown)"."""
    stored(origin, http, rfc_proxy, path)
    answer = http.request(method, f"{rfc_proxy.url}{path}", content=b"abc")
    assert answer.status_code == 200
    assert "fwd=method" in answer.headers["cache-status"]
    assert not is_hit(http, rfc_proxy, path)


@pytest.mark.parametrize("status", [201, 204, 303])
def test_any_non_error_status_invalidates(origin, rfc_proxy, http, path, status):
    """RFC 9111 §4.4: non-error means 2xx and 3xx."""
    stored(origin, http, rfc_proxy, path)
    origin.route(path, status=status, headers=[("Location", path)] if status == 303 else [])
    http.post(f"{rfc_proxy.url}{path}", content=b"abc")
    origin.route(path, headers=FRESH, body="new")
    assert not is_hit(http, rfc_proxy, path)


@pytest.mark.parametrize("status", [400, 404, 409, 500, 503])
def test_an_error_status_does_not_invalidate(origin, rfc_proxy, http, path, status):
    """RFC 9111 §4.4: only a non-error response invalidates; a failed request changed nothing."""
    stored(origin, http, rfc_proxy, path)
    origin.route(path, status=status, body="failed")
    http.post(f"{rfc_proxy.url}{path}", content=b"abc")
    assert is_hit(http, rfc_proxy, path)


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE"])
def test_safe_methods_do_not_invalidate(origin, rfc_proxy, http, path, method):
    """RFC 9110 §9.2.1: safe methods do not change the resource."""
    stored(origin, http, rfc_proxy, path)
    http.request(method, f"{rfc_proxy.url}{path}")
    assert is_hit(http, rfc_proxy, path)


@pytest.mark.parametrize("field", ["Location", "Content-Location"])
@pytest.mark.parametrize("form", ["absolute path", "relative", "absolute URI"])
def test_same_origin_location_uris_are_invalidated(origin, rfc_proxy, http, path, field, form):
    """RFC 9111 §4.4: a cache MAY invalidate "the URI(s) in the Location and Content-Location
    response header fields (if present)" -- resolved against the target URI (RFC 9110 §10.2.2)."""
    other = f"{path}-target"
    stored(origin, http, rfc_proxy, other)
    reference = {
        "absolute path": other,
        "relative": other.rsplit("/", 1)[1],
        "absolute URI": f"{origin.url}{other}",
    }[form]
    origin.route(path, status=201, headers=[(field, reference)])
    http.post(f"{rfc_proxy.url}{path}", content=b"abc")
    assert not is_hit(http, rfc_proxy, other)


def test_uris_of_another_origin_are_not_invalidated(origin, rfc_proxy, http, path):
    """RFC 9111 §4.4: "a cache MUST NOT trigger an invalidation under these conditions if the origin
    ... of the URI to be invalidated differs from that of the target URI"."""
    other = f"{path}-target"
    stored(origin, http, rfc_proxy, other)
    origin.route(path, status=201, headers=[("Location", f"http://elsewhere.example{other}")])
    http.post(f"{rfc_proxy.url}{path}", content=b"abc")
    assert is_hit(http, rfc_proxy, other)


def test_location_of_a_failed_request_is_not_invalidated(origin, rfc_proxy, http, path):
    """RFC 9111 §4.4: the related URIs follow the target URI's rule: only on a non-error status."""
    other = f"{path}-target"
    stored(origin, http, rfc_proxy, other)
    origin.route(path, status=500, headers=[("Content-Location", other)])
    http.post(f"{rfc_proxy.url}{path}", content=b"abc")
    assert is_hit(http, rfc_proxy, other)


def test_every_variant_of_the_uri_is_invalidated(origin, rfc_proxy, http, path):
    """RFC 9111 §4.4: invalidation covers "the stored responses" for the URI -- all its variants."""
    origin.route(path, headers=[*FRESH, ("Vary", "Foo")], body="x")
    for value in ("1", "2"):
        http.get(f"{rfc_proxy.url}{path}", headers={"Foo": value})
    http.delete(f"{rfc_proxy.url}{path}")
    for value in ("1", "2"):
        assert http.get(f"{rfc_proxy.url}{path}", headers={"Foo": value}).headers["x-cache"] == "MISS"
