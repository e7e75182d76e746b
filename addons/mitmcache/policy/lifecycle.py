"""What happens to a stored entry over time, and to a request on its way through the cache: pure
decisions, no I/O (the engine does the I/O each step asks for).

An entry's life: stored, fresh, stale; refreshed in the background, kept stale for revalidation or
for standing in for a failing upstream, and finally dropped. How long a stale copy is kept is
decided here (``keep_until``), and what to do when an entry's check time comes (``at_check``).

A request's life is a small state machine (``Step``): each function below takes what the previous
step found and names the next step; the engine's driver (``lookup.py``) is a flat loop over them.
"""

from dataclasses import dataclass
from enum import Enum

from ..entry import Entry, Meta
from .reuse import Use

# Request fields that carry a client's credentials: a background refresh never sends them.
CREDENTIAL_FIELDS = frozenset({"authorization", "cookie", "proxy-authorization"})
RETRY_AFTER_REFRESH = 1.0  # a refresh that fails keeps the entry: look again this much later


class RefreshMode(Enum):
    ON_REQUEST = "on-request"  # refresh at expiry only what a client asked for since it was stored
    CONTINUOUS = "continuous"  # refresh at every expiry while a client asked within the window


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The settings that decide an entry's life (built once from ``config.Settings``)."""

    refresh_window: float
    refresh_ahead: float
    refresh_mode: RefreshMode
    stale_if_error: float  # the operator's allowance (CACHE_STALE_IF_ERROR_SECS)
    keep_stale: float  # how long an expired copy with validators is kept for revalidation
    pure_rfc: bool  # no configured default lifetime: fetch nothing no client asked for


def refreshable_in_background(entry: Entry) -> bool:
    """Whether a refresh that no client waits for can fetch ``entry``: not when it varies on a
    client's credentials, which such a refresh would have to replay. Those entries are
    revalidated by the next client that asks, with its own request, or dropped."""
    return not entry.vary or not any(name in CREDENTIAL_FIELDS for name, _ in entry.vary)


def keep_until(entry: Entry, rules: Lifecycle) -> float:
    """Until when a stored copy may be used at all: its expiry plus the longest of the upstream's
    own stale allowances (stale-while-revalidate, stale-if-error), the operator's stale-if-error,
    the refresh window, and -- for a copy the upstream can revalidate (ETag, Last-Modified) -- the
    keep time (as Varnish's ``keep``): until then a request may still revalidate it (RFC 9111
    §4.3), stand it in for an unreachable upstream (§4.2.4) or serve it within ``max-stale``. A
    response that arrived stale already (its ``Age`` past its lifetime) counts from its arrival."""
    stale_use = max(
        entry.stale_while_revalidate,
        entry.stale_if_error,
        rules.stale_if_error,
        rules.refresh_window,
        rules.keep_stale if entry.has_validators else 0.0,
    )
    return max(entry.expires_at, entry.response_time) + stale_use


def kept_while_asked(at: float, rules: Lifecycle) -> float:
    """A client asking at ``at`` keeps the entry stored through the refresh window after it."""
    return at + rules.refresh_window


def first_check(entry: Entry, keep: float, rules: Lifecycle, jitter: float) -> float:
    """When to look at a newly stored entry: shortly before expiry with refresh-ahead (``jitter`` in
    0.8..1.0 spreads keys stored together), else at expiry; never after it may be dropped."""
    expires = entry.expires_at
    when = expires - rules.refresh_ahead * jitter if rules.refresh_ahead else expires
    return min(when, keep)


def _refreshable(entry: Entry, rules: Lifecycle) -> bool:
    # Entries that are never fresh (max-age=0, no-cache) are revalidated on use; refreshing them
    # ahead would only repeat at every expiry, that is at once. Entries that vary on credentials
    # are revalidated on use too: a refresh would replay a client's Cookie. Pure RFC 9111 mode
    # fetches nothing no client asked for, unless refresh-ahead was asked for explicitly.
    if entry.lifetime <= 0 or entry.no_cache or not refreshable_in_background(entry):
        return False
    return not rules.pure_rfc or rules.refresh_ahead > 0


