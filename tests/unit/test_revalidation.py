"""Validating a stored response with the upstream (RFC 9111 §4.3)."""

import pytest

from mitmcache.entry import Entry
from mitmcache.policy.dates import format_http_date
from mitmcache.policy.fields import get_all
from mitmcache.policy.revalidation import conditional_fields, freshened_fields, validator_matches
from mitmcache.policy.storable import Rules, admit

NOW = 1_700_000_000.0
LAST_MODIFIED = format_http_date(NOW - 3600)


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def make_entry(*response: tuple[str, str], at: float = NOW, body: bytes = b"stored body") -> Entry:
    """The entry ``admit`` makes of a 200 with these fields, received at ``at``."""
    entry = admit(
        key="http://example.com/r",
        url="http://example.com/r",
        host="example.com",
        method="GET",
        request_fields=[],
        status=200,
        reason=b"OK",
        response_fields=fields(*response),
        body=body,
        request_time=at,
        response_time=at,
        rules=Rules(default_ttl=60.0, override=False),
    )
    assert isinstance(entry, Entry), entry
    return entry


def revalidated(entry: Entry, *not_modified: tuple[str, str], at: float) -> Entry:
    """The entry stored after a 304 with these fields, received at ``at`` (as a refresh does)."""
    return make_entry(*_pairs(freshened_fields(entry, fields(*not_modified))), at=at, body=entry.body)


def _pairs(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in raw]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(
            [("ETag", '"up"'), ("Last-Modified", LAST_MODIFIED)],
            [("if-none-match", '"up"'), ("if-modified-since", LAST_MODIFIED)],
            id="both validators",
        ),
        pytest.param([("ETag", 'W/"up"')], [("if-none-match", 'W/"up"')], id="weak etag"),
        pytest.param([("Last-Modified", LAST_MODIFIED)], [("if-modified-since", LAST_MODIFIED)], id="date"),
        pytest.param([], [], id="generated etag only"),
    ],
)
def test_conditional_fields_carry_only_the_upstreams_validators(response, expected):
    """RFC 9111 §4.3.1: the cache sends the stored response's entity tag and Last-Modified; an ETag
    the cache generated means nothing to the upstream and is never sent."""
    entry = make_entry(("Cache-Control", "max-age=60"), *response)
    assert conditional_fields(entry) == fields(*expected)


def test_a_304_replaces_the_stored_fields_it_carries():
    """RFC 9111 §4.3.4 / §3.2: "use other header fields provided in the 304 (Not Modified) response
    to replace all instances of the corresponding header fields in the stored response"."""
    entry = make_entry(
        ("Cache-Control", "max-age=60"),
        ("ETag", '"up"'),
        ("Content-Type", "text/plain"),
        ("X-Version", "1"),
        ("X-Version", "1b"),
        ("Link", "<a>"),
    )
    updated = freshened_fields(
        entry,
        fields(("Cache-Control", "max-age=120"), ("X-Version", "2"), ("Date", format_http_date(NOW + 90))),
    )
    assert get_all(updated, "cache-control") == ["max-age=120"]
    assert get_all(updated, "x-version") == ["2"]
    assert get_all(updated, "content-type") == ["text/plain"]
    assert get_all(updated, "link") == ["<a>"]
    assert get_all(updated, "etag") == ['"up"']
    assert get_all(updated, "date") == [format_http_date(NOW + 90)]


def test_a_304_does_not_change_what_describes_the_stored_body():
    """RFC 9111 §3.2: Content-Length is never updated from a 304, and a cache that stores the
    body as received may keep its Content-Encoding; hop-by-hop fields are not stored (§3.1)."""
    entry = make_entry(("Cache-Control", "max-age=60"), ("ETag", '"up"'), ("Content-Encoding", "gzip"))
    updated = freshened_fields(
        entry,
        fields(
            ("Content-Length", "0"),
            ("Content-Encoding", "br"),
            ("Connection", "close, X-Hop"),
            ("X-Hop", "1"),
            ("Transfer-Encoding", "chunked"),
        ),
    )
    assert get_all(updated, "content-length") == [str(len(entry.body))]
    assert get_all(updated, "content-encoding") == ["gzip"]
    for hop_by_hop in ("x-hop", "connection", "transfer-encoding"):
        assert get_all(updated, hop_by_hop) == []


def test_the_generated_etag_is_left_out_of_the_freshened_fields():
    """A generated ETag belongs to the stored body; admitting the freshened response makes it anew."""
    entry = make_entry(("Cache-Control", "max-age=60"), ("Last-Modified", LAST_MODIFIED))
    assert get_all(freshened_fields(entry, fields(("Cache-Control", "max-age=60"))), "etag") == []
    assert revalidated(entry, ("Cache-Control", "max-age=60"), at=NOW + 90).etag == entry.etag


def test_a_revalidated_entry_is_fresh_again_from_the_304s_date():
    """RFC 9111 §4.3.4: the freshened response's age is counted from the validation (§4.2.3)."""
    entry = make_entry(("Cache-Control", "max-age=60"), ("ETag", '"up"'), ("Date", format_http_date(NOW)))
    again = revalidated(entry, ("Date", format_http_date(NOW + 90)), at=NOW + 90)
    assert (again.date, again.initial_age, again.lifetime) == (NOW + 90, 0, 60)


def test_a_304_without_date_is_dated_on_receipt():
    """RFC 9110 §6.6.1: a recipient with a clock dates a response without Date when it caches it;
    keeping the stored Date would make the revalidated entry look 90 s old, hence stale at once."""
    entry = make_entry(("Cache-Control", "max-age=60"), ("ETag", '"up"'), ("Date", format_http_date(NOW)))
    again = revalidated(entry, ("Cache-Control", "max-age=60"), at=NOW + 90)
    assert (again.date, again.initial_age) == (NOW + 90, 0)
    assert get_all(again.fields, "date") == [format_http_date(NOW + 90)]


def test_the_age_of_a_304_counts_for_the_revalidated_entry():
    """RFC 9111 §4.2.3: a 304 that passed through another cache carries Age; the stored Age is
    never kept (§5.1: the cache recomputes it)."""
    entry = make_entry(("Cache-Control", "max-age=60"), ("ETag", '"up"'))
    again = revalidated(entry, ("Date", format_http_date(NOW + 90)), ("Age", "20"), at=NOW + 90)
    assert again.initial_age == 20
    assert get_all(again.fields, "age") == []


@pytest.mark.parametrize(
    ("stored", "not_modified", "expected"),
    [
        pytest.param([("ETag", '"up"')], [("ETag", '"up"')], True, id="same strong etag"),
        pytest.param([("ETag", '"up"')], [("ETag", '"other"')], False, id="other etag"),
        pytest.param([("ETag", 'W/"up"')], [("ETag", 'W/"up"')], True, id="same weak etag"),
        pytest.param([("ETag", '"up"')], [], True, id="304 without etag"),
        pytest.param([("Last-Modified", LAST_MODIFIED)], [("ETag", '"new"')], False, id="etag we never had"),
        pytest.param([], [("ETag", '"x"')], False, id="generated etag is not the upstream's"),
    ],
)
def test_validator_matches(stored, not_modified, expected):
    """RFC 9111 §4.3.4: a validator in the 304 identifies which stored response it updates; without
    one, it updates the response the cache asked about."""
    entry = make_entry(("Cache-Control", "max-age=60"), *stored)
    assert validator_matches(entry, fields(*not_modified)) is expected
