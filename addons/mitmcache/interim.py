"""Interim (1xx) responses from the upstream, which mitmproxy 12 mistakes for final ones.

mitmproxy's HTTP/1 client (``proxy/layers/http/_http1.py``, ``Http1Client.read_headers``) takes the
first response head it reads as *the* response. A ``102 Processing`` or ``103 Early Hints`` thus
becomes the flow's response: the addon hooks see a 1xx, the client is sent the 1xx and then nothing
(it waits for a final response that never comes), and the real final response that follows is
dropped as "Unexpected data from server". No addon hook runs between the two heads, and mitmproxy
has no event for an interim response, so an addon can neither relay a 1xx to the client nor recover
the final response through the hooks.

What an addon can do is teach the reader to skip interim heads: ``install`` wraps
``Http1Client.read_headers`` so that a complete 1xx head other than ``101 Switching Protocols`` at
the start of the buffer is discarded before mitmproxy parses the response. The final response then
flows, and is cached, as usual. The 1xx itself is not forwarded -- RFC 9110 §15.2 asks a proxy to
forward it, which needs support in mitmproxy itself (see docs/conformance.md). The wrapper checks
the shape of what it wraps and leaves mitmproxy untouched if that differs from the version it was
written for.
"""

import logging
import re

log = logging.getLogger("mitmcache")

# An interim status line: HTTP/1.x 1xx, but not 101 (an upgrade is final for the HTTP exchange).
_INTERIM_STATUS_LINE = re.compile(rb"HTTP/1\.[01] 1(?!01)\d\d[ \r\n]")
_END_OF_HEAD = re.compile(rb"\n\r?\n")  # what h11's ReceiveBuffer takes as the end of a head
_MARKER = "_mitmcache_skips_interim"


def skip_interim_heads(buffer) -> bool:
    """Drop complete interim response heads from the start of ``buffer`` (an h11 ReceiveBuffer);
    False when an interim head is still incomplete (wait for more data)."""
    while True:
        data = bytes(buffer)
        if not _INTERIM_STATUS_LINE.match(data):
            return True
        end = _END_OF_HEAD.search(data)
        if end is None:
            return False
        buffer.maybe_extract_at_most(end.end())
        log.debug("skipped an interim response from the upstream: %r", data[: data.find(b"\n")].strip())


def install() -> bool:
    """Make mitmproxy's HTTP/1 client skip interim responses; True when it does."""
    try:
        from mitmproxy.proxy import events
        from mitmproxy.proxy.layers.http import _http1
    except ImportError:  # pragma: no cover - another mitmproxy layout
        return False
    client = getattr(_http1, "Http1Client", None)
    original = getattr(client, "read_headers", None)
    if original is None or not hasattr(_http1, "ReceiveBuffer"):
        log.warning(
            "mitmproxy's HTTP/1 client is not the one expected: interim (1xx) responses stay unhandled"
        )
        return False
    if getattr(original, _MARKER, False):
        return True

    def read_headers(self, event):
        data_for_a_request = isinstance(event, events.DataReceived) and self.request is not None
        if data_for_a_request and not skip_interim_heads(self.buf):
            return  # the rest of an interim head is still to come
        yield from original(self, event)

    setattr(read_headers, _MARKER, True)
    read_headers.__doc__ = original.__doc__
    client.read_headers = read_headers
    return True
