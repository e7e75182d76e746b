"""The upstream of --mode reverse:URL: an explicit http(s) scheme and a valid host."""

import pytest

from mitmcache.front_settings import reverse_upstream


@pytest.mark.parametrize(
    "raw",
    [
        "http://127.0.0.1:8000",
        "https://api.internal",
        "HTTP://Example.COM:80/",
        "http://[::1]:8080",
        "http://backend_1:3000",  # a container service name
        "https://example.com.",
    ],
)
def test_an_explicit_http_or_https_url_with_a_valid_host_is_accepted(raw):
    assert reverse_upstream(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "not-a-url",  # mitmproxy would take it as https://not-a-url
        "example.com:8080",
        "ftp://example.com",
        "tcp://example.com:80",
        "http://",
        "http://exa mple.com",
        "http://-bad-.example",
        "http://a..b",
        "http://example.com:0",
        "http://example.com:99999",
        "http://user@example.com",
        "http://" + "a" * 64 + ".example",
        "http://::1:8080",
        "http://999.1.1.1",
        "http://1.2.3.4.5",
    ],
)
def test_anything_else_is_refused_saying_what_was_expected(raw):
    with pytest.raises(ValueError, match=r"expected http://host\[:port\] or https://host\[:port\]"):
        reverse_upstream(raw)
