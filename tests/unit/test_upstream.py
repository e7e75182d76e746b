"""Upstream: the cache's own GETs, against a real HTTP/1.1 server on 127.0.0.1."""

import asyncio
import gzip
import socket
import ssl
from collections.abc import AsyncIterator

import pytest

from mitmcache.upstream import TooLarge, Upstream, UpstreamError, tls_verification

GZIPPED = gzip.compress(b"squeeze me " * 200)
BIG = b"x" * 10_000


class Origin:
    """A tiny HTTP/1.1 origin: one response per connection, every request's fields recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[tuple[bytes, bytes]]]] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            path = request_line.split(" ")[1]
            fields = [
                (name.encode("latin-1"), value.strip().encode("latin-1"))
                for name, _, value in (line.partition(":") for line in lines if line)
            ]
            self.requests.append((path, fields))
            if path == "/slow":
                await reader.read()  # until the client gives up
                return
            if path == "/upload":  # echo the request's method and its chunked body
                body = await _read_chunked(reader)
                writer.write(
                    _message(201, [("X-Method", request_line.split(" ")[0])], body, reason="Created")
                )
                await writer.drain()
                return
            writer.write(self._response(path))
            await writer.drain()
        finally:
            writer.close()

    @staticmethod
    def _response(path: str) -> bytes:
        if path == "/gzip":
            return _message(200, [("Content-Encoding", "gzip"), ("Content-Type", "text/plain")], GZIPPED)
        if path == "/big":
            return _message(200, [], BIG)
        if path == "/big-chunked":
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(BIG), BIG)
        if path == "/unavailable":
            return _message(503, [("Retry-After", "5")], b"down", reason="Service Unavailable")
        return _message(200, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], b"ok")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while size := int((await reader.readline()).strip(), 16):
        chunks.append(await reader.readexactly(size))
        await reader.readline()
    await reader.readline()
    return b"".join(chunks)


def _message(status: int, headers: list[tuple[str, str]], body: bytes, reason: str = "OK") -> bytes:
    head = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    head += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = Origin()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    client = Upstream()
    client.start(verify_tls=True, max_connections=4)
    yield client
    await client.close()


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_body_is_kept_content_encoded(origin, upstream):
    fetched = await upstream.get(origin.url + "/gzip", [(b"accept-encoding", b"gzip")], 5, 1_000_000)
    assert (fetched.status, fetched.reason, fetched.body) == (200, b"OK", GZIPPED)
    assert (b"Content-Encoding", b"gzip") in fetched.fields


async def test_response_fields_keep_repeats_and_times_are_recorded(origin, upstream):
    fetched = await upstream.get(origin.url + "/plain", [], 5, 1_000_000)
    assert [v for k, v in fetched.fields if k.lower() == b"set-cookie"] == [b"a=1", b"b=2"]
    assert fetched.request_time <= fetched.response_time


async def test_an_error_status_is_an_answer_not_an_exception(origin, upstream):
    fetched = await upstream.get(origin.url + "/unavailable", [], 5, 1_000_000)
    assert (fetched.status, fetched.reason, fetched.body) == (503, b"Service Unavailable", b"down")


async def test_exactly_the_given_fields_are_sent(origin, upstream):
    """A refresh asks for what the stored variant holds: no coding, agent or media type of httpx's
    own may be added, or the answer would no longer fit the variant it refreshes."""
    sent = [(b"host", b"example.test"), (b"accept-encoding", b"identity"), (b"x-variant", b"fr")]
    await upstream.get(origin.url + "/plain", sent, 5, 1_000_000)
    assert origin.requests == [("/plain", sent)]


async def test_without_accept_encoding_none_is_added(origin, upstream):
    await upstream.get(origin.url + "/plain", [(b"host", b"example.test")], 5, 1_000_000)
    [(_, fields)] = origin.requests
    assert fields == [(b"host", b"example.test")]


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_a_body_past_max_bytes_is_too_large(origin, upstream, path):
    with pytest.raises(TooLarge):
        await upstream.get(origin.url + path, [], 5, len(BIG) - 1)
    fetched = await upstream.get(origin.url + path, [], 5, len(BIG))
    assert fetched.body == BIG


async def test_a_timeout_is_a_504(origin, upstream):
    with pytest.raises(UpstreamError) as error:
        await upstream.get(origin.url + "/slow", [], 0.2, 1_000_000)
    assert error.value.status == 504
    assert "timeout" in error.value.detail


async def test_a_refused_connection_is_a_502(upstream):
    with pytest.raises(UpstreamError) as error:
        await upstream.get(f"http://127.0.0.1:{free_port()}/", [], 5, 1_000_000)
    assert error.value.status == 502
    assert error.value.detail.startswith("upstream-error: ConnectError")


async def test_a_client_that_is_not_running_is_a_502():
    with pytest.raises(UpstreamError) as error:
        await Upstream().get("http://127.0.0.1:1/", [], 5, 1_000_000)
    assert error.value.status == 502


def test_tls_verification_is_off_with_ssl_insecure():
    assert tls_verification(True, "/nonexistent/ca.pem", None) is False


def test_tls_verification_uses_the_default_trust_store_without_a_configured_ca():
    assert tls_verification(False, None, None) is True


def test_tls_verification_trusts_exactly_the_configured_ca(tmp_path):
    import certifi

    context = tls_verification(False, certifi.where(), None)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] > 0


def test_tls_verification_with_a_missing_ca_file_fails_loudly(tmp_path):
    with pytest.raises(FileNotFoundError):
        tls_verification(False, str(tmp_path / "missing.pem"), None)


async def test_any_method_can_be_sent_with_a_body_streamed_in_chunks(origin, upstream):
    """The write queue delivers writes through the same client: a method other than GET, with a body
    that is streamed upstream as it is produced, never held whole."""

    async def body() -> AsyncIterator[bytes]:
        for part in (b"first ", b"second"):
            yield part

    sent = [(b"host", b"example.test"), (b"transfer-encoding", b"chunked")]
    fetched = await upstream.send("PUT", origin.url + "/upload", sent, body(), 5, 1_000_000)
    assert (fetched.status, fetched.body) == (201, b"first second")
    assert (b"X-Method", b"PUT") in fetched.fields


async def test_without_keep_body_the_answer_is_read_and_dropped_whatever_its_size(origin, upstream):
    """The write queue needs a delivery's status and fields, not its body: a body past max_bytes is
    no reason to lose the answer."""
    fetched = await upstream.send("POST", origin.url + "/big", [], b"x", 5, 0, keep_body=False)
    assert (fetched.status, fetched.body) == (200, b"")


async def test_a_reserved_share_widens_the_pool(origin):
    """The write queue reserves its workers' connections: they do not wait behind the engine's."""
    client = Upstream()
    client.reserve("queue", 1)
    client.start(verify_tls=True, max_connections=1)
    calls = [asyncio.create_task(client.get(origin.url + "/slow", [], 1, 1_000)) for _ in range(2)]
    await asyncio.sleep(0.3)
    assert len(origin.requests) == 2
    await asyncio.gather(*calls, return_exceptions=True)
    await client.close()


async def test_close_waits_for_the_calls_under_way(origin, upstream):
    """A stopping proxy lets the write queue's deliveries in flight finish after the engine stopped."""
    call = asyncio.create_task(upstream.get(origin.url + "/slow", [], 0.5, 1_000))
    await asyncio.sleep(0.1)
    await upstream.close()
    assert call.done()
    with pytest.raises(UpstreamError) as error:
        await call
    assert error.value.status == 504  # its own timeout ended it, not the client's closing
