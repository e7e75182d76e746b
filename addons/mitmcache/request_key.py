"""A mitmproxy request's cache key and the authority it is for."""

from mitmproxy import http

from .policy.fields import get_first
from .policy.key import primary_key


def authority(request: http.Request) -> str:
    """The request's Host (``:authority`` in HTTP/2 and 3), else the address it goes to: what
    ``request.host_header`` says, read straight from the fields (mitmproxy's ``Headers.get`` costs
    ~1 us, and every request needs this)."""
    if request.http_version.startswith("HTTP/1"):
        host = get_first(request.headers.fields, "host")
    else:
        host = request.host_header
    return host or f"{request.host}:{request.port}"


def cache_key(request: http.Request) -> str:
    return primary_key(request.scheme, authority(request), request.path)
