"""What the write queue needs of the cache engine: an upstream client for any method, and the
invalidation of cached entries (the engine's ``invalidate_url``). This is the one file that knows
the cache: the engine's own any-method client (``Engine.upstream.send``) can replace this one's."""

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx

type Fields = Sequence[tuple[bytes, bytes]]


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

    async def close(self) -> None: ...


class HttpxDelivery:
    """Sends exactly the stored request (httpx's own default fields cleared, no proxy from the
    environment, redirects not followed: a 3xx is the upstream's answer), and reads the answer's
    body only to free the connection."""

    def __init__(self, verify: bool | ssl.SSLContext, connections: int) -> None:
        self._client = httpx.AsyncClient(
            verify=verify,
            trust_env=False,
            follow_redirects=False,
            timeout=None,  # bounded by each delivery's own deadline
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self._client.headers.clear()

    async def send(
        self, method: str, url: str, fields: Sequence[tuple[str, str]], body: bytes, timeout: float
    ) -> Answer:
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in fields]
        try:
            async with asyncio.timeout(timeout):
                async with self._client.stream(method, url, headers=headers, content=body) as response:
                    async for _ in response.aiter_raw():
                        pass
                    return Answer(response.status_code, list(response.headers.raw))
        except TimeoutError:
            raise DeliveryFailed(f"timeout after {timeout:g}s") from None
        except httpx.HTTPError as e:
            raise DeliveryFailed(f"{type(e).__name__}: {e}".rstrip(": ")) from None

    async def close(self) -> None:
        await self._client.aclose()


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
