"""A forwarded fetch never leaves its waiters or its URL stuck, whatever its client, its upstream or
the cache itself does (issue 13 items 2, 4, 5, 6), end to end through both launchers."""

import asyncio
import json
import socket
import struct
import time

import httpx
import pytest

from tests.support.h2client import h2_requests
from tests.support.harness import pattern_sha256

CHUNK = 64 * 1024


async def get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.get(url)


async def head_time(client: httpx.AsyncClient, url: str, started: float) -> tuple[float, int, bytes]:
    """Seconds from ``started`` until the response head arrived, its status and its whole body."""
    async with client.stream("GET", url) as response:
        arrived = time.monotonic() - started
        body = await response.aread()
    return arrived, response.status_code, body


def client(n: int = 10, timeout: float = 20) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)


def send_and_hang_up(proxy_url: str, path: str, after: float) -> None:
    """A raw client that asks for ``path`` and resets the connection ``after`` seconds later."""
    host, port = proxy_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        time.sleep(after)


async def test_an_upstream_number_that_once_raised_in_the_store_path_leaves_no_url_wedged(
    origin, proxy_factory
):
    """An exception in the store path (a max-age of 5,000 digits made int() raise there) must
    release the key's waiters: they and every later request are answered at once, not after
    REQ_TIMEOUT with a 504."""
    origin.route("/huge", headers=[("Cache-Control", "max-age=" + "9" * 5000)], body="ok", delay=0.3)
    proxy = proxy_factory({"cache_upstream_timeout": "10"})
    started = time.monotonic()
    async with client() as c:
        first = await asyncio.gather(*(get(c, f"{proxy.url}/huge") for _ in range(4)))
        later = await get(c, f"{proxy.url}/huge")
    assert [r.status_code for r in first] == [200] * 4
    assert later.status_code == 200 and later.text == "ok"
    assert time.monotonic() - started < 10


async def test_a_leader_whose_client_hangs_up_after_the_response_head_does_not_give_its_waiters_a_502(
    origin, proxy_factory
):
    """The response head reached the proxy (its body, of known length, is still being read) when
    the first client hung up: its waiters get the response, not a 502."""
    size = 3 * CHUNK
    origin.route("/slow-body", headers=[("Cache-Control", "max-age=60")], size=size, chunk_delay=0.5)
    proxy = proxy_factory()
    async with client() as c:
        leader = asyncio.get_running_loop().run_in_executor(
            None, send_and_hang_up, proxy.url, "/slow-body", 0.6
        )
        await asyncio.sleep(0.2)  # the leader's request is upstream: these wait for it
        waiters = [asyncio.ensure_future(get(c, f"{proxy.url}/slow-body")) for _ in range(3)]
        await leader
        responses = await asyncio.gather(*waiters)
    assert [r.status_code for r in responses] == [200] * 3
    assert all(len(r.content) == size for r in responses)


async def test_an_upstream_that_stalls_after_the_head_is_timed_out_for_its_waiters(origin, proxy_factory):
    origin.route(
        "/stall", headers=[("Cache-Control", "max-age=60")], size=3 * CHUNK, chunked=True, chunk_delay=30
    )
    proxy = proxy_factory({"cache_body_idle_timeout": "1", "cache_upstream_timeout": "20"})
    started = time.monotonic()
    async with client() as c:
        leader = asyncio.ensure_future(c.get(f"{proxy.url}/stall"))
        await asyncio.sleep(0.3)
        waiters = await asyncio.gather(*(get(c, f"{proxy.url}/stall") for _ in range(3)))
        with pytest.raises(httpx.HTTPError):  # its body was cut: the upstream connection was closed
            await leader
    assert time.monotonic() - started < 5
    assert [r.status_code for r in waiters] == [504] * 3
    assert all("upstream-body-idle" in r.headers["cache-status"] for r in waiters)


async def test_a_stored_response_whose_body_stalls_is_timed_out_with_no_waiters(origin, proxy_factory):
    """A response being stored is bounded too: its client is not held for as long as the upstream
    keeps the connection open, and the next request gets a fresh fetch."""
    origin.route(
        "/slow",
        headers=[("Cache-Control", "max-age=60")],
        sequence=[{"size": 3 * CHUNK, "chunk_delay": 30}, {"body": "whole"}],
    )
    proxy = proxy_factory({"cache_body_idle_timeout": "1"})
    started = time.monotonic()
    async with client() as c:
        first = await c.get(f"{proxy.url}/slow")  # Content-Length known: buffered, not streamed
        assert first.status_code == 504
        assert first.json()["detail"] == "upstream-body-idle after 1s"
        assert time.monotonic() - started < 5
        second = await c.get(f"{proxy.url}/slow")
    assert second.status_code == 200 and second.text == "whole"


async def test_a_long_stream_nobody_waits_for_and_not_stored_is_left_alone(origin, proxy_factory):
    size = 3 * CHUNK
    origin.route("/events", headers=[("Cache-Control", "no-store")], size=size, chunked=True, chunk_delay=1.5)
    proxy = proxy_factory({"cache_body_idle_timeout": "1"})
    async with client() as c:
        response = await c.get(f"{proxy.url}/events")
    assert response.status_code == 200
    assert len(response.content) == size


