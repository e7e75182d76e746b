"""The admin key is dropped from forwarded requests, in any Authorization scheme."""

import base64

import pytest
from mitmproxy.test import tutils

from mitmcache.credentials import carries_admin_key, drop_admin_credentials

KEY = "s3cret"


def basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "carries"),
    [
        (f"Bearer {KEY}", True),
        (f"bearer   {KEY} ", True),
        (basic(f"admin:{KEY}"), True),
        (basic(f"{KEY}:"), True),
        (f"Token {KEY}", True),
        ("Bearer someone-elses-token", False),
        (basic("alice:password"), False),
        ("Basic !!!not-base64", False),
        ("", False),
    ],
)
def test_authorization_carries_the_admin_key_in_any_scheme(authorization, carries):
    assert carries_admin_key(authorization, KEY) is carries


def test_nothing_carries_an_empty_admin_key():
    assert carries_admin_key("Bearer ", "") is False


def test_clear_cache_key_and_the_keys_authorization_are_dropped_and_others_kept():
    request = tutils.treq()
    request.headers["Clear-Cache-Key"] = KEY
    request.headers.add("Authorization", f"Bearer {KEY}")
    request.headers.add("Authorization", "Bearer user-token")
    drop_admin_credentials(request, KEY)
    assert "clear-cache-key" not in request.headers
    assert request.headers.get_all("authorization") == ["Bearer user-token"]


def test_clear_cache_key_is_dropped_even_without_a_configured_key():
    request = tutils.treq()
    request.headers["Clear-Cache-Key"] = "guess"
    drop_admin_credentials(request, "")
    assert "clear-cache-key" not in request.headers
