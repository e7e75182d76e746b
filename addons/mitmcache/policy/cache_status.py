"""The ``Cache-Status`` response field (RFC 9211) and our ``X-Cache`` summary of it.

Every decision the cache makes carries a machine-readable reason; this module renders it.
"""

import re
from typing import NamedTuple

_SF_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*")


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
        parts = [cache_name]
        if self.hit:
            parts.append("hit")
        if self.fwd:
            parts.append(f"fwd={self.fwd}")
        if self.fwd_status is not None:
            parts.append(f"fwd-status={self.fwd_status}")
        if self.stored:
            parts.append("stored")
        if self.collapsed:
            parts.append("collapsed")
        if self.ttl is not None:
            parts.append(f"ttl={self.ttl}")
        if self.detail:
            token = _SF_TOKEN.fullmatch(self.detail)
            parts.append(f"detail={self.detail if token else _sf_string(self.detail)}")
        return "; ".join(parts)


def _sf_string(value: str) -> str:
    """A Structured Field String (RFC 8941 §3.3.3): printable ASCII only, so anything else becomes
    ``?``, with ``\\`` and ``"`` escaped."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in value)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'
