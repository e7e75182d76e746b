"""HTTP-date parsing and formatting (RFC 9110 §5.6.7)."""

from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime


def parse_http_date(value: str | None) -> float | None:
    """Seconds since the epoch for an HTTP-date (IMF-fixdate, RFC 850 or asctime), else None.

    Invalid dates, including ``Expires: 0``, give None; the caller decides what that means.
    """
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # asctime carries no zone; HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_http_date(seconds: float) -> str:
    """IMF-fixdate, the preferred format (RFC 9110 §5.6.7)."""
    return formatdate(seconds, usegmt=True)
