"""The storage interface the cache needs, and nothing more.

Entries are grouped by primary key (the URL); each group holds that URL's ``Vary`` variants, so
that invalidating a URL drops all of them at once. The interface is async so that a networked
backend (Redis) can stand behind it unchanged.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..entry import Entry


@dataclass(frozen=True, slots=True)
class Usage:
    entries: int  # stored variants
    keys: int  # distinct URLs
    bytes: int
    evictions: int  # entries dropped to respect the bounds


class Store(Protocol):
    async def variants(self, key: str) -> Sequence[Entry]:
        """The stored variants of a URL (empty when none); counts as a use for eviction."""
        ...

    async def peek(self, key: str) -> Sequence[Entry]:
        """Like ``variants``, but not a use: housekeeping must not keep entries alive."""
        ...

    async def discard(self, entry: Entry) -> bool:
        """Drop this one variant if it is still the stored one; True when it was."""
        ...

    def record_use(self, entry: Entry, now: float, *, hit: bool) -> None:
        """A client was answered from ``entry`` at ``now`` (``hit``: straight from the store). The
        refresh window and the entries listing read it; a networked store may write it behind."""
        ...

    async def put(self, entry: Entry) -> None:
        """Store an entry, replacing the variant of the same URL that varies the same way."""
        ...

    async def delete(self, key: str) -> int:
        """Drop every variant of a URL; returns how many were dropped."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Drop every variant of every URL starting with ``prefix``; returns how many."""
        ...

    async def clear(self) -> int:
        """Drop everything; returns how many entries were dropped."""
        ...

    async def keys(self) -> list[str]:
        """Every stored URL, least recently used first."""
        ...

    def usage(self) -> Usage: ...

    def resize(self, max_bytes: int, max_entries: int) -> None:
        """Apply new bounds, evicting at once what no longer fits."""
        ...
