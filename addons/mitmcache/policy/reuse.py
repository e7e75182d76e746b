"""May a stored response answer this request, and how (RFC 9111 §4, §4.2.4, §5.2.1; RFC 5861)?"""

import math
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from ..entry import Entry, Meta
from . import cache_control
from .fields import split_list
from .freshness import current_age

ERROR_STATUSES = frozenset({500, 502, 503, 504})  # RFC 5861 §4: what counts as an error


class Use(Enum):
    FRESH = "fresh"  # serve it
    STALE = "stale"  # serve it stale and refresh it in the background
    REVALIDATE = "revalidate"  # ask the upstream first (conditionally when it has validators)


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    """The request's cache directives (RFC 9111 §5.2.1) that change how an entry may be used."""

    no_cache: bool = False
    no_store: bool = False
    only_if_cached: bool = False
    max_age: int | None = None
    min_fresh: int | None = None
    max_stale: float | None = None  # math.inf for a bare max-stale
    stale_if_error: int | None = None  # RFC 5861 §4: also a request directive


NO_DIRECTIVES = RequestDirectives()


def request_directives(cache_control_values: list[str], pragma_values: list[str]) -> RequestDirectives:
    """Parse request ``Cache-Control``; ``Pragma: no-cache`` counts only without it (RFC 9111 §5.4)."""
    if not cache_control_values:
        pragma = {member.lower() for member in split_list(pragma_values)}
        return RequestDirectives(no_cache=True) if "no-cache" in pragma else NO_DIRECTIVES
    cc = cache_control.parse(cache_control_values)
    max_stale: float | None = None
    if "max-stale" in cc:
        max_stale = math.inf if cc["max-stale"] is None else cache_control.delta_seconds(cc, "max-stale")
    return RequestDirectives(
        no_cache="no-cache" in cc,
        no_store="no-store" in cc,
        only_if_cached="only-if-cached" in cc,
        max_age=cache_control.delta_seconds(cc, "max-age"),
        min_fresh=cache_control.delta_seconds(cc, "min-fresh"),
        max_stale=max_stale,
        stale_if_error=cache_control.delta_seconds(cc, "stale-if-error"),
    )


class Decision(NamedTuple):
    """Built on every hit: a named tuple for the reason ``Status`` is one (policy/cache_status.py)."""

    use: Use
    reason: str  # why, for Cache-Status detail and logs
    age: float
    ttl: float  # remaining freshness; negative when stale


def decide(
    entry: Entry,
    meta: Meta,
    request: RequestDirectives,
    now: float,
    *,
    refresh_window: float,
    serve_stale_in_window: bool,
    error_limit: float = 0.0,
) -> Decision:
    """How ``entry`` may answer a request now.

    Stale entries are served (while refreshed in the background) only where permitted: by the
    client (``max-stale``), by the upstream (``stale-while-revalidate``), or by the operator's
    refresh window for entries a client asked for within it -- and never when the upstream said
    ``must-revalidate``, ``proxy-revalidate`` or ``s-maxage`` (RFC 9111 §4.2.4, §5.2.2.2).
    While refreshes of the entry keep failing, it is served stale only within the stale-if-error
    allowance (the upstream's, or ``error_limit``), so an upstream that stays down does not turn
    into ever older data. ``meta.last_access`` must still be the time of the previous request.
    """
    age = current_age(entry.initial_age, entry.response_time, now)
    ttl = entry.lifetime - age

    if request.no_cache:
        return Decision(Use.REVALIDATE, "request-no-cache", age, ttl)
    if entry.no_cache:
        return Decision(Use.REVALIDATE, "no-cache", age, ttl)
    if request.max_age is not None and age > request.max_age:
        return Decision(Use.REVALIDATE, "request-max-age", age, ttl)
    if ttl > 0:
        if request.min_fresh is not None and ttl < request.min_fresh:
            return Decision(Use.REVALIDATE, "request-min-fresh", age, ttl)
        return Decision(Use.FRESH, "fresh", age, ttl)
    staleness = -ttl
    if entry.must_revalidate:
        return Decision(Use.REVALIDATE, "must-revalidate", age, ttl)
    if meta.refresh_failures and not may_serve_stale_on_error(entry, now, error_limit):
        return Decision(Use.REVALIDATE, "refresh-failing", age, ttl)
    if request.max_stale is not None and staleness <= request.max_stale:
        return Decision(Use.STALE, "max-stale", age, ttl)
    if entry.stale_while_revalidate and staleness <= entry.stale_while_revalidate:
        return Decision(Use.STALE, "stale-while-revalidate", age, ttl)
    if serve_stale_in_window and now - meta.last_access <= refresh_window:
        return Decision(Use.STALE, "refresh-window", age, ttl)
    return Decision(Use.REVALIDATE, "stale", age, ttl)


def may_serve_stale_on_error(
    entry: Entry, now: float, configured_limit: float, request_limit: float | None = None
) -> bool:
    """Whether a stale copy may stand in for a failed upstream (RFC 5861 §4, RFC 9111 §4.2.4).

    The upstream's ``stale-if-error`` allows it explicitly; otherwise the client's
    ``stale-if-error`` (``request_limit``) or the operator's limit does, unless the upstream forbade
    serving stale at all.
    """
    staleness = current_age(entry.initial_age, entry.response_time, now) - entry.lifetime
    if staleness <= 0:
        return True
    if staleness <= entry.stale_if_error:
        return True
    if entry.must_revalidate or entry.no_cache:
        return False
    if request_limit is not None and staleness <= request_limit:
        return True
    return staleness <= configured_limit


def stale_on_error_limit(configured_limit: float, *, disconnected: bool, pure_rfc: bool) -> float:
    """How stale a copy the operator's own allowance lets stand in for a failed upstream.

    RFC 9111 §4.2.4: "A cache MUST NOT generate a stale response unless it is disconnected or doing
    so is explicitly permitted by the client or origin server". In pure RFC mode the operator's
    limit therefore covers only an upstream that cannot be reached (or does not answer in time);
    an upstream that answers with an error gets its error passed on, unless its own or the
    client's ``stale-if-error`` allows stale. With a configured default lifetime (reverse-proxy-rust's
    forced lifetime, ``DEFAULT_CACHE_EXPIRY_TIME_SECS``) the limit covers both, as documented for ``cache_stale_if_error``.
    """
    return configured_limit if disconnected or not pure_rfc else 0.0
