"""Range requests answered from a complete stored response (RFC 9110 §14, §13.1.5)."""

import pytest

from mitmcache.policy.dates import format_http_date
from mitmcache.policy.ranges import (
    FULL,
    MAX_RANGES,
    ByteRange,
    Kind,
    Plan,
    if_range_holds,
    parse_range,
    plan,
)

NOW = 1_700_000_000.0
LAST_MODIFIED = format_http_date(NOW - 3600)
ETAG = '"v1"'


def answer(
    *ranges: str, if_range: str | None = None, length: int = 10, multipart: bool = True, etag: str = ETAG
) -> Plan:
    return plan(
        list(ranges),
        if_range,
        length=length,
        etag=etag,
        last_modified=LAST_MODIFIED,
        date=NOW,
        multipart_allowed=multipart,
    )


def partial(*ranges: tuple[int, int]) -> Plan:
    return Plan(Kind.PARTIAL, tuple(ByteRange(first, last) for first, last in ranges))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("bytes=0-1", partial((0, 1)), id="first-last"),
        pytest.param("bytes=1-", partial((1, 9)), id="first-"),
        pytest.param("bytes=-1", partial((9, 9)), id="suffix"),
        pytest.param("bytes=-20", partial((0, 9)), id="suffix longer than the body"),
        pytest.param("bytes=5-100", partial((5, 9)), id="last-pos clipped"),
        pytest.param("BYTES=0-0", partial((0, 0)), id="unit case-insensitive"),
        pytest.param("bytes=0-1, 5-6", partial((0, 1), (5, 6)), id="two ranges"),
        pytest.param("bytes=0-1, 20-30", partial((0, 1)), id="unsatisfiable member dropped"),
        pytest.param("bytes=,0-1,", partial((0, 1)), id="empty list members"),
    ],
)
def test_satisfiable_ranges(value, expected):
    """RFC 9110 §14.1.2: int-range, open int-range and suffix-range; positions past the end are
    clipped to the representation; §14.2: the satisfiable ranges are sent."""
    assert answer(value) == expected


@pytest.mark.parametrize(
    "value",
    ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=20-, 30-"],
    ids=["first-pos at the end", "past the end", "zero suffix", "all unsatisfiable"],
)
def test_unsatisfiable_ranges_give_416(value):
    """RFC 9110 §14.1.1: a first-pos at or past the length, or a zero suffix-length, is
    unsatisfiable; §15.5.17: with none satisfiable the answer is 416."""
    assert answer(value) == Plan(Kind.UNSATISFIABLE)


def test_a_zero_length_body_satisfies_no_range():
    """RFC 9110 §14.1.1: for a zero-length representation nothing is satisfiable."""
    assert answer("bytes=-5", length=0) == Plan(Kind.UNSATISFIABLE)
    assert answer("bytes=0-", length=0) == Plan(Kind.UNSATISFIABLE)


@pytest.mark.parametrize(
    "value",
    ["items=0-1", "bytes 0-1", "bytes=1-0", "bytes=a-b", "bytes=-", "bytes=0-1-2", "bytes=", "bytes=+1-2"],
    ids=[
        "other unit",
        "no =",
        "last before first",
        "not numbers",
        "lone dash",
        "two dashes",
        "empty",
        "sign",
    ],
)
def test_invalid_range_fields_are_ignored(value):
    """RFC 9110 §14.2: "An origin server MUST ignore a Range header field that contains a range
    unit it does not understand"; an invalid ranges-specifier may be ignored: the whole response."""
    assert parse_range(value) is None
    assert answer(value) == FULL


def test_no_range_no_plan():
    assert answer() == FULL


@pytest.mark.parametrize(
    ("ranges", "multipart", "expected"),
    [
        pytest.param(("bytes=0-4, 3-6",), True, FULL, id="overlapping"),
        pytest.param(("bytes=0-1, 5-6",), False, FULL, id="content-coded body"),
        pytest.param(
            ("bytes=" + ", ".join(f"{i}-{i}" for i in range(MAX_RANGES + 1)),), True, FULL, id="too many"
        ),
        pytest.param(("bytes=0-1", "bytes=5-6"), True, FULL, id="two field lines: malformed"),
        pytest.param(("bytes=0-1, 5-6",), True, partial((0, 1), (5, 6)), id="multipart"),
    ],
)
def test_several_ranges(ranges, multipart, expected):
    """RFC 9110 §14.2: a server "MAY ignore the Range header field" -- we do for overlapping or
    many ranges, which §14.2 warns against, and for a content-coded body, whose parts would not
    carry its coding; otherwise several ranges are one multipart/byteranges 206 (§14.6). Range is
    not a list field (§14.2): two lines of it are malformed, and ignored."""
    assert answer(*ranges, length=40, multipart=multipart) == expected


@pytest.mark.parametrize(
    ("if_range", "etag", "holds"),
    [
        pytest.param('"v1"', '"v1"', True, id="same strong tag"),
        pytest.param('"v2"', '"v1"', False, id="other tag"),
        pytest.param('W/"v1"', '"v1"', False, id="weak tag in If-Range"),
        pytest.param('"v1"', 'W/"v1"', False, id="weak stored tag"),
        pytest.param(LAST_MODIFIED, '"v1"', True, id="same Last-Modified, strong"),
        pytest.param(format_http_date(NOW - 3599), '"v1"', False, id="other date"),
        pytest.param("yesterday", '"v1"', False, id="malformed"),
    ],
)
def test_if_range(if_range, etag, holds):
    """RFC 9110 §13.1.5: If-Range holds for an entity-tag that matches by strong comparison, or a
    date equal to a strong Last-Modified; otherwise the Range is ignored (the whole response)."""
    assert if_range_holds(if_range, etag, LAST_MODIFIED, NOW) is holds
    assert answer("bytes=0-1", if_range=if_range, etag=etag) == (partial((0, 1)) if holds else FULL)


def test_a_last_modified_close_to_date_is_weak_for_if_range():
    """RFC 9110 §8.8.2.2: Last-Modified is a strong validator only when the response's Date is
    sufficiently later than it (we use 60 seconds), so If-Range with it fails otherwise."""
    assert not if_range_holds(LAST_MODIFIED, ETAG, LAST_MODIFIED, NOW - 3600 + 10)


def test_content_range_text():
    """RFC 9110 §14.4: Content-Range: bytes first-last/complete-length."""
    assert ByteRange(4, 9).content_range(10) == "bytes 4-9/10"
    assert ByteRange(4, 9).length == 6


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("bytes=0-" + "9" * 5000, partial((0, 9)), id="huge last-pos clipped"),
        pytest.param("bytes=-" + "9" * 5000, partial((0, 9)), id="huge suffix is the whole body"),
        pytest.param("bytes=" + "9" * 5000 + "-", Plan(Kind.UNSATISFIABLE), id="huge first-pos"),
    ],
)
def test_positions_with_more_digits_than_int_converts_are_past_any_end(value, expected):
    """A position of thousands of digits is read as larger than any body, never as an error."""
    assert answer(value) == expected
