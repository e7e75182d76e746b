"""Stored entries and their metadata as bytes, for stores that keep them outside this process.

An entry is a versioned header (JSON: every field but the body, header fields as latin-1 text,
which maps bytes one to one) followed by the raw body, so a body is never re-encoded. A value that
cannot be read -- corrupt, foreign, or written by another format version -- raises ``Unreadable``,
which a store turns into a miss, never a crash.
"""

import json
import struct
from dataclasses import asdict, fields
from typing import Any

from ..entry import Entry, Meta

FORMAT = b"mitmcache/2\n"  # 2: the coding fields (coding, identity_etag, sent_length)
_LENGTH = struct.Struct(">I")
_ENTRY_FIELDS = frozenset(Entry._fields) - {"body"}
_META_FIELDS = frozenset(f.name for f in fields(Meta))


class Unreadable(ValueError):
    """A stored value this version of the cache cannot read."""


def encode_entry(entry: Entry) -> bytes:
    header: dict[str, Any] = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    header["reason"] = entry.reason.decode("latin-1")
    header["fields"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in entry.fields]
    header["withheld"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in entry.withheld]
    raw = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((FORMAT, _LENGTH.pack(len(raw)), raw, entry.body))


def decode_entry(data: bytes) -> Entry:
    if not data.startswith(FORMAT):
        raise Unreadable("not a stored entry of this format")
    start = len(FORMAT) + _LENGTH.size
    try:
        (length,) = _LENGTH.unpack_from(data, len(FORMAT))
        header = json.loads(data[start : start + length])
        if not isinstance(header, dict) or header.keys() != _ENTRY_FIELDS:
            raise Unreadable("stored entry has other fields")
        header["reason"] = header["reason"].encode("latin-1")
        header["fields"] = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in header["fields"])
        header["withheld"] = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in header["withheld"])
        header["vary"] = tuple((name, value) for name, value in header["vary"])
        header["tags"] = tuple(str(tag) for tag in header["tags"])
        return Entry(body=data[start + length :], **header)
    except (struct.error, ValueError, TypeError, AttributeError, UnicodeError) as e:
        if isinstance(e, Unreadable):
            raise
        raise Unreadable(f"stored entry unreadable: {type(e).__name__}") from None


def encode_meta(meta: Meta) -> bytes:
    return json.dumps(asdict(meta), separators=(",", ":")).encode()


def decode_meta(data: bytes) -> Meta:
    try:
        values = json.loads(data)
        if not isinstance(values, dict) or values.keys() != _META_FIELDS:
            raise Unreadable("stored metadata has other fields")
        return Meta(**values)
    except (ValueError, TypeError) as e:
        if isinstance(e, Unreadable):
            raise
        raise Unreadable(f"stored metadata unreadable: {type(e).__name__}") from None
