"""A mitmproxy request's cache key, the authority it is for, and the URL it went upstream to."""

from functools import lru_cache

from mitmproxy import http
from mitmproxy.net.http import url

from .policy.fields import get_first
from .policy.key import primary_key


def authority(request: http.Request) -> str:
    """The request's Host (``:authority`` in HTTP/2 and 3), else the address it goes to: what
    ``request.host_header`` says, read straight from the fields (mitmproxy's ``Headers.get`` costs
    ~1 us, and every request needs this)."""
    if request.data.http_version.startswith(b"HTTP/1"):
        host = get_first(request.headers.fields, "host")
    else:
        host = request.host_header
    return host or f"{request.host}:{request.port}"


def upstream_url(request: http.Request) -> str:
    """``request.url`` of a request that is not a ``CONNECT``: where a stored response is fetched
    again. mitmproxy builds it from four decoded parts on every access (about 3 us, on every
    stored miss); a proxy sends to a handful of upstreams, whose ``scheme://host[:port]`` is kept."""
    data = request.data
    path = data.path.decode("utf-8", "surrogateescape")
    return _origin(data.scheme, data.host, data.port) + (path if path != "*" else "")


@lru_cache(maxsize=256)
def _origin(scheme: bytes, host: str, port: int) -> str:
    return url.unparse(scheme.decode("utf-8", "surrogateescape"), host, port, "")


def cache_key(request: http.Request) -> str:
    return primary_key(request.scheme, authority(request), request.path)


def origin_form(request: http.Request) -> None:
    """Send an absolute-form request (``GET http://other.example/home HTTP/1.1``) upstream in origin
    form (``GET /home``), with the Host mitmproxy's reverse mode gives every request.

    mitmproxy's reverse mode keeps the absolute form (only its regular mode rewrites it, in
    ``proxy/layers/http/__init__.py``), and an origin that honours it (RFC 9112 §3.2.2: the target's
    authority wins over Host) would answer for ``other.example`` while the cache keys the answer
    by the Host it sends: one client could store another site's page, or a 404, under ``/home``.
    In origin form the key and what the upstream sees always agree."""
    if request.method != "CONNECT":
        request.authority = ""
