"""What the cache keeps for one stored response: one variant of one URL.

Everything the hit path needs is computed once, when the response is admitted (its lifetime, the
initial age, its validators, the fields of a 304), so that serving a hit re-parses nothing.
Only plain values: a Redis backend will serialise entries.
"""

from dataclasses import dataclass, field

# What one entry costs in memory beyond its bytes, so that cache_max_bytes bounds the process:
# measured with tracemalloc (the Entry, its strings and tuples, the store's bookkeeping, allocator
# slack under constant eviction) at about 2 KB per entry and 100 bytes per header field.
ENTRY_OVERHEAD = 1536
FIELD_OVERHEAD = 100


@dataclass(slots=True, weakref_slot=True)
class Entry:
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
    last_access: float = 0.0  # when a client last asked for it (drives the refresh window)
    hits: int = 0
    refresh_failures: int = 0  # consecutive failed refreshes, for backoff
    retry_at: float = 0.0  # no background refresh before this time
    size: int = field(default=0)

    def __post_init__(self) -> None:
        if not self.size:
            self.size = (
                len(self.body)
                + sum(len(k) + len(v) + FIELD_OVERHEAD for k, v in self.fields)
                + ENTRY_OVERHEAD
            )

    @property
    def has_validators(self) -> bool:
        """Whether the upstream can answer a conditional request for it (RFC 9111 §4.3.1)."""
        return self.upstream_etag is not None or self.last_modified is not None
