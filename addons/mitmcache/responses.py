"""Building the responses the cache itself sends: stored ones, 304s, and its own errors.

A fresh ``http.Response`` is built per flow (mitmproxy mutates responses per flow), straight from
the stored raw fields and body: ``Response.make`` assigns ``content``, which mitmproxy encodes
again per ``Content-Encoding`` (``mitmproxy/http.py``), so a stored gzip body would be gzipped twice.
"""

import functools
import json
import secrets
import time
from typing import Any

from mitmproxy import http

from .entry import Entry
from .policy.cache_status import RENDERED_STATUSES, Status
from .policy.fields import get_first, has_any, without_hop_by_hop
from .policy.ranges import Kind, Plan
from .upstream import Fetched

_X_CACHE = frozenset({b"x-cache"})  # ours replaces an upstream's (add_status)

# RFC 9110 §15.4.5: what a 304 carries (Last-Modified is left out: every entry has an ETag).
_NOT_MODIFIED_FIELDS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary"}
)


def _headers(fields: tuple[tuple[bytes, bytes], ...]) -> http.Headers:
    """``http.Headers(fields)`` for fields that are ``(bytes, bytes)`` tuples by construction.

    The constructor copies every pair, type-checks it and runs an empty ``update``: ~3.5 us of a hit,
    against ~0.4 us here. A ``Headers`` holds nothing but ``fields`` (mitmproxy 12's
    ``coretypes.multidict``; tests/unit/test_responses.py checks the two are equal)."""
    headers = http.Headers.__new__(http.Headers)
    headers.fields = fields
    return headers


def _response(
    status_code: int, reason: bytes, headers: http.Headers, body: bytes, now: float
) -> http.Response:
    """``http.Response(b"HTTP/1.1", status_code, reason, headers, body, None, now, now)`` for
    arguments of the right types by construction, as every response the cache builds from a stored
    entry has: the constructor only converts ``str`` and tuple arguments, ~0.6 us of a hit, before
    building the same ``ResponseData`` (whose own checks still run where mitmproxy runs them).
    tests/unit/test_responses.py checks the two are equal."""
    response = http.Response.__new__(http.Response)
    response.data = http.ResponseData(b"HTTP/1.1", headers, body, None, now, now, status_code, reason)
    return response


def _status_fields(status: Status, cache_name: str, age: float | None) -> tuple[tuple[bytes, bytes], ...]:
    """Our decision's fields. A tuple: every hit appends it to the stored fields (``from_entry``),
    and tuple + tuple is the cheapest way to build the response's fields."""
    return _rendered_fields(status, cache_name, None if age is None else int(age))


@functools.lru_cache(maxsize=RENDERED_STATUSES)
def _rendered_fields(status: Status, cache_name: str, age: int | None) -> tuple[tuple[bytes, bytes], ...]:
    """``_status_fields``, remembered: a hot key's hits carry the same decision at the same age in
    whole seconds many times over, and one lookup costs less than encoding three fields."""
    x_cache = (b"x-cache", status.x_cache.encode())
    cache_status = (b"cache-status", status.render(cache_name).encode())
    if age is None:
        return x_cache, cache_status
    return x_cache, cache_status, (b"age", str(age).encode())


def from_entry(entry: Entry, *, head: bool, age: float, status: Status, cache_name: str) -> http.Response:
    """The stored response; for HEAD without its body but with the GET's Content-Length."""
    now = time.time()
    headers = _headers(entry.fields + _status_fields(status, cache_name, age))
    return _response(entry.status, entry.reason, headers, b"" if head else entry.body, now)


def not_modified(entry: Entry, *, age: float, status: Status, cache_name: str) -> http.Response:
    """A 304 for the stored response, with the fields RFC 9110 §15.4.5 requires and no body."""
    now = time.time()
    fields = [(k, v) for k, v in entry.fields if k.lower() in _NOT_MODIFIED_FIELDS]
    headers = _headers((*fields, *_status_fields(status, cache_name, age)))
    return _response(304, b"Not Modified", headers, b"", now)


