"""Reusing stored responses and Vary (RFC 9111 §4.1), end to end in pure RFC mode."""

import time

import pytest

from mitmcache.store.memory import MAX_VARIANTS_PER_KEY
from tests.e2e import conformance
from tests.e2e.conformance import cache_status

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

FRESH = ("Cache-Control", "max-age=3600")


def get(http, proxy, path, *headers: tuple[str, str]):
    return http.get(f"{proxy.url}{path}", headers=list(headers))


def vary_route(origin, path, *vary_lines: str) -> None:
    origin.route(path, headers=[FRESH, *(("Vary", line) for line in vary_lines)], echo=True)


@pytest.mark.parametrize(
    ("stored", "presented", "reused"),
    [
        pytest.param([("Foo", "1")], [("Foo", "1")], True, id="match"),
        pytest.param([("Foo", "1")], [("Foo", "2")], False, id="no match"),
        pytest.param([("Foo", "1")], [], False, id="presented request omits it"),
        pytest.param([], [("Foo", "1")], False, id="stored request omitted it"),
        pytest.param([], [], True, id="both omit it"),
        pytest.param([("Foo", "1"), ("Other", "2")], [("Foo", "1"), ("Other", "3")], True, id="other fields"),
        pytest.param([("Foo", "")], [], False, id="empty is not absent"),
    ],
)
def test_a_stored_response_is_selected_by_the_fields_vary_names(
    origin, rfc_proxy, http, path, stored, presented, reused
):
    """RFC 9111 §4.1: a stored response with Vary is used only when "the selecting header fields
    nominated by the stored response ... match those presented"; "if a header field is absent from
    a request, it can only match another request if it is also absent there"."""
    vary_route(origin, path, "Foo")
    get(http, rfc_proxy, path, *stored)
    second = get(http, rfc_proxy, path, *presented)
    assert (second.headers["x-cache"] == "HIT") is reused
    if not reused:
        assert "fwd=vary-miss" in cache_status(second)


@pytest.mark.parametrize(
    ("vary", "presented", "reused"),
    [
        pytest.param(["Foo, Bar"], [("Foo", "1"), ("Bar", "abc")], True, id="two-way match"),
        pytest.param(["Foo, Bar"], [("Foo", "2"), ("Bar", "abc")], False, id="two-way, one differs"),
        pytest.param(["Foo, Bar"], [("Foo", "1")], False, id="two-way, one omitted"),
        pytest.param(["Foo", "Bar"], [("Bar", "abc"), ("Foo", "1")], True, id="two Vary lines, any order"),
        pytest.param(["Foo", "Bar"], [("Foo", "1"), ("Bar", "abcde")], False, id="two Vary lines, differs"),
        pytest.param(["foo,  BAR"], [("Foo", "1"), ("Bar", "abc")], True, id="names case-insensitive"),
    ],
)
def test_several_vary_fields(origin, rfc_proxy, http, path, vary, presented, reused):
    """RFC 9111 §4.1 / RFC 9110 §12.5.5: Vary is a list of field names, possibly on several lines;
    every one of them must match."""
    vary_route(origin, path, *vary)
    get(http, rfc_proxy, path, ("Foo", "1"), ("Bar", "abc"))
    assert (get(http, rfc_proxy, path, *presented).headers["x-cache"] == "HIT") is reused


@pytest.mark.parametrize("vary", [["*"], ["*, *"], ["*", "*"], [", *"], ["", "*"], ["*, Foo"], ["Foo, *"]])
def test_vary_star_never_matches(origin, rfc_proxy, http, path, vary):
    """RFC 9111 §4.1: "A stored response with a Vary header field value containing a member '*'
    always fails to match"; so it is not even stored."""
    vary_route(origin, path, *vary)
    get(http, rfc_proxy, path, ("Foo", "1"))
    get(http, rfc_proxy, path, ("Foo", "1"))
    assert origin.count(path) == 2


@pytest.mark.parametrize(
    ("field", "stored", "presented"),
    [
        pytest.param("Prefer", ["return=minimal, wait=5"], ["return=minimal", "wait=5"], id="combined lines"),
        pytest.param("Prefer", ["return=minimal,wait=5"], ["return=minimal ,  wait=5"], id="whitespace"),
        pytest.param("Accept-Language", ["en, de"], ["de, en"], id="language order"),
        pytest.param("Accept-Language", ["en, de"], ["eN, De"], id="language case"),
        pytest.param("Accept-Language", ["en, de"], ["en ,   de"], id="language whitespace"),
        pytest.param("Accept", ["text/html, application/json"], ["application/json,text/html"], id="Accept"),
    ],
)
def test_selecting_fields_are_normalised(origin, rfc_proxy, http, path, field, stored, presented):
    """RFC 9111 §4.1: fields match after "adding or removing whitespace", "combining multiple header
    field lines" and "normalizing both header field values in a way that is known to have identical
    semantics ... (e.g., reordering field values when order is not significant; case-normalization,
    where values are defined to be case-insensitive)". Lines combine, and list members lose their
    whitespace, only for fields defined as lists (``Prefer``: RFC 7240 §2)."""
    vary_route(origin, path, field)
    get(http, rfc_proxy, path, *((field, value) for value in stored))
    assert get(http, rfc_proxy, path, *((field, value) for value in presented)).headers["x-cache"] == "HIT"


