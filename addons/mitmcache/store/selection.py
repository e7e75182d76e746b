"""Which store holds the cache (``CACHE_STORE``): ``memory`` (embedded, the default) or a Redis URL
(``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS), shared by every process that
names it. Other backends (a local disk store) are added beside Redis here.

A store URL may carry a password: it is shown -- in logs, mitmweb's options editor, statistics --
only as ``redacted``, which replaces it with ``[redacted]``.
"""

import re
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit

REDACTED = "[redacted]"


class Backend(Enum):
    MEMORY = "memory"
    REDIS = "redis"


@dataclass(frozen=True, slots=True)
class StoreLocation:
    backend: Backend
    url: str = field(repr=False)  # with its password: never logged
    shown: str  # the URL with its password redacted

    @property
    def has_secret(self) -> bool:
        return self.url != self.shown


MEMORY = StoreLocation(Backend.MEMORY, "memory", "memory")


_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):([^/]*)@")


def redacted(url: str) -> str:
    """``url`` with its password (if any) replaced by ``[redacted]``; also for a malformed URL,
    which an error message shows."""
    return _PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", url.strip(), count=1)


def store_location(raw: str) -> StoreLocation:
    """``memory``, or ``redis://[[user]:password@]host[:port][/db]`` (and ``rediss://``)."""
    value = raw.strip()
    if value.lower() == "memory":
        return MEMORY
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("redis", "rediss") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError
    _ = parts.port  # ValueError for a port that is not a number in range
    db = parts.path.strip("/")
    if db and not (db.isdigit() and int(db) < 2**16):
        raise ValueError
    return StoreLocation(Backend.REDIS, value, redacted(value))
