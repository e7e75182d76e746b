"""The cache's mitmproxy commands answer with one ``key=value`` line.

A command may return only mitmproxy's registered types, and mitmweb's command bar and the console
show a ``str`` result on one line: JSON would arrive as one escaped string (``"{\\n \\"service\\"...``).
The full JSON stays on the admin API (``/__cache/stats``, ``/__cache/entries``, ...).
"""

from collections.abc import Mapping
from typing import Any

# What a person checks first in ``cache.stats``; everything else is on /__cache/stats.
STATS_FIELDS = (
    "hit_ratio",
    "hits",
    "stale_hits",
    "misses",
    "miss_reasons",
    "coalesced",
    "revalidated",
    "bypasses",
    "entries",
    "bytes",
    "evictions",
)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):  # miss_reasons, ...: reason:count,reason:count
        return ",".join(f"{k}:{_value(v)}" for k, v in value.items()) or "-"
    text = str(value)
    return text if text and not any(c.isspace() for c in text) else repr(text)


def fields(result: Mapping[str, Any] | None) -> str:
    """Every field but lists, in order: ``url=/time result=refreshing refreshing=1 keys=1``.
    None is a result still being computed by a networked store: ``scheduled=true``."""
    if result is None:
        return "scheduled=true"
    return " ".join(f"{k}={_value(v)}" for k, v in result.items() if not isinstance(v, list))


def stats(result: Mapping[str, Any]) -> str:
    """``hit_ratio=0.67 hits=4 stale_hits=0 misses=2 miss_reasons=none:2 ...``."""
    return fields({name: result[name] for name in STATS_FIELDS if name in result})


def entries(result: Mapping[str, Any] | None) -> str:
    """``total=2 count=2: http://host/a fresh ttl=59s hits=3; http://host/b stale ttl=-2s hits=0``:
    the page's counts, then each entry's key and state (``next_cursor`` when there are more)."""
    if result is None:
        return fields(None)
    counts = fields(
        {k: v for k, v in result.items() if k in ("total", "count", "next_cursor") and v is not None}
    )
    rows = "; ".join(
        f"{row['key']} {row['state']} ttl={row['ttl']}s hits={row['hits']}" for row in result["entries"]
    )
    return f"{counts}: {rows}" if rows else counts
