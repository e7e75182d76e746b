"""Invalidation by unsafe requests (RFC 9111 §4.4)."""

import pytest

from mitmcache.policy.invalidation import SAFE_METHODS, invalidated_targets, invalidates

TARGET = "http://example.com:8080/items/1?x=1"


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "M-SEARCH", "PROPPATCH", "post"])
@pytest.mark.parametrize("status", [200, 201, 204, 301, 303, 399])
def test_unsafe_methods_invalidate_on_non_error_statuses(method, status):
    """RFC 9111 §4.4: "A cache MUST invalidate the target URI ... when it receives a non-error status
    code in response to an unsafe request method (including methods whose safety is unknown)"."""
    assert invalidates(method, status)


@pytest.mark.parametrize("status", [100, 400, 404, 409, 500, 503])
def test_error_statuses_do_not_invalidate(status):
    """RFC 9111 §4.4: only a non-error status invalidates: a failed change changed nothing."""
    assert not invalidates("POST", status)


@pytest.mark.parametrize("method", sorted(SAFE_METHODS))
def test_safe_methods_do_not_invalidate(method):
    """RFC 9110 §9.2.1: GET, HEAD, OPTIONS and TRACE are safe."""
    assert not invalidates(method, 200)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param([], ["/items/1?x=1"], id="target only"),
        pytest.param([("Location", "/items/2")], ["/items/1?x=1", "/items/2"], id="absolute path"),
        pytest.param([("Location", "2")], ["/items/1?x=1", "/items/2"], id="relative reference"),
        pytest.param(
            [("Content-Location", "http://example.com:8080/items/3?a=b#frag")],
            ["/items/1?x=1", "/items/3?a=b"],
            id="absolute URI, fragment dropped",
        ),
        pytest.param(
            [("Location", "/a"), ("Content-Location", "/b")], ["/items/1?x=1", "/a", "/b"], id="both"
        ),
        pytest.param([("Location", "/items/1?x=1")], ["/items/1?x=1"], id="the target itself"),
        pytest.param([("Location", "HTTP://EXAMPLE.COM:8080/c")], ["/items/1?x=1", "/c"], id="case"),
    ],
)
def test_location_and_content_location_of_the_same_origin(response, expected):
    """RFC 9111 §4.4: a cache MAY invalidate "the URI(s) in the Location and Content-Location
    response header fields (if present)", resolved against the target URI (RFC 9110 §10.2.2)."""
    assert invalidated_targets(TARGET, fields(*response)) == expected


@pytest.mark.parametrize(
    "location",
    [
        "http://other.example.com:8080/items/2",
        "https://example.com:8080/items/2",
        "http://example.com/items/2",
        "http://example.com:99999/x",
        "//evil.example/x",
    ],
    ids=["other host", "other scheme", "other port", "invalid port", "network-path reference"],
)
def test_other_origins_are_never_invalidated(location):
    """RFC 9111 §4.4: "a cache MUST NOT trigger an invalidation under these conditions if the origin
    (Section 4.3.1 of [HTTP]) of the URI to be invalidated differs from that of the target URI"."""
    assert invalidated_targets(TARGET, fields(("Location", location))) == ["/items/1?x=1"]


def test_default_ports_are_the_same_origin():
    """RFC 9110 §4.3.1: the origin's port is the scheme's default when none is given."""
    assert invalidated_targets("http://example.com/a", fields(("Location", "http://example.com:80/b"))) == [
        "/a",
        "/b",
    ]


def test_an_unparsable_target_authority_invalidates_the_target_alone():
    """RFC 9111 §4.4: the target URI is always invalidated; with no origin to compare, nothing else."""
    assert invalidated_targets("http://example.com:bad/a", fields(("Location", "/b"))) == ["/a"]
