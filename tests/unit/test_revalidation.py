"""Validating a stored response with the upstream (RFC 9111 §4.3)."""

import pytest

from mitmcache.entry import Entry
from mitmcache.policy.dates import format_http_date
from mitmcache.policy.fields import get_all
from mitmcache.policy.revalidation import (
    conditional_fields,
    freshened_fields,
    head_freshens,
    revalidation_request_fields,
    select_for_update,
    validator_matches,
)
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


# ---- §4.3.4: which stored responses a 304 freshens ----


def variant(etag: str | None = None, last_modified: str | None = None, *, at: float = NOW) -> Entry:
    response = [("Cache-Control", "max-age=60")]
    if etag is not None:
        response.append(("ETag", etag))
    if last_modified is not None:
        response.append(("Last-Modified", last_modified))
    return make_entry(*response, at=at)


def test_a_strong_validator_selects_every_variant_that_has_it():
    """RFC 9111 §4.3.4: "All the stored responses that have one of those same strong validators are
    identified for update"."""
    asked, same, other = variant('"a"'), variant('"a"'), variant('"b"')
    selected = select_for_update(asked, [asked, same, other], fields(("ETag", '"a"')))
    assert selected == [asked, same]


def test_a_strong_validator_that_matches_nothing_selects_nothing():
    """RFC 9111 §4.3.4: "If none of the stored responses contain at least one of the same strong
    validators, then the cache MUST NOT use the new response to update any stored responses"."""
    asked = variant('"a"')
    assert select_for_update(asked, [asked], fields(("ETag", '"b"'))) == []
    assert select_for_update(variant('W/"a"'), [], fields(("ETag", '"a"'))) == []


def test_a_weak_validator_selects_the_most_recent_match():
    """RFC 9111 §4.3.4: with weak validators only, "the most recent of those matching stored
    responses is identified for update"."""
    older, newer, other = variant('W/"a"', at=NOW - 10), variant('"a"', at=NOW), variant('"b"', at=NOW + 5)
    assert select_for_update(older, [older, newer, other], fields(("ETag", 'W/"a"'))) == [newer]


def test_last_modified_is_a_weak_validator():
    """RFC 9110 §8.8.2.2 / RFC 9111 §4.3.4: a 304 with only Last-Modified selects the most recent
    stored response with the same date."""
    asked, other = variant(last_modified=LAST_MODIFIED), variant(last_modified=format_http_date(NOW))
    assert select_for_update(asked, [asked, other], fields(("Last-Modified", LAST_MODIFIED))) == [asked]
    assert select_for_update(asked, [asked], fields(("Last-Modified", format_http_date(NOW - 1)))) == []


def test_a_304_without_validators_freshens_what_was_asked_about():
    """RFC 9111 §4.3.4: a 304 with no validator updates the stored response; our conditional request
    named ``asked``'s validators, so that is the one."""
    asked, other = variant('"a"'), variant('"a"')
    assert select_for_update(asked, [other], fields(("Date", format_http_date(NOW)))) == [asked]


# ---- §4.3.5: HEAD ----


@pytest.mark.parametrize(
    ("head", "freshens"),
    [
        pytest.param([("ETag", '"a"'), ("Content-Length", "11")], True, id="same validators and length"),
        pytest.param([("X-New", "1")], True, id="nothing to compare"),
        pytest.param([("ETag", '"b"')], False, id="other ETag"),
        pytest.param([("Last-Modified", format_http_date(NOW))], False, id="other Last-Modified"),
        pytest.param([("Content-Length", "12")], False, id="other length"),
    ],
)
def test_a_head_response_freshens_or_invalidates_the_stored_get(head, freshens):
    """RFC 9111 §4.3.5: a 200 to HEAD updates the stored GET response, unless its Content-Length,
    ETag or Last-Modified differ from the stored response's, which is then invalidated."""
    entry = make_entry(("Cache-Control", "max-age=60"), ("ETag", '"a"'), ("Last-Modified", LAST_MODIFIED))
    assert len(entry.body) == 11
    assert head_freshens(entry, fields(*head)) is freshens


def test_a_304_does_not_update_content_range():
    """RFC 9111 §3.2: fields "automatically processed and removed by the recipient, such as the
    Content-Range header field" need not be updated (the stored body is complete)."""
    entry = make_entry(("Cache-Control", "max-age=60"), ("ETag", '"a"'))
    assert get_all(freshened_fields(entry, fields(("Content-Range", "bytes 0-1/11"))), "content-range") == []


def test_a_revalidation_for_a_client_starts_from_the_clients_request():
    """RFC 9111 §4.3.1: "a cache ... starts with a request it is attempting to satisfy"; the
    client's own preconditions, Range and framing are not passed on."""
    client = fields(
        ("Host", "example.com"),
        ("Accept", "text/html"),
        ("If-None-Match", '"mine"'),
        ("If-Modified-Since", LAST_MODIFIED),
        ("Range", "bytes=0-1"),
        ("Connection", "keep-alive"),
        ("Content-Length", "0"),
    )
    assert revalidation_request_fields(client) == fields(("Host", "example.com"), ("Accept", "text/html"))
