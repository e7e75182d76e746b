"""The one place that asks the upstream for something outside a client's flow.

Refreshes and revalidations run here, on our own pooled ``httpx`` client, rather than through
mitmproxy's ``replay.client``, which serialises replays through one global queue and runs every
addon hook for them (``mitmproxy/addons/clientplayback.py``). Bodies are read raw (still content-encoded), the
way mitmproxy stores them, and never beyond the cache's object size.
"""

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass

import httpx

# httpx logs every request it sends at info, which mitmproxy's log would show beside the cache's own
# line about the same refresh ("control: refresh of URL: stored"); its warnings and errors still show.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(slots=True)
class Fetched:
    status: int
    reason: bytes
    fields: list[tuple[bytes, bytes]]
    body: bytes
    request_time: float
    response_time: float


class UpstreamError(Exception):
    """The upstream could not be reached, or did not answer in time."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status  # what a client should get: 502 (error) or 504 (timeout)
        self.detail = detail


class TooLarge(Exception):
    """The body grew past the largest object the cache stores."""


def tls_verification(
    insecure: bool, trusted_ca: str | None, trusted_confdir: str | None
) -> bool | ssl.SSLContext:
    """Verify the upstream's certificate the way mitmproxy's own upstream connections do, from the
    same options (``ssl_insecure``, ``ssl_verify_upstream_trusted_ca``/``_confdir``), so that a
    revalidation reaches an upstream exactly when a client's miss does."""
    if insecure:
        return False
    if trusted_ca or trusted_confdir:
        return ssl.create_default_context(cafile=trusted_ca or None, capath=trusted_confdir or None)
    return True  # httpx's default trust store: certifi's, as mitmproxy's


class Upstream:
    """One pooled client, one TLS verification, one pool for every caller: the refresher and the
    write queue. Each caller bounds its own concurrency; the pool holds the sum of their shares, so
    that deliveries never wait behind refreshes for a connection, nor refreshes behind deliveries."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._shares: dict[str, int] = {}
        self._sending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def reserve(self, user: str, connections: int) -> None:
        """``user``'s share of the pool (again: replaced); counted by ``start``, so declare it before."""
        self._shares[user] = connections

    def start(self, verify_tls: bool | ssl.SSLContext, max_connections: int) -> None:
        """Open the pool: ``max_connections`` for the engine, plus the shares reserved."""
        max_connections += sum(self._shares.values())
        self._client = httpx.AsyncClient(
            verify=verify_tls,
            trust_env=False,  # never route refreshes through a proxy from the environment
            follow_redirects=False,
            timeout=None,  # bounded by the caller's overall deadline instead
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        # No default fields of httpx's own (Accept, Accept-Encoding: gzip, ..., User-Agent): a refresh
        # must ask for what the variant it refreshes holds, e.g. not a gzip body for a variant stored
        # for clients that sent no Accept-Encoding. Host is still derived from the URL when not given.
        self._client.headers.clear()

    async def close(self) -> None:
        """Close once the calls under way have ended: a stopping proxy lets the write queue's
        deliveries in flight finish (their own timeouts bound them) after the engine has stopped."""
        await self._idle.wait()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def get(
        self, url: str, fields: Sequence[tuple[bytes, bytes]], timeout: float, max_bytes: int
    ) -> Fetched:
        """GET ``url`` with exactly ``fields``; raise UpstreamError, or TooLarge past ``max_bytes``."""
        return await self.send("GET", url, fields, None, timeout, max_bytes)

    async def send(
        self,
        method: str,
        url: str,
        fields: Sequence[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes] | None,
        timeout: float,
        max_bytes: int,
        *,
        keep_body: bool = True,
    ) -> Fetched:
        """Send any method to ``url`` with exactly ``fields`` and ``body`` (bytes, or an async
        iterable streamed upstream in chunks, as the write queue delivers large bodies), within
        ``timeout`` seconds; redirects are answers, not followed. Raise UpstreamError, or TooLarge
        when the answer's body passes ``max_bytes``. Without ``keep_body`` the answer's body is read
        to its end (so that its connection can be reused) and dropped, whatever its size: the write
        queue needs only the status and fields."""
        if self._client is None:
            raise UpstreamError(502, "upstream client not running")
        request_time = time.time()
        self._sending += 1
        self._idle.clear()
        try:
            async with asyncio.timeout(timeout):
                async with self._client.stream(method, url, headers=list(fields), content=body) as response:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_raw():
                        if not keep_body:
                            continue
                        size += len(chunk)
                        if size > max_bytes:
                            raise TooLarge
                        chunks.append(chunk)
                    return Fetched(
                        status=response.status_code,
                        reason=response.reason_phrase.encode("latin-1", "replace"),
                        fields=list(response.headers.raw),
                        body=b"".join(chunks),
                        request_time=request_time,
                        response_time=time.time(),
                    )
        except TimeoutError:
            raise UpstreamError(504, f"upstream-timeout after {timeout:g}s") from None
        except httpx.HTTPError as e:
            raise UpstreamError(502, f"upstream-error: {type(e).__name__}: {e}".rstrip(": ")) from None
        finally:
            self._sending -= 1
            if not self._sending:
                self._idle.set()