def ranges(entry: Entry, plan: Plan, *, age: float, status: Status, cache_name: str) -> http.Response:
    """Ranges of the stored (complete, 200) response (RFC 9110 §14): a 206 with one part, or with a
    ``multipart/byteranges`` body (§14.6), or a 416 when no range is satisfiable (§15.5.17)."""
    now = time.time()
    length = len(entry.body)
    if plan.kind is Kind.UNSATISFIABLE:
        kept = [(k, v) for k, v in entry.fields if k.lower() in (b"date", b"etag", b"last-modified")]
        fields = [*kept, (b"content-range", f"bytes */{length}".encode()), (b"content-length", b"0")]
        headers = http.Headers([*fields, *_status_fields(status, cache_name, age)])
        return http.Response(b"HTTP/1.1", 416, b"Range Not Satisfiable", headers, b"", None, now, now)
    base = [(k, v) for k, v in entry.fields if k.lower() not in (b"content-length", b"content-range")]
    if len(plan.ranges) == 1:
        part = plan.ranges[0]
        body = entry.body[part.first : part.last + 1]
        fields = [*base, (b"content-range", part.content_range(length).encode())]
    else:
        boundary = secrets.token_hex(16)
        content_type = get_first(entry.fields, "content-type")
        chunks = []
        for part in plan.ranges:
            head = f"--{boundary}\r\n"
            if content_type is not None:
                head += f"Content-Type: {content_type}\r\n"
            head += f"Content-Range: {part.content_range(length)}\r\n\r\n"
            chunks += [head.encode("latin-1"), entry.body[part.first : part.last + 1], b"\r\n"]
        chunks.append(f"--{boundary}--\r\n".encode())
        body = b"".join(chunks)
        fields = [(k, v) for k, v in base if k.lower() != b"content-type"]
        fields.append((b"content-type", f"multipart/byteranges; boundary={boundary}".encode()))
    fields.append((b"content-length", str(len(body)).encode()))
    headers = http.Headers([*fields, *_status_fields(status, cache_name, age)])
    return http.Response(b"HTTP/1.1", 206, b"Partial Content", headers, body, None, now, now)


def from_fetched(fetched: Fetched, *, head: bool, status: Status, cache_name: str) -> http.Response:
    """An upstream response the cache fetched for this client (a revalidation) but did not store:
    passed on as it came, with its framing redone for the stored body."""
    now = time.time()
    fields = [(k, v) for k, v in without_hop_by_hop(fetched.fields) if k.lower() != b"content-length"]
    if fetched.status not in (204, 304) and fetched.status >= 200:
        fields.append((b"content-length", str(len(fetched.body)).encode()))
    headers = http.Headers([*fields, *_status_fields(status, cache_name, None)])
    body = b"" if head else fetched.body
    return http.Response(b"HTTP/1.1", fetched.status, fetched.reason, headers, body, None, now, now)


def json_response(
    code: int, payload: Any, status: Status | None = None, cache_name: str = ""
) -> http.Response:
    """A JSON answer of the cache's own (admin API, errors); never cacheable downstream."""
    fields = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    if status is not None:
        fields += _status_fields(status, cache_name, None)
    response = http.Response.make(code, json.dumps(payload, indent=1).encode() + b"\n", http.Headers(fields))
    return response


def error(code: int, detail: str, status: Status, cache_name: str) -> http.Response:
    """The cache's own 502/504: says what failed instead of leaving a client hanging."""
    reason = {400: "bad request", 502: "bad gateway", 504: "gateway timeout"}.get(code, "error")
    return json_response(code, {"error": reason, "detail": detail}, status, cache_name)


def add_status(response: http.Response, status: Status, cache_name: str, *, etag: str | None = None) -> None:
    """Stamp a forwarded response with our decision (and the ETag we generated for it, if any),
    rebuilding its fields once. An upstream X-Cache is replaced; an upstream Cache-Status is kept,
    ours appended after it (RFC 9211 §2: the list grows towards the client)."""
    headers = response.headers
    fields = headers.fields
    if has_any(fields, _X_CACHE):
        fields = tuple((k, v) for k, v in fields if k.lower() != b"x-cache")
    ours = _status_fields(status, cache_name, None)
    if etag is not None:
        ours = ((b"etag", etag.encode()), *ours)
    headers.fields = (*fields, *ours)
