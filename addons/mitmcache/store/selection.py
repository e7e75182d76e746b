"""Which store holds the cache (``CACHE_STORE``): ``memory`` (embedded, the default), a Redis URL
(``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS), shared by every process that
names it, or a local file that survives restarts: ``disk`` (``cache.db`` in ``CACHE_DATA_DIR``) or
``sqlite:///absolute/path``.

A store URL may carry a password: it is shown -- in logs, mitmweb's options editor, statistics --
only as ``redacted``, which replaces it with ``[redacted]``.
"""

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import unquote, urlsplit

REDACTED = "[redacted]"


class Backend(Enum):
    MEMORY = "memory"
    REDIS = "redis"
    DISK = "disk"


@dataclass(frozen=True, slots=True)
class StoreLocation:
    backend: Backend
    url: str = field(repr=False)  # with its password: never logged
    shown: str  # the URL with its password redacted

    @property
    def has_secret(self) -> bool:
        return self.url != self.shown


MEMORY = StoreLocation(Backend.MEMORY, "memory", "memory")
DISK = StoreLocation(Backend.DISK, "disk", "disk")  # the file DISK_FILE in the data directory
DISK_FILE = "cache.db"


_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):([^/]*)@")


def redacted(url: str) -> str:
    """``url`` with its password (if any) replaced by ``[redacted]``; also for a malformed URL,
    which an error message shows."""
    return _PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", url.strip(), count=1)


def store_location(raw: str) -> StoreLocation:
    """``memory``, ``disk``, ``sqlite:///absolute/path``, or
    ``redis://[[user]:password@]host[:port][/db]`` (and ``rediss://``)."""
    value = raw.strip()
    if value.lower() in ("memory", "disk"):
        return MEMORY if value.lower() == "memory" else DISK
    if value.lower().startswith("sqlite:"):
        return StoreLocation(Backend.DISK, value, value) if sqlite_path(value) else _refuse()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("redis", "rediss") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError
    _ = parts.port  # ValueError for a port that is not a number in range
    db = parts.path.strip("/")
    if db and not (db.isdigit() and int(db) < 2**16):
        raise ValueError
    return StoreLocation(Backend.REDIS, value, redacted(value))


def sqlite_path(url: str) -> Path | None:
    """The file of ``sqlite:///absolute/path`` (None for anything else: a relative or empty path,
    a host, a query)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite" or parts.netloc or parts.query or parts.fragment:
        return None
    path = Path(unquote(parts.path))
    return path if path.is_absolute() and path.name and url.startswith(parts.scheme + ":///") else None


def disk_path(location: StoreLocation, data_dir: Path) -> Path:
    """The file a disk store location names: ``disk`` is ``cache.db`` in the data directory."""
    return sqlite_path(location.url) or data_dir / DISK_FILE


def _refuse() -> StoreLocation:
    raise ValueError