@pytest.mark.parametrize(
    ("stored", "presented"),
    [
        pytest.param(["1, 2"], ["1", "2"], id="combined lines"),
        pytest.param(["1"], ["1,"], id="a trailing comma"),
        pytest.param(["a  b"], ["a b"], id="inner whitespace"),
    ],
)
def test_a_field_not_known_to_be_a_list_is_compared_as_sent(origin, rfc_proxy, http, path, stored, presented):
    """RFC 9110 §5.3: only list-based fields may be sent as several lines or combined; a cache that
    does not know a field cannot assume it is one (``Origin: https://app.example,`` is not
    ``https://app.example``)."""
    vary_route(origin, path, "Foo")
    get(http, rfc_proxy, path, *(("Foo", value) for value in stored))
    assert get(http, rfc_proxy, path, *(("Foo", value) for value in presented)).headers["x-cache"] == "MISS"


def test_different_variants_are_stored_side_by_side(origin, rfc_proxy, http, path):
    """RFC 9111 §4.1: a cache may store several responses for one URL, one per variant."""
    vary_route(origin, path, "Foo")
    one = get(http, rfc_proxy, path, ("Foo", "1"))
    get(http, rfc_proxy, path, ("Foo", "2"))
    again = get(http, rfc_proxy, path, ("Foo", "1"))
    assert (again.headers["x-cache"], again.content) == ("HIT", one.content)
    assert get(http, rfc_proxy, path, ("Foo", "2")).headers["x-cache"] == "HIT"


def test_a_newer_response_for_the_same_variant_replaces_the_stored_one(origin, rfc_proxy, http, path):
    """RFC 9111 §3 / §4.1: a new response for the same variant is stored in place of the old one.
    (Once the old one expired: a client's no-cache does not replace a fresh shared entry, see
    docs/fetch-hardening.md.)"""
    origin.route(
        path,
        headers=[FRESH, ("Vary", "Foo")],
        sequence=[
            {"body": "v1", "headers": [("Cache-Control", "max-age=1"), ("Vary", "Foo")]},
            {"body": "v2"},
        ],
    )
    get(http, rfc_proxy, path, ("Foo", "1"))
    time.sleep(1.1)
    get(http, rfc_proxy, path, ("Foo", "1"))
    hit = get(http, rfc_proxy, path, ("Foo", "1"))
    assert (hit.headers["x-cache"], hit.text) == ("HIT", "v2")


def test_of_several_matching_responses_the_most_recent_is_used(origin, rfc_proxy, http, path):
    """RFC 9111 §4.1: "If multiple selected responses are available (potentially including responses
    without a Vary header field), the cache will need to choose one to use ... the most recent"."""
    origin.route(
        path,
        sequence=[
            {"headers": [FRESH, ("Vary", "Foo")], "body": "by Foo"},
            {"headers": [FRESH, ("Vary", "Bar")], "body": "by Bar"},
        ],
    )
    get(http, rfc_proxy, path, ("Foo", "1"), ("Bar", "x"))
    get(http, rfc_proxy, path, ("Foo", "2"), ("Bar", "x"))  # a new variant, now keyed on Bar
    hit = get(http, rfc_proxy, path, ("Foo", "1"), ("Bar", "x"))  # matches both; the newer wins
    assert (hit.headers["x-cache"], hit.text) == ("HIT", "by Bar")


def test_the_number_of_variants_per_url_is_capped(origin, rfc_proxy, http, path):
    """RFC 9111 §4.1 lets a cache keep several variants; a client sending endless distinct values
    must not fill the cache under one URL: past the cap the oldest variant goes."""
    vary_route(origin, path, "Foo")
    for i in range(MAX_VARIANTS_PER_KEY + 1):
        get(http, rfc_proxy, path, ("Foo", str(i)))
    assert get(http, rfc_proxy, path, ("Foo", str(MAX_VARIANTS_PER_KEY))).headers["x-cache"] == "HIT"
    assert get(http, rfc_proxy, path, ("Foo", "0")).headers["x-cache"] == "MISS"
