"""GET and HEAD requests that carry a body ("fat GET").

A body is not part of the cache key, so if such a request were looked up and its answer stored,
one client's body would decide what every other client gets. By default the cache refuses them
(``400``, before their body is read: mitmproxy discards it as it arrives, see
``compat.install_request_body_discard``); with ``CACHE_GET_BODY=pass`` they stream upstream like
any upload, never looked up and never stored (search APIs that take a query in a GET body).
"""

from mitmproxy import http

from .compat import discard_request_body
from .policy.cache_status import Status, XCache
from .responses import error

GET_BODY = "cache_get_body"  # flow.metadata: this GET or HEAD went upstream with its body, uncached
STATUS = Status(XCache.BYPASS, fwd="request", detail="request-body")  # refused or passed


def carries_body(fields: tuple[tuple[bytes, bytes], ...]) -> bool:
    """Whether a request's head announces a body (RFC 9112 §6.3: any Transfer-Encoding, or a
    Content-Length other than 0)."""
    for name, value in fields:
        size = len(name)  # every hit passes here: lower-case only names of the right length
        if size == 17 and name.lower() == b"transfer-encoding":
            return True
        if size == 14 and name.lower() == b"content-length" and value.strip() != b"0":
            return True
    return False


def handle(flow: http.HTTPFlow, mode: str, cache_name: str) -> None:
    """A GET or HEAD with a body, at its head: refused with a 400, or streamed upstream uncached."""
    if mode == "pass":
        flow.request.stream = True
        flow.metadata[GET_BODY] = True
        return
    discard_request_body(flow)
    flow.response = error(
        400,
        "a GET or HEAD request may not carry a body here: it is not part of the cache key "
        "(the operator can let such requests through, uncached, with CACHE_GET_BODY=pass)",
        STATUS,
        cache_name,
    )
