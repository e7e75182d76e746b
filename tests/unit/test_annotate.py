"""How a decision reads on a flow: mitmweb's comment column, its marker, the flow's metadata."""

from collections import Counter

import pytest
from mitmproxy import flowfilter, http
from mitmproxy.test import tflow

from mitmcache.annotate import annotate, describe
from mitmcache.counters import Counters
from mitmcache.policy.cache_status import Status, XCache


@pytest.mark.parametrize(
    ("status", "age", "code", "text"),
    [
        (Status(XCache.HIT, hit=True, ttl=59), 1, 200, "HIT | age=1s ttl=59s"),
        (Status(XCache.HIT, hit=True, ttl=59), 0, 304, "HIT 304 | age=0s ttl=59s"),
        (
            Status(XCache.MISS, fwd="uri-miss", stored=True, ttl=60),
            None,
            200,
            "MISS stored | fwd=uri-miss ttl=60s",
        ),
        (Status(XCache.MISS, fwd="vary-miss", detail="private"), None, 200, "MISS private | fwd=vary-miss"),
        (
            Status(XCache.STALE, hit=True, ttl=-3, detail="refresh-window"),
            63,
            200,
            "STALE refresh-window | age=63s ttl=-3s",
        ),
        (Status(XCache.BYPASS, fwd="method", detail="invalidated"), None, 201, "BYPASS invalidated"),
    ],
)
def test_the_comment_starts_with_the_decision_and_its_reason_then_the_rest_of_it(status, age, code, text):
    assert describe(status, age, code) == text


def test_a_flow_carries_the_decision_as_comment_marker_and_plain_metadata():
    flow = tflow.tflow(resp=True)
    counts = Counters()
    annotate(flow, "http://example/a", Status(XCache.MISS, fwd="uri-miss", detail="set-cookie"), counts)
    assert flow.marked == ":red_circle:"
    assert flow.metadata["cache"] == {
        "status": "MISS",
        "key": "http://example/a",
        "fwd": "uri-miss",
        "detail": "set-cookie",
        "ttl": None,
        "age": None,
        "stored": False,
    }
    assert counts == Counter({"MISS": 1, "MISS:set-cookie": 1})


def annotated(status: Status) -> http.HTTPFlow:
    flow = tflow.tflow(resp=True)
    annotate(flow, "http://example/a", status, Counters())
    return flow


def test_the_documented_filters_pick_the_flows_they_name():
    """README and docs/control-plane.md: ~comment "^MISS", ~comment "^MISS private", ~marker red_circle."""
    stored = annotated(Status(XCache.MISS, fwd="uri-miss", stored=True, ttl=60))
    private = annotated(Status(XCache.MISS, fwd="uri-miss", detail="private"))
    hit = annotated(Status(XCache.HIT, hit=True, ttl=59))
    flows = [stored, private, hit]
    assert [f for f in flows if flowfilter.match('~comment "^MISS"', f)] == [stored, private]
    assert [f for f in flows if flowfilter.match('~comment "^MISS private"', f)] == [private]
    assert [f for f in flows if flowfilter.match("~marker red_circle", f)] == [stored, private]
