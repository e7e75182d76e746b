"""The measuring stick for cache hits: the least work any mitmproxy addon can do to answer a request.

Not product code. ``mitmdump -s scripts/ceiling_addon.py`` answers every request in a synchronous
``request`` hook from a dict built at load time (no lookup policy, no bookkeeping, no logging), with the
body sizes our cache serves in the benchmark (``/bench/hit-1k``: 1 KiB, ``/bench/hit-100k``: 100 KiB;
any other path gets the 1 KiB body) and a header set of the size a cached hit carries. Whatever
mitmproxy costs per request beyond that hook is the floor under every addon-served hit, so our
cache's hit rate is reported as a ratio of this one's, measured in the same run.
"""

import time

from mitmproxy import http

# /bench/json-10k: the compression section's body size as sent (the ceiling does not compress).
SIZES = {"/bench/hit-1k": 1024, "/bench/hit-100k": 100 * 1024, "/bench/json-10k": 10 * 1024}
DEFAULT = "/bench/hit-1k"


def _prebuilt(size: int) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
    body = bytes(i % 251 for i in range(size))
    fields = (
        (b"content-type", b"application/octet-stream"),
        (b"cache-control", b"max-age=3600"),
        (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
        (b"etag", b'"ceiling-%d"' % size),
        (b"content-length", str(size).encode()),
        (b"x-cache", b"HIT"),
        (b"cache-status", b"ceiling; hit"),
        (b"age", b"0"),
    )
    return fields, body


class Ceiling:
    def __init__(self) -> None:
        self.responses = {path: _prebuilt(size) for path, size in SIZES.items()}

    def request(self, flow: http.HTTPFlow) -> None:
        path = flow.request.path
        fields, body = (
            self.responses.get(path)
            or self.responses.get(path.partition("?")[0])
            or (self.responses[DEFAULT])
        )
        now = time.time()
        flow.response = http.Response(b"HTTP/1.1", 200, b"OK", http.Headers(fields), body, None, now, now)


addons = [Ceiling()]
