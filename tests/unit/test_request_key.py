"""A mitmproxy request's cache key, authority and upstream URL (request_key.py)."""

import pytest
from mitmproxy.test import tutils

from mitmcache.request_key import upstream_url


@pytest.mark.parametrize(
    ("scheme", "host", "port", "path"),
    [
        pytest.param("http", "api.internal", 80, "/items?a=1", id="default port left out"),
        pytest.param("https", "api.internal", 443, "/", id="https default port"),
        pytest.param("http", "api.internal", 8000, "/v1/items", id="other port kept"),
        pytest.param("https", "api.internal", 80, "/x", id="port 80 over https kept"),
        pytest.param("http", "127.0.0.1", 8000, "/caf%C3%A9?q=%FF", id="escapes kept"),
        pytest.param("http", "::1", 8000, "/v6", id="IPv6 host"),
        pytest.param("http", "api.internal", 8000, "*", id="asterisk form"),
    ],
)
def test_upstream_url_is_mitmproxys_url(scheme, host, port, path):
    """The URL a stored response is fetched again from is exactly the one mitmproxy sends to."""
    request = tutils.treq(scheme=scheme.encode(), host=host, port=port, path=path.encode(), authority=b"")
    assert upstream_url(request) == request.url


def test_upstream_url_follows_a_changed_request():
    """An addon may send a request elsewhere: the URL is the one it finally goes to."""
    request = tutils.treq(host="api.internal", port=8000, path=b"/a", authority=b"")
    upstream_url(request)
    request.host, request.port, request.path = "other.internal", 9000, "/b"
    assert upstream_url(request) == request.url == "http://other.internal:9000/b"
