"""HTTP-date parsing and formatting (RFC 9110 §5.6.7).

Parsing is strict about the shape of the three formats the RFC allows -- a date that only looks
like one (a zone other than GMT, a two-digit year in IMF-fixdate, a missing comma, doubled spaces,
a one-digit hour) is invalid, which for ``Expires`` means "already expired" (RFC 9111 §5.3) --
but, like most caches, lenient about the case of day names, month names and ``GMT``.
"""

import calendar
import functools
import re
import time
from email.utils import formatdate

_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_DAY_LONG = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = "(" + "|".join(_MONTHS) + ")"
_TIME = r"(\d\d):(\d\d):(\d\d)"

# IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
_IMF_FIXDATE = re.compile(rf"{_DAY}, (\d\d) {_MONTH} (\d{{4}}) {_TIME} gmt", re.IGNORECASE | re.ASCII)
# obsolete RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
_RFC850 = re.compile(rf"{_DAY_LONG}, (\d\d)-{_MONTH}-(\d\d) {_TIME} gmt", re.IGNORECASE | re.ASCII)
# obsolete asctime: Sun Nov  6 08:49:37 1994
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} (\d\d| \d) {_TIME} (\d{{4}})", re.IGNORECASE | re.ASCII)


def parse_http_date(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds since the epoch for an HTTP-date (IMF-fixdate, RFC 850 or asctime), else None.

    Invalid dates, including ``Expires: 0``, give None; the caller decides what that means.
    ``now`` anchors the two-digit years of RFC 850 dates (default: the current time).
    """
    if not value:
        return None
    text = value.strip()
    matched, parsed = _parse_absolute(text)
    if matched:
        return parsed
    if match := _RFC850.fullmatch(text):
        day, month, short_year, hour, minute, second = match.groups()
        year = _rfc850_year(int(short_year), time.time() if now is None else now)
        return _timestamp(
            year, _MONTHS.index(month.lower()) + 1, int(day), int(hour), int(minute), int(second)
        )
    return None


@functools.lru_cache(maxsize=1024)
def _parse_absolute(text: str) -> tuple[bool, float | None]:
    """Whether ``text`` has the shape of one of the two formats with a four-digit year, whose meaning
    does not depend on the clock, and the time it names (None if invalid). Cached:
    every response of one second carries the same ``Date``, and ``Last-Modified`` and ``Expires``
    values repeat too."""
    if match := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hour, minute, second = match.groups()
    elif match := _ASCTIME.fullmatch(text):
        month, day, hour, minute, second, year = match.groups()
    else:
        return False, None
    return True, _timestamp(
        int(year), _MONTHS.index(month.lower()) + 1, int(day), int(hour), int(minute), int(second)
    )


def _rfc850_year(short_year: int, now: float) -> int:
    """RFC 9110 §5.6.7: a two-digit year that "appears to be more than 50 years in the future" is
    "the most recent year in the past that had the same last two digits"."""
    this_year = time.gmtime(now).tm_year
    year = this_year - this_year % 100 + short_year
    if year > this_year + 50:
        year -= 100
    return year


def _timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    if year < 1 or not (1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if not (hour < 24 and minute < 60 and second < 61):  # 60: a leap second
        return None
    return float(calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)))


def format_http_date(seconds: float) -> str:
    """IMF-fixdate, the preferred format (RFC 9110 §5.6.7)."""
    return formatdate(seconds, usegmt=True)
