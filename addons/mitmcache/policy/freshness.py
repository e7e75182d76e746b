"""Freshness lifetime and age (RFC 9111 §4.2).

All times are seconds since the epoch (floats); the caller passes the clock in.
"""

from typing import NamedTuple

from .cache_control import DELTA_SECONDS_CAP, Directives, delta_seconds
from .dates import parse_http_date
from .numbers import capped

# RFC 9110 §15.1 "heuristically cacheable" status codes, minus 206: a partial response is never
# stored as if it were complete (RFC 9111 §3.3 allows storing it only as partial content).
HEURISTICALLY_CACHEABLE_STATUS_CODES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

# Directives that give a response a lifetime whatever its status (RFC 9111 §4.2.1, §4.2.2).
_EXPLICITLY_STORABLE = frozenset({"s-maxage", "max-age", "public"})

# The longest heuristic lifetime we give (RFC 9111 §4.2.2 leaves the bound to the cache): a
# resource unchanged for years is still not trusted for more than a day without validation.
HEURISTIC_MAX_SECONDS = 86_400.0


class Lifetime(NamedTuple):
    """How long a response is fresh, and where that number came from (for Cache-Status/logs). A
    named tuple: every stored response builds one, and a frozen dataclass costs three times as much."""

    seconds: float
    source: str  # "s-maxage" | "max-age" | "expires" | "heuristic" | "default" | "override"


def freshness_lifetime(
    status: int,
    directives: Directives,
    expires: list[str],
    date: float,
    *,
    default_ttl: float,
    override: bool,
    last_modified: float | None = None,
    heuristic_percent: float = 0.0,
) -> Lifetime | None:
    """The freshness lifetime of a response (RFC 9111 §4.2.1), or None when it has none at all.

    "A cache can calculate the freshness lifetime ... by evaluating the following rules and using
    the first match: s-maxage (shared cache) ... max-age ... Expires minus Date ... heuristic."
    An invalid s-maxage/max-age/Expires means "already stale" (§4.2.1, §5.3): lifetime 0.
    Where no explicit lifetime exists, for heuristically cacheable statuses and ``public``
    responses: a configured ``default_ttl`` stands in for the heuristic; without one (pure RFC
    mode) the heuristic of §4.2.2 applies -- ``heuristic_percent`` of the time since
    ``last_modified`` -- and without ``Last-Modified`` the lifetime is 0. ``override`` applies
    ``default_ttl`` to every response that has a lifetime at all, ignoring the upstream's: it
    changes how long responses stay fresh, not which may be stored (§3).
    """
    if not (
        not _EXPLICITLY_STORABLE.isdisjoint(directives)
        or expires
        or status in HEURISTICALLY_CACHEABLE_STATUS_CODES
    ):
        return None
    if override:
        return Lifetime(default_ttl, "override")
    for name in ("s-maxage", "max-age"):
        if name in directives:
            return Lifetime(float(delta_seconds(directives, name) or 0), name)
    if expires:
        expires_at = parse_http_date(expires[0])
        return Lifetime(max(0.0, expires_at - date) if expires_at is not None else 0.0, "expires")
    if default_ttl > 0:
        return Lifetime(default_ttl, "default")
    heuristic = heuristic_lifetime(date, last_modified, heuristic_percent)
    return Lifetime(heuristic, "heuristic") if heuristic > 0 else Lifetime(0.0, "default")


def heuristic_lifetime(date: float, last_modified: float | None, percent: float) -> float:
    """RFC 9111 §4.2.2: "If the response has a Last-Modified header field, caches are encouraged to
    use a heuristic expiration value that is no more than some fraction of the interval since that
    time. A typical setting of this fraction might be 10%." Bounded by HEURISTIC_MAX_SECONDS; 0
    without Last-Modified, or with one later than Date (RFC 9110 §8.8.2.1: not a valid one)."""
    if last_modified is None or percent <= 0 or last_modified > date:
        return 0.0
    return min(HEURISTIC_MAX_SECONDS, (date - last_modified) * percent / 100)


def corrected_initial_age(
    age_values: list[str], date: float, request_time: float, response_time: float, *, use_date: bool = True
) -> float:
    """``corrected_initial_age`` of RFC 9111 §4.2.3, computed once when the response arrives.

    apparent_age = max(0, response_time - date_value); corrected_age_value = age_value +
    response_delay; corrected_initial_age = max(apparent_age, corrected_age_value).

    ``use_date=False`` leaves out the apparent age: for a lifetime the cache assigned itself,
    counted from when the response arrived, a ``Date`` truncated to whole seconds (or a skewed
    upstream clock) would otherwise eat up to a second of a short configured lifetime.
    """
    age_value = _age_value(age_values)
    apparent_age = max(0.0, response_time - date) if use_date else 0.0
    response_delay = max(0.0, response_time - request_time)
    return max(apparent_age, age_value + response_delay)


def _age_value(age_values: list[str]) -> float:
    """The ``Age`` field's delta-seconds (RFC 9111 §5.1): "a cache encountering a message with a
    list-based Age field value SHOULD use the first member"; an invalid one is ignored (0)."""
    if not age_values:
        return 0.0
    raw = age_values[0].split(",", 1)[0].strip()
    if not raw.isascii() or not raw.isdigit():
        return 0.0
    return float(capped(raw, DELTA_SECONDS_CAP))


def current_age(initial_age: float, response_time: float, now: float) -> float:
    """current_age = corrected_initial_age + resident_time (RFC 9111 §4.2.3)."""
    return initial_age + max(0.0, now - response_time)
