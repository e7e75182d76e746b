"""What the cache keeps for one stored response: one variant of one URL, and what changes about it.

An ``Entry`` is immutable once admitted: everything the hit path needs is computed then (its
lifetime, the initial age, its validators, the fields of a 304), so serving a hit re-parses
nothing, and a store may hand out copies (a networked store always does) without anyone
depending on changing the object it got. Each write carries a new ``version``, so that
compare-and-delete works across processes. Only plain values: stores serialise entries
(``store.codec``).

What changes while an entry is stored (when a client last asked for it, hits, refresh failures)
is its ``Meta``, kept by the store and changed only through it.
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Self

# What one entry costs in memory beyond its bytes, so that cache_max_bytes bounds the process:
# measured with tracemalloc (the Entry, its strings and tuples, the store's bookkeeping, allocator
# slack under constant eviction) at about 2 KB per entry and 100 bytes per header field. Every
# string an entry holds counts too (its key, URL, Host, validators, Vary values): long URLs and
# varied-on values cost what they weigh.
ENTRY_OVERHEAD = 1536
FIELD_OVERHEAD = 100
TAG_OVERHEAD = 200  # a tag in the store's tag index and on its entry (measured: scripts/bench.py tag-memory)


def new_version() -> int:
    """A version unique across processes with overwhelming probability (63 random bits): a counter
    would repeat between processes sharing a store."""
    return random.getrandbits(63)


class _EntryFields(NamedTuple):
    key: str  # primary key: the URL (policy.key.primary_key)
    url: str  # where the upstream serves it, for refreshes
    host: str  # the Host field sent upstream
    vary: tuple[tuple[str, str | None], ...]  # (field name, normalised request value or None if absent)
    status: int
    reason: bytes
    fields: tuple[tuple[bytes, bytes], ...]  # stored header fields: end-to-end only, ETag set
    body: bytes  # raw bytes as received, content-encoding kept
    etag: str  # the ETag we serve: the upstream's, or one generated from the body
    upstream_etag: str | None  # validators the upstream understands (for conditional refreshes)
    last_modified: str | None
    date: float  # the stored Date (RFC 9111 §4.2.3 date_value)
    response_time: float
    initial_age: float  # corrected_initial_age (RFC 9111 §4.2.3)
    lifetime: float
    lifetime_source: str
    no_cache: bool  # response no-cache: revalidate before every reuse (RFC 9111 §5.2.2.4)
    must_revalidate: bool  # must-revalidate, proxy-revalidate or s-maxage: never serve stale
    stale_while_revalidate: float  # RFC 5861 §3, seconds (0 when absent)
    stale_if_error: float  # RFC 5861 §4, seconds (0 when absent)
    # When the cache stored the body compressed (compression.py): the coding it applied (None: the
    # body is as the upstream sent it, encoded or not), the identity representation's ETag (``etag``
    # and ``fields`` are the coded one's), and the length of the body as sent.
    coding: str | None = None
    identity_etag: str | None = None
    sent_length: int = -1  # -1: len(body)
    size: int = 0  # 0: computed (entry_size)
    version: int = 0  # 0: a new one (new_version)
    # Tags (surrogate keys, policy.tags) the upstream gave it, for purge and refresh by tag, and the
    # upstream's fields withheld from clients (its tag fields): a 304 re-admits them with the rest.
    tags: tuple[str, ...] = ()
    withheld: tuple[tuple[bytes, bytes], ...] = ()


class Entry(_EntryFields):
    """A named tuple rather than a frozen dataclass: as immutable, and cheaper to build. Every stored
    miss builds one, and a frozen dataclass sets its 27 fields one ``object.__setattr__`` at a time:
    the change took a miss from 523 k to 508 k instructions (``scripts/hook_instructions.py``).
    What is derived (``sent_length``, ``size``, ``version``) is given by whoever builds one
    (``admit``, a store decoding what it wrote), or filled in by ``Entry.new``: a ``__new__`` that
    filled it in would cost every stored miss its 27 fields bound twice and a second tuple."""

    __slots__ = ()

    @classmethod
    def new(cls, **fields: Any) -> Self:
        """An entry with what is derived filled in where not given."""
        return cls(**fields)._derived()

    def _derived(self) -> Self:
        sent_length = len(self.body) if self.sent_length < 0 else self.sent_length
        size = self.size or entry_size(self)
        derived = (sent_length, size, self.version or new_version())
        return tuple.__new__(type(self), (*self[:_SENT_LENGTH], *derived, *self[_VERSION + 1 :]))

    def changed(self, **changes: Any) -> Self:
        """This entry with ``changes`` (its version kept unless one is given); a ``size`` of 0 is
        computed again, for a changed body or fields."""
        entry = self._replace(**changes)
        return entry if entry.size else entry._derived()

    @property
    def sent_size(self) -> int:
        """What the entry would cost stored as the upstream sent it (the compression ratio's base)."""
        return self.size - len(self.body) + self.sent_length

    @property
    def has_validators(self) -> bool:
        """Whether the upstream can answer a conditional request for it (RFC 9111 §4.3.1)."""
        return self.upstream_etag is not None or self.last_modified is not None

    @property
    def expires_at(self) -> float:
        """When it stops being fresh (RFC 9111 §4.2: lifetime minus the age it arrived with)."""
        return self.response_time + self.lifetime - self.initial_age

    def expired_by(self, at: float) -> "Entry":
        """This version as if it had expired at ``at`` at the latest (a soft purge): the same
        version, so compare-and-delete still finds it; served stale only by the usual rules."""
        lifetime = at - self.response_time + self.initial_age
        return self if lifetime >= self.lifetime else self._replace(lifetime=lifetime)


_SENT_LENGTH, _VERSION = _EntryFields._fields.index("sent_length"), _EntryFields._fields.index("version")
assert _VERSION == _SENT_LENGTH + 2  # sent_length, size, version: derived together (_derived)


def entry_size(entry: _EntryFields) -> int:
    """What an entry counts against ``cache_max_bytes`` (``size_of`` its parts)."""
    strings = (entry.key, entry.url, entry.host, entry.etag, entry.last_modified or "")
    return size_of(entry.body, strings, (entry.fields, entry.withheld), entry.vary, entry.tags)


def size_of(
    body: bytes,
    strings: Iterable[str],
    field_lists: Iterable[Iterable[tuple[bytes, bytes]]],
    vary: Iterable[tuple[str, str | None]],
    tags: Iterable[str],
) -> int:
    """What an entry of these parts counts against ``cache_max_bytes``: its bytes and strings, and
    the Python objects behind them (``ENTRY_OVERHEAD``, ``FIELD_OVERHEAD``, ``TAG_OVERHEAD``)."""
    size = ENTRY_OVERHEAD + len(body)
    # Loops, not sum() over generators: every stored miss counts its entry.
    for string in strings:
        size += len(string)
    for fields in field_lists:
        for name, value in fields:
            size += len(name) + len(value) + FIELD_OVERHEAD
    for name, normalised in vary:
        size += len(name) + len(normalised or "") + FIELD_OVERHEAD
    for tag in tags:
        size += len(tag) + TAG_OVERHEAD
    return size


@dataclass(slots=True)
class Meta:
    """What changes while an entry is stored. A store keeps it and changes it (``Store.record_uses``,
    ``Store.note_refresh_failure``); everyone else reads the copy a lookup returned."""

    stored_at: float  # when this version was written: a use after it asks for a refresh
    last_access: float = 0.0  # when a client last asked for it (the refresh window)
    hits: int = 0
    refresh_failures: int = 0  # consecutive failed refreshes, for backoff
    retry_at: float = 0.0  # no background refresh before this time
    stale_at: float = 0.0  # soft-purged (by tag) then: handed out expired as of then (0: never)

    @property
    def asked_since_stored(self) -> bool:
        return self.last_access > self.stored_at

    def copy(self) -> "Meta":
        """A copy for a store to keep and change: every stored miss makes one, and
        ``dataclasses.replace`` takes about five times as long."""
        return Meta(
            self.stored_at, self.last_access, self.hits, self.refresh_failures, self.retry_at, self.stale_at
        )


def as_marked(entry: Entry, meta: Meta) -> Entry:
    """The entry as a store hands it out: expired as of its soft purge, if it had one."""
    return entry.expired_by(meta.stale_at) if meta.stale_at else entry


@dataclass(slots=True)
class Stored:
    """One stored variant as a lookup returns it: the response and its metadata."""

    entry: Entry
    meta: Meta
    keep_until: float  # the store may drop it from then on (its lifetime, including stale use)
