"""Storing responses compressed, and serving them to clients that do not accept the coding.

``encode`` turns an admitted entry (the response as the upstream sent it) into the entry the store
keeps: the body compressed once, and every field of the coded representation computed then
(Content-Encoding, Vary, Content-Length, its own ETag), so that a hit for a client that accepts the
coding is served exactly like any other hit. ``identity_view`` is the identity representation of a
coded entry, for a client that does not accept the coding (the body decoded per request, counted),
and ``as_sent`` is the response as the upstream sent it, for refreshes that re-admit a stored
response (a 304, a HEAD). Which responses may be coded, and the validators, are ``policy.codings``'s.
"""

import gzip
import time
import zlib

import brotli
import zstandard

from .counters import Count, Counters
from .entry import Entry
from .policy.codings import Coding, coded_etag, may_compress

# Levels chosen by measurement on JSON bodies (docs/compression.md): near the best ratio of each
# codec at a fraction of its slowest level's cost, since a body is compressed once per write.
GZIP_LEVEL = 6
BROTLI_QUALITY = 5
ZSTD_LEVEL = 6
# Bodies larger than this are compressed in a worker thread (zlib, brotli and zstandard release
# the GIL), so that a multi-megabyte body does not hold up every other request on the event loop.
THREAD_ABOVE_BYTES = 256 * 1024

_VARY_ACCEPT_ENCODING = (b"vary", b"Accept-Encoding")
_REPLACED = frozenset({b"content-length", b"content-encoding", b"etag"})


def compress(body: bytes, coding: Coding) -> bytes:
    """The body in ``coding``; deterministic (gzip's timestamp is 0), so that the same response
    coded twice has the same bytes, as its derived strong ETag promises."""
    if coding is Coding.GZIP:
        return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    if coding is Coding.BR:
        return brotli.compress(body, quality=BROTLI_QUALITY)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body)


def decompress(body: bytes, coding: str) -> bytes:
    if coding == Coding.GZIP:
        return zlib.decompress(body, wbits=31)
    if coding == Coding.BR:
        return brotli.decompress(body)
    return zstandard.ZstdDecompressor().decompress(body)


def varies_on_accept_encoding(entry: Entry) -> bool:
    return any(name == "accept-encoding" for name, _ in entry.vary)


def coded_entry(entry: Entry, coding: Coding, coded: bytes) -> Entry:
    """``entry`` with its body in ``coding``: Content-Encoding and Content-Length for it, an ETag
    of its own, and ``Vary: Accept-Encoding`` (added unless the upstream's Vary lists it), so that
    downstream caches keep the representations apart."""
    etag = coded_etag(entry.etag, coding.value)
    fields = [(k, v) for k, v in entry.fields if k.lower() not in _REPLACED]
    fields += [(b"content-encoding", coding.value.encode()), (b"etag", etag.encode())]
    if not varies_on_accept_encoding(entry):
        fields.append(_VARY_ACCEPT_ENCODING)
    fields.append((b"content-length", str(len(coded)).encode()))
    return entry.changed(
        fields=tuple(fields),
        body=coded,
        etag=etag,
        coding=coding.value,
        identity_etag=entry.etag,
        sent_length=len(entry.body),
        size=0,  # recomputed: the memory budget counts the bytes held
    )


def worth_coding(entry: Entry, coding: Coding | None, min_bytes: int) -> bool:
    """Whether ``encode`` would try to compress this entry."""
    return (
        coding is not None
        and entry.coding is None
        and entry.status not in (204, 206, 304)
        and may_compress(entry.fields, len(entry.body), min_bytes)
    )


def encode_now(entry: Entry, coding: Coding) -> Entry:
    """The entry coded, or as it was when coding does not make it smaller."""
    coded = compress(entry.body, coding)
    if len(coded) >= len(entry.body):
        return entry
    return coded_entry(entry, coding, coded)


def identity_view(entry: Entry, body: bytes) -> Entry:
    """The identity representation of a coded entry, with ``body`` (its decoded body, or empty for
    a HEAD or a 304): the fields as the upstream sent them but with its identity ETag and length,
    and ``Vary: Accept-Encoding`` kept (the response does vary on it)."""
    assert entry.coding is not None and entry.identity_etag is not None
    fields = [(k, v) for k, v in entry.fields if k.lower() not in _REPLACED]
    fields += [(b"etag", entry.identity_etag.encode()), (b"content-length", str(entry.sent_length).encode())]
    return entry.changed(
        fields=tuple(fields),
        body=body,
        etag=entry.identity_etag,
        coding=None,
        identity_etag=entry.etag,  # the other representation's, so that If-None-Match may name either
        size=entry.size,
    )


def decode(entry: Entry, counters: Counters) -> bytes:
    """A coded entry's body decoded, counted with the time it took (statistics)."""
    assert entry.coding is not None
    started = time.perf_counter()
    body = decompress(entry.body, entry.coding)
    counters.add(Count.DECODES)
    counters.add(Count.DECODE_MICROSECONDS, int((time.perf_counter() - started) * 1e6))
    return body


def as_sent(entry: Entry) -> Entry:
    """A stored response as the upstream sent it (fields, body, ETag), for refreshes that re-admit
    it: the Vary line the cache added is dropped too, so the re-admitted response varies as before."""
    if entry.coding is None:
        return entry
    view = identity_view(entry, decompress(entry.body, entry.coding))
    fields = view.fields
    if not varies_on_accept_encoding(entry):
        index = len(fields) - 1 - fields[::-1].index(_VARY_ACCEPT_ENCODING)
        fields = fields[:index] + fields[index + 1 :]
    return view.changed(fields=fields, identity_etag=None, size=0, version=entry.version)
