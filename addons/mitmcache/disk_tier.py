"""The disk store of one proxy (``CACHE_STORE=disk`` or ``sqlite:///abs/path``): the SQLite file
(``store.disk``) behind the same bounded in-process tier as Redis (``store.tiered``), installed
into the engine's core in place of the memory store.

One process owns the file: there are no notifications between processes, so another process's
in-process tier would keep copies the file no longer has. The worker supervisor (``workers``)
therefore refuses more than one worker on a disk store; so does a second proxy on the same file
(SQLite's lock is only for writes, so a file lock of our own says who owns it).
"""

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from .config import Settings
from .core import Core
from .store.disk import DiskStore
from .store.memory import MemoryStore
from .store.selection import StoreLocation
from .store.tiered import TieredStore

log = logging.getLogger("mitmcache")


class InUse(Exception):
    """Another running proxy owns the file."""


class DiskTier:
    def __init__(self, location: StoreLocation, path: Path, settings: Settings) -> None:
        """Opens the file now; raises ``OSError``/``sqlite3.Error`` when it cannot be used and
        ``InUse`` when another proxy has it open."""
        self.location = location
        self.path = path
        if not path.parent.exists():  # the data directory (CACHE_DATA_DIR): the proxy's own, 0700
            path.parent.mkdir(mode=0o700, parents=True)
            os.chmod(path.parent, 0o700)
        self._lock = _own(path)
        self.disk = DiskStore(path, settings.store_max_bytes)
        self.store = TieredStore(MemoryStore(settings.max_bytes, settings.max_entries), self.disk)
        self.up = True
        log.info("cache store: %s (%s), with an in-process tier in front", location.shown, path)

    @property
    def unreadable(self) -> int:
        return self.disk.file.unreadable

    def install(self, core: Core) -> None:
        core.store = self.store
        core.tier = self.store.tier_of

    def start(self) -> None:
        self.disk.start()

    async def configure(self, settings: Settings) -> None:
        await self.disk.resize_file(settings.store_max_bytes)

    async def close(self) -> None:
        """Commits and closes the file; the lock stays with the process until it exits (closing
        any descriptor of the lock file would drop a reloaded addon's lock too)."""
        await self.disk.close()

    def health(self) -> dict[str, Any]:
        return {"backend": "disk", "state": "up", "url": self.location.shown, "path": str(self.path)}

    async def figures(self) -> dict[str, Any]:
        """What the file holds: entries, URLs, the bytes counted against the bound, the file's size."""
        usage = await self.disk.usage()
        return {
            **self.health(),
            "entries": usage.entries,
            "keys": usage.keys,
            "bytes": usage.bytes,
            "max_bytes": self.disk.file.max_bytes,
            "file_bytes": await self.disk.file_bytes(),
            "evictions": usage.evictions,
            "sent_bytes": usage.sent_bytes,
            "tags": usage.tags,
            "unreadable": self.unreadable,
        }


def _own(path: Path) -> int:
    """An exclusive lock on ``path``'s lock file, held while the process runs (the kernel drops it
    when the process exits, however it exits). A POSIX record lock belongs to the process, so that
    mitmdump's hot reload of the addon, which opens the store again before the old addon's close
    has run, takes it over instead of locking itself out."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InUse(f"{path} is in use by another proxy (one process per disk store)") from None
    return fd
