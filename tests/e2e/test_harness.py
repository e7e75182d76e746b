"""The test origin itself works (talking to it directly, not through the proxy).

Every e2e test trusts the origin's answers and its request log, so the origin gets its own tests:
if one of these fails, proxy test failures mean nothing. So does the harness's proof that a proxy it
started is the one answering (the last test).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import httpx
import pytest

from tests.support.harness import HarnessError, Origin, Proxy, pattern_bytes, pattern_sha256


def test_route_status_headers_and_body(origin: Origin, http: httpx.Client) -> None:
    origin.route(
        "/a",
        status=203,
        headers=[("Cache-Control", "max-age=60"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
        body=b"\x00binary\xff",
    )
    response = http.get(origin.url + "/a?x=1")
    assert response.status_code == 203
    assert response.headers["cache-control"] == "max-age=60"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers["content-length"] == "8"
    assert "date" in response.headers
    assert response.content == b"\x00binary\xff"


def test_undefined_path_is_404_without_cache_headers(origin: Origin, http: httpx.Client) -> None:
    response = http.get(origin.url + "/nowhere")
    assert response.status_code == 404
    assert response.content
    assert not {"cache-control", "expires", "etag", "last-modified"} & set(response.headers)
    assert origin.count("/nowhere") == 1


def test_bad_route_definition_is_refused(origin: Origin, http: httpx.Client) -> None:
    response = http.post(
        origin.url + "/__origin/routes", json={"path": "/x", "headers": [["Content-Length", "1"]]}
    )
    assert response.status_code == 400
    assert "framing" in response.json()["error"]


def test_sequence_applies_in_order_then_last_repeats(origin: Origin, http: httpx.Client) -> None:
    origin.route(
        "/seq",
        headers={"X-Base": "yes"},
        body=b"base",
        sequence=[
            {"status": 200, "body": b"first"},
            {"status": 500, "headers": [("X-Second", "1")], "body": b"second", "delay": 0.3},
            {"status": 201, "body": b"third"},
        ],
    )
    results = []
    for _ in range(5):
        started = time.monotonic()
        response = http.get(origin.url + "/seq")
        results.append((response.status_code, response.content, time.monotonic() - started, response.headers))
    assert [(s, b) for s, b, _, _ in results] == [
        (200, b"first"),
        (500, b"second"),
        (201, b"third"),
        (201, b"third"),
        (201, b"third"),
    ]
    assert results[0][3]["x-base"] == "yes"
    assert "x-base" not in results[1][3] and results[1][3]["x-second"] == "1"  # headers replaced
    assert results[1][2] >= 0.3 > results[0][2]


def test_log_and_count(origin: Origin, http: httpx.Client) -> None:
    origin.route("/items", body=b"[]")
    http.get(origin.url + "/items?page=1", headers={"X-Test": "one"})
    http.get(origin.url + "/items?page=2")
    http.post(origin.url + "/items", content=b"payload")
    http.head(origin.url + "/items")

    assert origin.count() == 4
    assert origin.count("/items") == 4
    assert origin.count("/items?page=2") == 1
    assert origin.count("/items", method="GET") == 2
    assert origin.count(method="post") == 1
    log = origin.log()
    assert [e["path"] for e in log] == ["/items?page=1", "/items?page=2", "/items", "/items"]
    assert ["X-Test", "one"] in log[0]["headers"]
    assert log[2]["body_size"] == 7
    assert log[0]["time"] <= log[3]["time"]

    origin.reset()
    assert origin.log() == []
    assert http.get(origin.url + "/items").status_code == 404  # routes are gone too


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_size_body_is_streamed_with_a_checkable_pattern(
    origin: Origin, http: httpx.Client, chunked: bool
) -> None:
    size = 5 * 1024 * 1024 + 123  # not a multiple of the 64 KiB chunk size
    origin.route("/big", size=size, chunked=chunked)
    digest = hashlib.sha256()
    received = 0
    with http.stream("GET", origin.url + "/big") as response:
        assert response.status_code == 200
        if chunked:
            assert response.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in response.headers
        else:
            assert response.headers["content-length"] == str(size)
        for chunk in response.iter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == pattern_sha256(size)


def test_pattern_detects_a_dropped_chunk() -> None:
    """Period 251 is prime, so the body is not periodic in 64 KiB: a lost chunk changes the bytes."""
    body = pattern_bytes(3 * 65536)
    assert body[:65536] != body[65536:131072]
    assert body[:10] == bytes(range(10))


def test_head_has_get_headers_and_no_body(origin: Origin, http: httpx.Client) -> None:
    origin.route("/h", headers=[("ETag", '"v1"')], body=b"hello world")
    response = http.head(origin.url + "/h")
    assert response.status_code == 200
    assert response.headers["content-length"] == "11"
    assert response.headers["etag"] == '"v1"'
    assert response.content == b""
    # The connection is still in a sane state: the next request on it is answered correctly.
    assert http.get(origin.url + "/h").content == b"hello world"


def test_echo_describes_the_received_request(origin: Origin, http: httpx.Client) -> None:
    origin.route("/echo", echo=True, headers=[("Cache-Control", "no-store")])
    response = http.post(origin.url + "/echo?b=2&a=1", content=b"some body", headers={"X-Who": "me"})
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo?b=2&a=1"
    assert ["X-Who", "me"] in seen["headers"]
    assert seen["body_size"] == len(b"some body")


def test_keep_alive_and_connection_close(origin: Origin, http: httpx.Client) -> None:
    origin.route("/k", body=b"k")
    http.get(origin.url + "/k")
    http.get(origin.url + "/k")
    http.get(origin.url + "/k", headers={"Connection": "close"})
    http.get(origin.url + "/k")
    conns = [entry["conn"] for entry in origin.log()]
    assert conns[0] == conns[1] == conns[2] != conns[3]


def test_fail_close_and_hang(origin: Origin, http: httpx.Client) -> None:
    origin.route("/flaky", body=b"ok", sequence=[{"fail": "close"}, {"fail": "hang"}, {}])
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(origin.url + "/flaky")
    with pytest.raises(httpx.ReadTimeout):
        http.get(origin.url + "/flaky", timeout=0.5)
    assert http.get(origin.url + "/flaky").content == b"ok"
    assert origin.count("/flaky") == 3


def test_fail_partial_truncates_the_body(origin: Origin, http: httpx.Client) -> None:
    origin.route("/partial", size=1000, fail="partial")
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(origin.url + "/partial")


def test_request_body_in_chunked_encoding(origin: Origin, http: httpx.Client) -> None:
    origin.route("/upload", echo=True)
    response = http.put(origin.url + "/upload", content=iter([b"abc", b"defg"]))  # iterator -> chunked
    assert response.json()["body_size"] == 7
    assert ["Transfer-Encoding", "chunked"] in response.json()["headers"]


def test_thousand_concurrent_connections(origin: Origin) -> None:
    """The seeds broke under 1000 concurrent requests; our origin must not be the bottleneck."""
    origin.route("/c", body=b"x" * 100, delay=0.2)
    host, port = origin.url.removeprefix("http://").split(":")
    request = f"GET /c HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data

    async def many() -> list[bytes]:
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(1000))), 30)

    answers = asyncio.run(many())
    assert all(a.startswith(b"HTTP/1.1 200 ") and a.endswith(b"x" * 100) for a in answers)
    assert origin.count("/c") == 1000


def test_origin_startup_crash_fails_fast_with_its_log(tmp_path: Path) -> None:
    origin = Origin(workdir=tmp_path)
    origin.workdir = tmp_path / "missing"  # the port file cannot be written: the origin crashes at startup
    started = time.monotonic()
    with pytest.raises(HarnessError, match="exited with code 1 during startup") as excinfo:
        origin.start(timeout=10)
    assert time.monotonic() - started < 5
    assert "FileNotFoundError" in str(excinfo.value)


def test_a_proxy_whose_port_another_proxy_holds_is_not_taken_as_ready(origin: Origin, tmp_path: Path) -> None:
    """Another test's proxy can bind a free port first: its health answer is not this proxy's."""
    with Proxy(origin, log_path=tmp_path / "first.log") as first:
        second = Proxy(origin, port=first.port, log_path=tmp_path / "second.log")
        with pytest.raises(HarnessError, match="during startup"):
            second.start()
        assert "address already in use" in second.log_text().lower()
