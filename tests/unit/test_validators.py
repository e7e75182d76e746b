"""Validators and conditional requests answered from the cache (RFC 9110 §8.8, §13)."""

import time

import pytest

from mitmcache.policy.dates import format_http_date
from mitmcache.policy.validators import (
    MAX_ENTITY_TAGS,
    answer_not_modified,
    generate_etag,
    parse_entity_tags,
    stored_not_modified,
)

LAST_MODIFIED = 1_700_000_000.0
STORED_ETAG = '"v1"'


def not_modified(
    if_none_match: list[str] | None = None,
    if_modified_since: float | str | None = None,
    *,
    etag: str = STORED_ETAG,
    last_modified: float = LAST_MODIFIED,
) -> bool:
    """Whether a request with these conditions gets a 304 from a stored response."""
    if isinstance(if_modified_since, float):
        if_modified_since = format_http_date(if_modified_since)
    return answer_not_modified(if_none_match or [], if_modified_since, etag, last_modified)


def test_generated_etag_is_strong_and_well_formed():
    """RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; ours is strong (no ``W/``)."""
    etag = generate_etag(b"body")
    assert etag.startswith('"') and etag.endswith('"')
    assert parse_entity_tags(etag) == [etag]


def test_generated_etag_depends_only_on_the_body():
    """RFC 9110 §8.8.3: a strong validator changes whenever the representation data changes."""
    assert generate_etag(b"body") == generate_etag(b"body")
    assert generate_etag(b"body") != generate_etag(b"body!")
    assert generate_etag(b"") != generate_etag(b"\x00")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"a"', ['"a"']),
        ('W/"a"', ['"a"']),
        ('"a", W/"b" ,"c"', ['"a"', '"b"', '"c"']),
        ('""', ['""']),
        ("*", ["*"]),
        ("  *  ", ["*"]),
        ('"a", , "b"', ['"a"', '"b"']),
        ('"a",', ['"a"']),
        ('"a,b"', ['"a,b"']),
        ("a", None),
        ('"a', None),
        ('w/"a"', None),
        ('"a" "b"', None),
        ('*, "a"', None),
        ('"a b"', None),
        ("", None),
    ],
)
def test_parse_entity_tags(value, expected):
    """RFC 9110 §13.1.2: If-None-Match = "*" / #entity-tag; empty list elements are ignored
    (§5.6.1); anything else is malformed (None)."""
    assert parse_entity_tags(value) == expected


@pytest.mark.parametrize(
    ("if_none_match", "etag", "expected"),
    [
        pytest.param(['"v1"'], '"v1"', True, id="same tag"),
        pytest.param(['"v0", "v1"'], '"v1"', True, id="in a list"),
        pytest.param(['"v0"', '"v1"'], '"v1"', True, id="on another line"),
        pytest.param(['W/"v1"'], '"v1"', True, id="weak request tag"),
        pytest.param(['"v1"'], 'W/"v1"', True, id="weak stored tag"),
        pytest.param(["*"], '"v1"', True, id="star"),
        pytest.param(['"v2"'], '"v1"', False, id="other tag"),
        pytest.param(['"V1"'], '"v1"', False, id="tags are case-sensitive"),
    ],
)
def test_if_none_match_uses_weak_comparison(if_none_match, etag, expected):
    """RFC 9110 §13.1.2: "A recipient MUST use the weak comparison function when comparing
    entity tags for If-None-Match"; the condition is false (304) when any tag matches."""
    assert not_modified(if_none_match, etag=etag) is expected


def test_if_none_match_decides_alone_when_present():
    """RFC 9110 §13.2.2 step 3: If-Modified-Since is evaluated only "when If-None-Match is not
    present"; §13.1.3: a recipient MUST ignore it when the request has If-None-Match."""
    assert not_modified(['"other"'], LAST_MODIFIED + 10) is False
    assert not_modified(['"v1"'], LAST_MODIFIED - 10) is True


def test_a_malformed_if_none_match_is_ignored():
    """RFC 9110 §13.1.2 defines no meaning for a malformed list: the field is ignored, as if absent."""
    assert not_modified(["v1"]) is False
    assert not_modified(["v1"], LAST_MODIFIED) is True
    assert not_modified(['"v1"', "garbage"]) is False


@pytest.mark.parametrize(
    ("if_modified_since", "expected"),
    [
        pytest.param(LAST_MODIFIED, True, id="same date"),
        pytest.param(LAST_MODIFIED + 60, True, id="later date"),
        pytest.param(LAST_MODIFIED - 1, False, id="modified since"),
        pytest.param("yesterday", False, id="invalid date ignored"),
        pytest.param("0", False, id="zero ignored"),
    ],
)
def test_if_modified_since(if_modified_since, expected):
    """RFC 9110 §13.1.3: the condition is false (304) when the last modification is earlier than
    or equal to the date; an invalid HTTP-date is ignored."""
    assert not_modified(if_modified_since=if_modified_since) is expected


def test_an_unconditional_request_never_gets_304():
    """RFC 9110 §15.4.5: 304 answers a conditional request only."""
    assert not_modified() is False
    assert not_modified([], "") is False


def test_a_stored_response_without_last_modified_is_compared_by_its_date():
    """RFC 9111 §4.3.2: If-Modified-Since is compared with Last-Modified, else with the stored Date."""
    since = format_http_date(LAST_MODIFIED)
    assert stored_not_modified([], since, '"e"', None, LAST_MODIFIED - 5) is True
    assert stored_not_modified([], since, '"e"', None, LAST_MODIFIED + 5) is False
    assert (
        stored_not_modified([], since, '"e"', format_http_date(LAST_MODIFIED + 5), LAST_MODIFIED - 5) is False
    )


def test_a_megabyte_of_empty_tags_is_read_in_linear_time():
    """Each tag used to copy the rest of the field: 1.8 MB of ``"",`` took ~13 s of the event loop."""
    value = '"",' * 600_000
    started = time.perf_counter()
    assert answer_not_modified([value], None, '"v1"', 0.0) is False
    assert time.perf_counter() - started < 0.5


def test_only_the_first_tags_are_looked_at():
    """A tag listed after MAX_ENTITY_TAGS others is not read: the full response is sent (no 304)."""
    others = ", ".join(f'"x{i}"' for i in range(MAX_ENTITY_TAGS))
    assert parse_entity_tags(others + ', "v1"') == [f'"x{i}"' for i in range(MAX_ENTITY_TAGS)]
    assert answer_not_modified([others + ', "v1"'], None, '"v1"', 0.0) is False
    assert answer_not_modified(['"x0", "v1"'], None, '"v1"', 0.0) is True


def test_the_tag_count_is_shared_by_every_line_of_the_field():
    lines = [f'"x{i}"' for i in range(MAX_ENTITY_TAGS)] + ['"v1"']
    assert answer_not_modified(lines, None, '"v1"', 0.0) is False
