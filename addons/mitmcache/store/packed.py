"""Stored entries and their metadata in msgpack, the layout the Redis store keeps.

msgpack rather than the JSON of ``codec``: header fields and the body are bytes in msgpack, so
nothing is re-encoded, and Redis's own Lua scripts read and change a variant's metadata in place
(Redis embeds ``cmsgpack``), so a use or a refresh failure is one round trip that rewrites a few
numbers, never the body. An entry is an array in the order of ``Entry``'s fields after a format tag
that names those fields: a value written by another version of the cache, a foreign value, or
garbage is ``codec.Unreadable`` -- a miss, never a crash.

Metadata is ``[version, stored_at, last_access, hits, refresh_failures, retry_at, keep_until,
stale_at]`` (``stale_at``: when a soft purge marked it, 0 for never; absent in older values); the
version is text, because Lua's numbers are doubles and a version has 63 bits.
"""

import hashlib
from dataclasses import dataclass

import msgpack

from ..entry import Entry, Meta
from .codec import Unreadable

_ENTRY_FIELDS = Entry._fields
# The format tag changes whenever Entry's fields do: an older or newer cache's values are unreadable.
FORMAT = "mitmcache-entry/" + hashlib.sha1(",".join(_ENTRY_FIELDS).encode()).hexdigest()[:8]
_BYTES_FIELDS = frozenset({"reason", "body"})


def encode_entry(entry: Entry) -> bytes:
    # msgpack writes tuples (vary, fields and their pairs) as arrays
    return msgpack.packb([FORMAT, *(getattr(entry, name) for name in _ENTRY_FIELDS)], use_bin_type=True)


def decode_entry(data: bytes) -> Entry:
    try:
        values = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError) as e:
        raise Unreadable(f"stored entry unreadable: {type(e).__name__}") from None
    if not isinstance(values, list) or len(values) != len(_ENTRY_FIELDS) + 1 or values[0] != FORMAT:
        raise Unreadable("not a stored entry of this format")
    try:
        items = dict(zip(_ENTRY_FIELDS, values[1:], strict=True))
        items["vary"] = tuple((str(name), None if v is None else str(v)) for name, v in items["vary"])
        items["fields"] = tuple((bytes(k), bytes(v)) for k, v in items["fields"])
        items["withheld"] = tuple((bytes(k), bytes(v)) for k, v in items["withheld"])
        items["tags"] = tuple(str(tag) for tag in items["tags"])
        for name in _BYTES_FIELDS:
            if not isinstance(items[name], bytes):
                raise TypeError(name)
        return Entry(**items)
    except (ValueError, TypeError) as e:
        raise Unreadable(f"stored entry unreadable: {type(e).__name__}") from None


@dataclass(frozen=True, slots=True)
class VariantMeta:
    """A variant's metadata as the Redis store keeps it: the version it describes, and its lifetime."""

    version: int
    meta: Meta
    keep_until: float


def encode_meta(version: int, meta: Meta, keep_until: float) -> bytes:
    return msgpack.packb(
        [
            str(version),
            meta.stored_at,
            meta.last_access,
            meta.hits,
            meta.refresh_failures,
            meta.retry_at,
            keep_until,
            meta.stale_at,
        ]
    )


def decode_meta(data: bytes) -> VariantMeta:
    try:
        version, stored_at, last_access, hits, failures, retry_at, keep, *marked = msgpack.unpackb(
            data, raw=False
        )
        meta = Meta(
            stored_at=float(stored_at),
            last_access=float(last_access),
            hits=int(hits),
            refresh_failures=int(failures),
            retry_at=float(retry_at),
            stale_at=float(marked[0]) if marked else 0.0,
        )
        return VariantMeta(int(version), meta, float(keep))
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise Unreadable(f"stored metadata unreadable: {type(e).__name__}") from None
