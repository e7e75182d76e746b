"""HTTP-date parsing and formatting (RFC 9110 §5.6.7)."""

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