async def test_waiters_go_upstream_at_once_when_the_head_says_the_response_cannot_be_stored(
    origin, proxy_factory
):
    size = 3 * CHUNK
    origin.route("/sse", headers=[("Cache-Control", "no-store")], size=size, chunked=True, chunk_delay=1)
    proxy = proxy_factory()
    async with client() as c:
        started = time.monotonic()
        leader = asyncio.ensure_future(head_time(c, f"{proxy.url}/sse", started))
        await asyncio.sleep(0.3)
        waiters = await asyncio.gather(*(head_time(c, f"{proxy.url}/sse", started) for _ in range(3)))
        await leader
    assert all(status == 200 and len(body) == size for _, status, body in waiters)
    assert max(arrived for arrived, _, _ in waiters) < 1.5  # not after the leader's 3 s stream
    assert origin.count("/sse") == 4


async def test_waiters_go_upstream_once_a_body_of_unknown_length_outgrows_the_largest_object(
    origin, proxy_factory
):
    size = 4 * CHUNK
    origin.route("/big", headers=[("Cache-Control", "max-age=60")], size=size, chunked=True, chunk_delay=1)
    proxy = proxy_factory({"cache_max_object_bytes": str(CHUNK + 1000)})
    async with client() as c:
        started = time.monotonic()
        leader = asyncio.ensure_future(head_time(c, f"{proxy.url}/big", started))
        await asyncio.sleep(0.3)
        waiters = await asyncio.gather(*(head_time(c, f"{proxy.url}/big", started) for _ in range(3)))
        _, _, leader_body = await leader
    assert len(leader_body) == size
    assert all(status == 200 and len(body) == size for _, status, body in waiters)
    # released when the second chunk (at ~1 s) passed the limit, not when the stream ended (~4 s)
    assert max(arrived for arrived, _, _ in waiters) < 2.5
    assert pattern_sha256(size)


def test_a_close_delimited_body_ended_by_a_clean_close_is_stored(origin, proxy_factory, http):
    origin.route("/cd", headers=[("Cache-Control", "max-age=60")], size=200_000, close_delimited=True)
    proxy = proxy_factory()
    first = http.get(f"{proxy.url}/cd")
    second = http.get(f"{proxy.url}/cd")
    assert len(first.content) == len(second.content) == 200_000
    assert second.headers["x-cache"] == "HIT"


def test_a_close_delimited_body_cut_short_by_a_reset_is_not_stored(origin, proxy_factory, http):
    """Item 19: without Content-Length or chunked framing, a body ends when the connection closes;
    one that ended with a TCP reset was stored as complete, and served cut to everyone."""
    origin.route(
        "/cut",
        headers=[("Cache-Control", "max-age=60")],
        sequence=[{"size": 200_000, "close_delimited": True, "fail": "partial-reset"}, {"body": "whole"}],
    )
    proxy = proxy_factory()
    try:
        http.get(f"{proxy.url}/cut")
    except httpx.HTTPError:
        pass  # the client may see the cut too
    second = http.get(f"{proxy.url}/cut")
    assert (second.text, second.headers["x-cache"]) == ("whole", "MISS")
    assert origin.count("/cut") == 2


async def test_the_client_whose_request_timed_out_upstream_gets_the_same_json_504_as_its_waiters(
    origin, proxy_factory
):
    """Issue 12 item 4: it got mitmproxy's HTML 502, without X-Cache, while its waiters got the
    cache's JSON 504."""
    origin.route("/late", headers=[("Cache-Control", "max-age=60")], body="late", delay=5)
    proxy = proxy_factory({"cache_upstream_timeout": "1"})
    async with client() as c:
        leader = asyncio.ensure_future(c.get(f"{proxy.url}/late"))
        await asyncio.sleep(0.2)
        waiter = await c.get(f"{proxy.url}/late")
        leader_response = await leader
    for response in (leader_response, waiter):
        assert response.status_code == 504
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"] == "gateway timeout"
        assert response.headers["x-cache"] in ("MISS", "COALESCED")
    assert leader_response.json()["detail"] == "upstream-timeout after 1s"
    assert 'detail="upstream-timeout after 1s"' in leader_response.headers["cache-status"]


def unreachable_upstream() -> str:
    """The URL of a port nothing listens on: a connection to it is refused."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unreachable_upstream_gives_a_stamped_json_502(proxy_factory, http, method):
    """Connection refused: mitmproxy's own error page carried no X-Cache or Cache-Status."""
    proxy = proxy_factory(upstream=unreachable_upstream())
    response = http.request(method, f"{proxy.url}/x")
    assert response.status_code == 502
    assert "upstream-error" in response.json()["detail"]
    assert response.headers["x-cache"] == ("MISS" if method == "GET" else "BYPASS")
    assert "upstream-error" in response.headers["cache-status"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_http2_client_of_an_unreachable_upstream_gets_the_stamped_json_502_too(proxy_factory, method):
    """mitmproxy makes its HTML page for an HTTP/2 client in its HTTP/2 layer, which the HTTP/1
    answer never reached."""
    proxy = proxy_factory(upstream=unreachable_upstream())
    [(status, fields, body)] = h2_requests(
        proxy.port, proxy.confdir / "mitmproxy-ca-cert.pem", ["/x"], method
    )
    assert (status, fields["content-type"]) == (502, "application/json")
    assert "upstream-error" in json.loads(body)["detail"]
    assert fields["x-cache"] == ("MISS" if method == "GET" else "BYPASS")
    assert "upstream-error" in fields["cache-status"] and "connection" not in fields
