"""HTTP-date parsing and formatting (RFC 9110 §5.6.7)."""

import time

import pytest

from mitmcache.policy.dates import format_http_date, parse_http_date

SUNDAY = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "  Sun, 06 Nov 1994 08:49:37 GMT  ",
    ],
    ids=["IMF-fixdate", "RFC 850", "asctime", "surrounding whitespace"],
)
def test_all_three_formats_are_accepted(value):
    """RFC 9110 §5.6.7: "A recipient that parses a timestamp value in an HTTP field MUST accept all
    three HTTP-date formats"; asctime carries no zone and is GMT."""
    assert parse_http_date(value) == SUNDAY


@pytest.mark.parametrize("value", [None, "", "0", "-1", "garbage", "Sun, 32 Nov 1994 08:49:37 GMT"])
def test_invalid_dates_are_none(value):
    """RFC 9111 §5.3: invalid dates such as ``Expires: 0`` are not dates; the caller decides."""
    assert parse_http_date(value) is None


def test_format_is_imf_fixdate():
    """RFC 9110 §5.6.7: senders generate IMF-fixdate."""
    assert format_http_date(SUNDAY) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_format_and_parse_round_trip_whole_seconds():
    assert parse_http_date(format_http_date(1_700_000_000.0)) == 1_700_000_000.0


@pytest.mark.parametrize(
    "value",
    [
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 2050 02:01:18 AEST",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
        "Thu, 18 Aug 2050 02:01:18 +0000",
        "2050-08-18T02:01:18Z",
        "Thu, 18 Aug 2050 24:00:00 GMT",
        "Thu, 29 Feb 2050 02:01:18 GMT",
    ],
    ids=[
        "UTC",
        "other zone",
        "two-digit year",
        "no comma",
        "doubled spaces",
        "date dashes",
        "time periods",
        "one-digit hour",
        "numeric zone",
        "ISO 8601",
        "hour 24",
        "no 29 February",
    ],
)
def test_only_the_three_http_date_formats_are_dates(value):
    """RFC 9110 §5.6.7: an HTTP-date is an IMF-fixdate (or one of the two obsolete formats) in GMT;
    anything else is invalid, and an invalid Expires means "already expired" (RFC 9111 §5.3)."""
    assert parse_http_date(value) is None


@pytest.mark.parametrize(
    "value",
    ["THU, 18 Aug 2050 02:01:18 GMT", "Thu, 18 AUG 2050 02:01:18 GMT", "Thu, 18 Aug 2050 02:01:18 gMT"],
    ids=["weekday", "month", "zone"],
)
def test_names_are_accepted_in_any_case(value):
    """RFC 9110 §5.6.7 makes HTTP-date case-sensitive, but a recipient gains nothing by rejecting a
    date whose only fault is the case of a name; caches commonly accept it."""
    assert parse_http_date(value) == parse_http_date("Thu, 18 Aug 2050 02:01:18 GMT")


@pytest.mark.parametrize(
    ("value", "year"),
    [
        ("Thursday, 18-Aug-50 02:01:18 GMT", 2050),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 1994),
        ("Friday, 18-Aug-75 02:01:18 GMT", 2075),
        ("Friday, 18-Aug-76 02:01:18 GMT", 1976),
    ],
)
def test_rfc850_two_digit_years_are_at_most_50_years_ahead(value, year):
    """RFC 9110 §5.6.7: a two-digit year that "appears to be more than 50 years in the future" is
    "the most recent year in the past that had the same last two digits" (here: in 2025)."""
    now = parse_http_date("Wed, 01 Jan 2025 00:00:00 GMT")
    assert time.gmtime(parse_http_date(value, now=now)).tm_year == year


def test_far_future_dates_are_dates():
    """RFC 9110 §5.6.7 sets no upper bound: dates past 2038 (32 bits) or in 2286 are valid."""
    assert parse_http_date("Tue, 19 Jan 2038 03:14:08 GMT") == 2**31
    assert parse_http_date("Sat, 20 Nov 2286 17:46:39 GMT") == 9_999_999_999
