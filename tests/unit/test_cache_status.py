"""The Cache-Status response field (RFC 9211)."""

import pytest

from mitmcache.policy.cache_status import Status, XCache


@pytest.mark.parametrize(
    ("status", "rendered"),
    [
        pytest.param(Status(XCache.HIT, hit=True, ttl=42), "mitmcache; hit; ttl=42", id="hit"),
        pytest.param(
            Status(XCache.MISS, fwd="uri-miss", fwd_status=200, stored=True, ttl=60),
            "mitmcache; fwd=uri-miss; fwd-status=200; stored; ttl=60",
            id="stored miss",
        ),
        pytest.param(
            Status(XCache.STALE, hit=True, ttl=-5, detail="stale-while-revalidate"),
            "mitmcache; hit; ttl=-5; detail=stale-while-revalidate",
            id="stale hit, negative ttl",
        ),
        pytest.param(
            Status(XCache.COALESCED, fwd="miss", collapsed=True, detail="wait-timeout"),
            "mitmcache; fwd=miss; collapsed; detail=wait-timeout",
            id="collapsed",
        ),
        pytest.param(
            Status(XCache.REVALIDATED, hit=True, fwd="stale", fwd_status=304, ttl=60),
            "mitmcache; hit; fwd=stale; fwd-status=304; ttl=60",
            id="revalidated",
        ),
        pytest.param(Status(XCache.BYPASS, fwd="bypass"), "mitmcache; fwd=bypass", id="bypass"),
        pytest.param(Status(XCache.MISS), "mitmcache", id="nothing to say"),
    ],
)
def test_render(status, rendered):
    """RFC 9211 §2: the cache's name, then its parameters: hit and stored/collapsed are booleans
    (bare when true, left out when false), fwd a token, fwd-status and ttl integers (ttl may be
    negative, §2.5)."""
    assert status.render("mitmcache") == rendered


@pytest.mark.parametrize(
    ("detail", "rendered"),
    [
        ("private", "detail=private"),
        ("upstream-status-503", "detail=upstream-status-503"),
        ("a:b/c*d", "detail=a:b/c*d"),
        ("*wild", "detail=*wild"),
        ("upstream-timeout after 10s", 'detail="upstream-timeout after 10s"'),
        ("1st", 'detail="1st"'),
        ("", None),
        ('said "no"', r'detail="said \"no\""'),
        ("back\\slash here", r'detail="back\\slash here"'),
        ("caf\u00e9\tok", 'detail="caf??ok"'),
    ],
)
def test_detail_is_a_token_when_it_can_be_and_a_string_otherwise(detail, rendered):
    """RFC 9211 §2.8: detail is a Token or a String (RFC 8941 §3.3.4, §3.3.3): a String escapes
    ``"`` and ``\\`` and holds printable ASCII only."""
    header = Status(XCache.MISS, fwd="miss", detail=detail).render("mitmcache")
    assert header == "mitmcache; fwd=miss" + (f"; {rendered}" if rendered else "")
