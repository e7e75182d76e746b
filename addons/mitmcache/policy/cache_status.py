"""The ``Cache-Status`` response field (RFC 9211) and our ``X-Cache`` summary of it.

Every decision the cache makes carries a machine-readable reason; this module renders it.
"""

import functools
import re
from typing import NamedTuple

_SF_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*")
# Statuses rendered lately, remembered: a hot key's hits repeat the same one (its ttl changes once a
# second), and a lookup costs a quarter of rendering. Bounded: a Status is a few short values.
RENDERED_STATUSES = 1024


class XCache:
    """Values of ``X-Cache``: one word a person can filter flows by."""

    HIT = "HIT"
    STALE = "STALE"
    MISS = "MISS"
    COALESCED = "COALESCED"
    REVALIDATED = "REVALIDATED"
    BYPASS = "BYPASS"


class Status(NamedTuple):
    """One cache's member of the Cache-Status list (RFC 9211 §2).

    A named tuple, not a frozen dataclass: every answer builds one, and a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` (1.4 us against 0.5 us for 8 fields)."""

    x_cache: str
    hit: bool = False
    # RFC 9211 §2.2: "bypass" | "method" | "uri-miss" | "vary-miss" | "miss" | "request" | "stale"
    # ("partial" is never ours: no partial responses are stored).
    fwd: str | None = None
    fwd_status: int | None = None
    ttl: int | None = None
    stored: bool = False
    collapsed: bool = False
    detail: str | None = None

    def render(self, cache_name: str) -> str:
        return _render(self, cache_name)


@functools.lru_cache(maxsize=RENDERED_STATUSES)
def _render(status: Status, cache_name: str) -> str:
    parts = [cache_name]
    if status.hit:
        parts.append("hit")
    if status.fwd:
        parts.append(f"fwd={status.fwd}")
    if status.fwd_status is not None:
        parts.append(f"fwd-status={status.fwd_status}")
    if status.stored:
        parts.append("stored")
    if status.collapsed:
        parts.append("collapsed")
    if status.ttl is not None:
        parts.append(f"ttl={status.ttl}")
    if status.detail:
        token = _SF_TOKEN.fullmatch(status.detail)
        parts.append(f"detail={status.detail if token else _sf_string(status.detail)}")
    return "; ".join(parts)


def _sf_string(value: str) -> str:
    """A Structured Field String (RFC 8941 §3.3.3): printable ASCII only, so anything else becomes
    ``?``, with ``\\`` and ``"`` escaped."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in value)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'
