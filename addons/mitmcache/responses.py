"""Building the responses the cache itself sends: stored ones, 304s, and its own errors.

A fresh ``http.Response`` is built per flow (mitmproxy mutates responses per flow), straight from
the stored raw fields and body: ``Response.make`` would re-encode a gzip body (addon guide §2.2).
"""

import json
import time
from typing import Any

from mitmproxy import http

from .entry import Entry
from .policy.cache_status import Status

# RFC 9110 §15.4.5: what a 304 carries (Last-Modified is left out: every entry has an ETag).
_NOT_MODIFIED_FIELDS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary"}
)


def _status_fields(status: Status, cache_name: str, age: float | None) -> list[tuple[bytes, bytes]]:
    fields = [(b"x-cache", status.x_cache.encode()), (b"cache-status", status.render(cache_name).encode())]
    if age is not None:
        fields.append((b"age", str(int(age)).encode()))
    return fields


def from_entry(entry: Entry, *, head: bool, age: float, status: Status, cache_name: str) -> http.Response:
    """The stored response; for HEAD without its body but with the GET's Content-Length."""
    now = time.time()
    headers = http.Headers([*entry.fields, *_status_fields(status, cache_name, age)])
    return http.Response(
        b"HTTP/1.1", entry.status, entry.reason, headers, b"" if head else entry.body, None, now, now
    )


def not_modified(entry: Entry, *, age: float, status: Status, cache_name: str) -> http.Response:
    """A 304 for the stored response, with the fields RFC 9110 §15.4.5 requires and no body."""
    now = time.time()
    fields = [(k, v) for k, v in entry.fields if k.lower() in _NOT_MODIFIED_FIELDS]
    headers = http.Headers([*fields, *_status_fields(status, cache_name, age)])
    return http.Response(b"HTTP/1.1", 304, b"Not Modified", headers, b"", None, now, now)


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
    reason = {502: "bad gateway", 504: "gateway timeout"}.get(code, "error")
    return json_response(code, {"error": reason, "detail": detail}, status, cache_name)


def add_status(response: http.Response, status: Status, cache_name: str) -> None:
    """Stamp a forwarded response with our decision; an upstream Cache-Status is kept, ours
    appended after it (RFC 9211 §2: the list grows towards the client)."""
    response.headers["x-cache"] = status.x_cache
    response.headers.add("cache-status", status.render(cache_name))
