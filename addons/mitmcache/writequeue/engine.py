"""What the write queue needs of the cache engine: its upstream client, for any method
(``Engine.upstream.send``), and the invalidation of cached entries (``Engine.invalidate_url``).
This is the one file that knows the cache; the rest of the queue sees the small interface below,
which the queue's unit tests fake."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from ..upstream import UpstreamError

type Fields = Sequence[tuple[bytes, bytes]]

POOL_SHARE = "writequeue"  # the queue's share of the engine's connection pool


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    fields: list[tuple[bytes, bytes]]


class DeliveryFailed(Exception):
    """No answer: the upstream could not be reached, or did not answer in time."""


class DeliveryClient(Protocol):
    async def send(
        self, method: str, url: str, fields: Sequence[tuple[str, str]], body: bytes, timeout: float
    ) -> Answer: ...


class EngineDelivery:
    """Sends exactly the stored request through the cache engine's own upstream client: one pool,
    the TLS verification of mitmproxy's own upstream connections (``ssl_insecure``,
    ``ssl_verify_upstream_trusted_ca``/``_confdir``), no proxy from the environment, redirects not
    followed (a 3xx is the upstream's answer). The answer's body is read only to free the connection."""

    def __init__(self, cache: object) -> None:
        self._cache = cache  # mitmcache.addon.Cache

    @classmethod
    def reserve(cls, cache: object, workers: int) -> None:
        """One connection per worker in the engine's pool, declared before the engine starts."""
        cache.engine.upstream.reserve(POOL_SHARE, workers)  # type: ignore[attr-defined]

    async def send(
        self, method: str, url: str, fields: Sequence[tuple[str, str]], body: bytes, timeout: float
    ) -> Answer:
        upstream = self._cache.engine.upstream  # type: ignore[attr-defined]
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in fields]
        try:
            fetched = await upstream.send(method, url, headers, body, timeout, 0, keep_body=False)
        except UpstreamError as e:
            raise DeliveryFailed(e.detail) from None
        return Answer(fetched.status, fetched.fields)


class CacheInvalidation:
    """Drops the cached entries a write makes stale (RFC 9111 §4.4): its URL, and the same-origin
    Location and Content-Location of its response, through the cache engine's invalidation entry
    point (so that a fetch of the URL under way does not store its older answer either)."""

    def __init__(self, cache: object) -> None:
        self._cache = cache  # mitmcache.addon.Cache

    async def invalidate(
        self, url: str, request_fields: Sequence[tuple[str, str]], answer: Fields = ()
    ) -> int:
        parts = urlsplit(url)
        # The cache keys by the Host the request carried (the client's with keep_host_header).
        host = next((value for name, value in request_fields if name.lower() == "host"), None) or parts.netloc
        target = url[len(parts.scheme) + 3 + len(parts.netloc) :] or "/"
        # Accepted, not yet answered: the URL alone (no Location to follow yet).
        engine = self._cache.engine  # type: ignore[attr-defined]
        return await engine.invalidate_url(parts.scheme, host, target, list(answer))