def wants_refresh(meta: Meta, now: float, rules: Lifecycle) -> bool:
    """Whether clients' requests call for a background refresh now: one asked within the refresh
    window, and -- on request -- since this copy was stored, so that background fetches of a key
    never outnumber the client requests for it."""
    if now - meta.last_access > rules.refresh_window:
        return False
    return rules.refresh_mode is RefreshMode.CONTINUOUS or meta.asked_since_stored


class Action(Enum):
    DROP = "drop"  # its lifetime ended
    REFRESH = "refresh"  # start a background refresh, then look again at ``when``
    WAIT = "wait"  # look again at ``when``


@dataclass(frozen=True, slots=True)
class Check:
    action: Action
    when: float = 0.0
    ahead: bool = False  # for REFRESH: before expiry (refresh-ahead) rather than at it


def at_check(entry: Entry, meta: Meta, keep: float, now: float, rules: Lifecycle) -> Check:
    """What to do when an entry's check time has come."""
    if now >= keep:
        return Check(Action.DROP)
    expires = entry.expires_at
    if _refreshable(entry, rules) and wants_refresh(meta, now, rules):
        if now < meta.retry_at:
            return Check(Action.WAIT, min(meta.retry_at, keep))
        return Check(Action.REFRESH, min(max(now, expires) + RETRY_AFTER_REFRESH, keep), ahead=now < expires)
    if now < expires:
        return Check(Action.WAIT, expires)  # ahead, but not asked for: look again at expiry
    return Check(Action.WAIT, keep)


def refresh_on_hit(use: Use, ttl: float, rules: Lifecycle) -> bool:
    """Whether answering a request from a stored copy starts a background refresh: a stale copy
    served on the promise of one, or a fresh one within the refresh-ahead time."""
    return use is Use.STALE or (use is Use.FRESH and 0 < ttl <= rules.refresh_ahead)


# -- the request ----------------------------------------------------------------------------------


class Step(Enum):
    SERVE = "serve"  # answer from the stored copy (HIT)
    SERVE_STALE = "serve-stale"  # answer from the stale copy, refresh in the background
    REVALIDATE = "revalidate"  # one conditional fetch for the waiting client (and others)
    FORWARD_HEAD = "forward-head"  # a HEAD goes upstream; its 200 freshens the stored GET
    REFUSE = "refuse"  # only-if-cached and nothing usable: 504 (RFC 9111 §5.2.1.7)
    LEAD = "lead"  # fetch it upstream, others wait for this fetch (if no fetch is under way)
    FORWARD = "forward"  # go upstream without leading (hit-for-miss, nothing to wait for)
    WAIT = "wait"  # wait for the fetch under way (then: re-read the store, or look again)


def with_entry(use: Use, *, only_if_cached: bool, head: bool, busy: bool) -> Step:
    """The next step for a request that found a stored copy, given what ``reuse.decide`` said."""
    if use is Use.FRESH:
        return Step.SERVE
    if use is Use.STALE:
        return Step.SERVE_STALE
    if only_if_cached:
        return Step.REFUSE
    if head and not busy:
        return Step.FORWARD_HEAD  # RFC 9111 §4.3.5
    return Step.REVALIDATE


def without_entry(*, only_if_cached: bool, hit_for_miss: bool, may_lead: bool, busy: bool) -> Step:
    """The next step for a request that found no stored copy. Only a plain GET leads: a HEAD's or a
    Range request's answer is not stored, and fetching the whole of a large response for one range
    would cost more."""
    if only_if_cached:
        return Step.REFUSE
    if hit_for_miss:
        return Step.FORWARD
    if may_lead and not busy:
        return Step.LEAD
    return Step.WAIT if busy else Step.FORWARD
