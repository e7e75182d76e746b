"""How each cache decision shows outside the response: on the flow in mitmweb, in logs, in counts.

``flow.comment`` (mitmweb's comment column and side panel), ``flow.marked`` (a coloured dot in
the flow list, filterable with ``~marker``) and ``flow.metadata["cache"]`` (plain data, saved
with ``-w``, filterable with ``~meta``) all say the same thing as ``Cache-Status``.
"""

import functools
import logging

from mitmproxy import http

from .counters import Counters
from .policy.cache_status import Status, XCache

log = logging.getLogger("mitmcache")

METADATA = "cache"  # flow.metadata: the decision, as data

MARKERS = {
    XCache.HIT: ":green_circle:",
    XCache.STALE: ":yellow_circle:",
    XCache.COALESCED: ":large_blue_circle:",
    XCache.REVALIDATED: ":purple_circle:",
    XCache.MISS: ":red_circle:",
    XCache.BYPASS: ":white_circle:",
}


# Descriptions made lately, remembered like rendered statuses (policy/cache_status.py): a hot key's
# hits describe the same decision, at the same age in whole seconds, many times over.
DESCRIBED = 1024


@functools.lru_cache(maxsize=DESCRIBED)
def describe(status: Status, age: int | None, code: int | None = None) -> str:
    """The decision as mitmweb shows it, what a person scans for first: ``MISS stored``, ``MISS
    private``, ``HIT 304``, ``STALE refresh-window``. mitmweb's comment column is 150 px wide (its
    stylesheet's ``.col-comment``), about 20 characters, so the rest of the decision follows after
    `` | ``, for the comment tab: why the upstream was asked (RFC 9211 fwd), age, ttl."""
    x_cache, detail = status.x_cache, status.detail
    head = f"{x_cache} 304" if code == 304 else x_cache
    says_stored = detail == "stored" or (not detail and x_cache == XCache.MISS and status.stored)
    if detail:  # why it was not stored, served stale, bypassed
        head += " " + detail
    elif says_stored:
        head += " stored"
    tail = ""  # built by concatenation: every answer is described, hits included
    if status.fwd and x_cache != XCache.BYPASS:
        tail += f" fwd={status.fwd}"
    if age is not None:
        tail += f" age={age}s"
    if status.ttl is not None:
        tail += f" ttl={status.ttl}s"
    if status.stored and not says_stored:
        tail += " stored"
    return f"{head} |{tail}" if tail else head


def annotate(
    flow: http.HTTPFlow, key: str | None, status: Status, counts: Counters, age: float | None = None
) -> None:
    counts.decision(status.x_cache, status.detail)
    seconds = None if age is None else int(age)
    flow.comment = describe(status, seconds, flow.response.status_code if flow.response else None)
    flow.marked = MARKERS[status.x_cache]
    flow.metadata[METADATA] = {
        "status": status.x_cache,
        "key": key,
        "fwd": status.fwd,
        "detail": status.detail,
        "ttl": status.ttl,
        "age": seconds,
        "stored": status.stored,
    }
    if log.isEnabledFor(logging.DEBUG):
        log.debug("cache %s %s %s", flow.comment, flow.request.method, key or flow.request.pretty_url)
