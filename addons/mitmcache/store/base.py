"""The storage contract: what the engine needs of a store, met by an in-process one and by a
networked one alike.

Entries are grouped by primary key (the URL); each group holds that URL's ``Vary`` variants, so
that invalidating a URL drops all of them at once. The contract is written for a store that hands
out copies (any networked store does):

* stored responses are immutable and versioned: a write is a new version, and ``discard`` is a
  compare-and-delete by version, never by object identity;
* what changes while an entry is stored (``Meta``: last access, hits, refresh failures, retry
  time) changes through the store (``record_uses``, ``note_refresh_failure``), never by mutating
  what a lookup returned;
* every write has a lifetime (``keep_until``: how long the copy may be used at all, stale use
  included), after which the store no longer returns it;
* the store keeps each entry's next check time (``check_at``) and hands out the entries whose time
  has come (``due``): expiry and refresh are driven by what the store holds, so an entry written by
  another process, or loaded after a restart, is refreshed or dropped like any other;
* purging by prefix happens inside the store, and so do purging by tag and soft purging by tag
  (each entry carries its tags; the store keeps an index from tag to variants, bounded by what it
  stores and updated with each write and removal, never by a read-modify-write across processes);
* every method that may do I/O is async. ``tests/unit/test_store_contract.py`` runs one suite
  against every backend.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..entry import Entry, Meta, Stored

type Vary = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class Usage:
    entries: int  # stored variants
    keys: int  # distinct URLs
    bytes: int
    evictions: int  # entries dropped to respect the bounds
    # What the entries would take stored as the upstream sent them (Entry.sent_size): against
    # ``bytes``, what compression saves. 0 from a store that does not track it.
    sent_bytes: int = 0
    tags: int = 0  # distinct tags the stored entries carry


@dataclass(frozen=True, slots=True)
class Use:
    """Clients were answered from this version, last at ``at`` (``hits`` of them straight from the
    store, the others after waiting for a fetch); the store keeps it at least until ``keep_until``."""

    key: str
    vary: Vary
    version: int
    at: float
    hits: int
    keep_until: float


class Read(list[Stored]):
    """Variants as one read of a store found them, and when that read began: a store that lets
    concurrent lookups share one read (``store.tiered``) returns it, so that each lookup knows its
    answer is as old as the shared read, not as its own call (``Coalescer.claim``)."""

    def __init__(self, variants: Sequence[Stored], began: float) -> None:
        super().__init__(variants)
        self.began = began


def read_began(variants: Sequence[Stored], called_at: float) -> float:
    """When the read that found ``variants`` began: ``called_at`` (just before ``variants`` was
    called) unless the store says the read began earlier."""
    return variants.began if isinstance(variants, Read) else called_at


class Store(Protocol):
    # True when ``held`` is all that ``variants`` could find (one process, no tier below): nothing
    # held is then a miss, decided without awaiting (``Lookup.answer_held``).
    holds_everything: bool

    async def variants(self, key: str) -> Sequence[Stored]:
        """The stored variants of a URL still within their lifetime (empty when none), oldest write
        first; counts as a use for eviction. A ``Read`` when the read began before the call."""
        ...

    async def peek(self, key: str) -> Sequence[Stored]:
        """Like ``variants``, but not a use: housekeeping must not keep entries alive."""
        ...

    def held(self, key: str) -> Sequence[Stored]:
        """What ``variants`` would return, when this process holds it (a use, likewise); empty when
        the store must be asked. Synchronous: a hit on what is held costs no coroutine."""
        ...

    async def put(self, entry: Entry, meta: Meta, *, keep_until: float, check_at: float) -> bool:
        """Store a version, replacing the variant of the same URL that varies the same way; False
        when it cannot be stored at all (larger than the store)."""
        ...

    async def discard(self, key: str, vary: Vary, version: int) -> bool:
        """Drop this variant if ``version`` is still the stored one; True when it was."""
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

    async def tagged(self, tag: str) -> Sequence[Stored]:
        """The stored variants (of any URL) that carry ``tag``, within their lifetime; not a use."""
        ...

    async def delete_tag(self, tag: str) -> int:
        """Drop every variant that carries ``tag``; returns how many."""
        ...

    async def stale_tag(self, tag: str, at: float) -> int:
        """Soft purge: every variant that carries ``tag`` is handed out from now on as expired at
        ``at`` (``Entry.expired_by``; same version, ``Meta.stale_at`` says when) and is due for a
        check at ``at``; returns how many were marked."""
        ...

    async def keys(self) -> list[str]:
        """Every stored URL, least recently used first."""
        ...

    async def due(self, now: float, limit: int) -> list[Stored]:
        """Up to ``limit`` entries whose check time has come, each handed out once: it is not due
        again until ``reschedule`` gives it a new time (a store shared by processes hands it to one
        of them)."""
        ...

    async def reschedule(self, key: str, vary: Vary, version: int, check_at: float) -> bool:
        """Check this version again at ``check_at``; False when it is no longer stored."""
        ...

    async def record_uses(self, uses: Sequence[Use]) -> None:
        """Clients were answered from these versions (written behind the hit path, in batches)."""
        ...

    async def note_refresh_failure(self, key: str, vary: Vary, version: int, retry_at: float) -> None:
        """A refresh of this version failed: one more consecutive failure, none before ``retry_at``."""
        ...

    async def usage(self) -> Usage: ...

    async def resize(self, max_bytes: int, max_entries: int) -> None:
        """Apply new bounds, evicting at once what no longer fits."""
        ...
