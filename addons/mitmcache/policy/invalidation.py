"""Invalidation by unsafe requests (RFC 9111 §4.4).

"A cache MUST invalidate the target URI ... when it receives a non-error status code in response to
an unsafe request method (including methods whose safety is unknown). A cache MAY invalidate other
URIs ... the URI(s) in the Location and Content-Location response header fields (if present) ...
However, a cache MUST NOT trigger an invalidation under these conditions if the origin ... of the
URI to be invalidated differs from that of the target URI". We do invalidate the same-origin
``Location`` and ``Content-Location`` URIs: after a ``POST`` that created or changed them, a cached
copy of either would be out of date.
"""

from urllib.parse import urljoin, urlsplit

from .fields import Fields, get_first

# RFC 9110 §9.2.1: the methods defined as safe. Every other method -- POST, PUT, DELETE, PATCH, and
# any method we do not know, such as M-SEARCH -- may change the resource.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_DEFAULT_PORTS = {"http": 80, "https": 443}


def invalidates(method: str, status: int) -> bool:
    """Whether a response to ``method`` invalidates: an unsafe method and a non-error status (the
    2xx and 3xx classes; "non-error" excludes 4xx and 5xx)."""
    return method.upper() not in SAFE_METHODS and 200 <= status < 400


def invalidated_targets(target: str, response_fields: Fields) -> list[str]:
    """The request targets (path and query) to invalidate, all of the target URI's origin: the
    target URI's own, then those of the ``Location`` and ``Content-Location`` URIs (resolved against
    the target URI, RFC 9110 §10.2.2, §8.7) when they have the same origin."""
    targets = [_path_and_query(target)]
    try:
        origin = _origin(target)
    except ValueError:  # an authority we cannot parse: the target alone
        return targets
    for name in ("location", "content-location"):
        value = get_first(response_fields, name)
        if not value or not value.strip():
            continue
        try:
            uri = urljoin(target, value.strip())
            same_origin = _origin(uri) == origin
        except ValueError:  # e.g. an invalid port
            continue
        path = _path_and_query(uri)
        if same_origin and path not in targets:
            targets.append(path)
    return targets


def _path_and_query(uri: str) -> str:
    parts = urlsplit(uri)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _origin(uri: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit (RFC 9110 §4.3.1)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
