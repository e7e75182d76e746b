"""Interim (1xx) responses from the upstream (RFC 9110 §15.2; RFC 9111 §3), end to end.

mitmproxy 12 would take a 1xx for the final response (see ``mitmcache/compat/upstream.py``); the addon
makes it skip interim heads. The test origin here is a raw socket server, since the programmable
origin cannot send an interim response before the final one.
"""

import socketserver
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conformance import PURE_RFC
from tests.support.harness import Proxy

INTERIM = {
    "/early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nX-My-Header: test\r\n\r\n",
    "/processing": b"HTTP/1.1 102 Processing\r\n\r\n",
    "/two-interims": b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
}
FINAL = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nContent-Length: 5\r\n\r\nfinal"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    return
                head += line
            target = head.split(b" ", 2)[1].decode()
            self.server.requests.append(target)  # type: ignore[attr-defined]
            self.wfile.write(INTERIM.get(target.split("?")[0], b"") + FINAL)
            self.wfile.flush()


class _RawOrigin(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []


@pytest.fixture(scope="module")
def raw_origin() -> Iterator[_RawOrigin]:
    server = _RawOrigin()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def proxy(raw_origin, tmp_path_factory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("interim-proxy")
    upstream = f"http://127.0.0.1:{raw_origin.server_address[1]}"
    with Proxy(upstream, PURE_RFC, cwd=tmp / "cwd", log_path=tmp / "mitmdump.log") as started:
        yield started


@pytest.mark.parametrize("path", sorted(INTERIM))
def test_the_final_response_after_interim_ones_reaches_the_client(raw_origin, proxy, path):
    """RFC 9110 §15.2: a 1xx is interim, "the final response ... follows"; the client gets that final
    response instead of waiting forever after a 1xx taken for the final one."""
    with httpx.Client(timeout=5, trust_env=False) as client:
        answer = client.get(f"{proxy.url}{path}?first")
    assert (answer.status_code, answer.text) == (200, "final")


def test_only_the_final_response_is_stored(raw_origin, proxy):
    """RFC 9111 §3: only a final response is stored; the fields of the interim response (103's
    X-My-Header) are not part of it."""
    with httpx.Client(timeout=5, trust_env=False) as client:
        client.get(f"{proxy.url}/early-hints?stored")
        hit = client.get(f"{proxy.url}/early-hints?stored")
    assert (hit.status_code, hit.headers["x-cache"], hit.text) == (200, "HIT", "final")
    assert "x-my-header" not in hit.headers
    assert raw_origin.requests.count("/early-hints?stored") == 1


def test_keep_alive_survives_an_interim_response(raw_origin, proxy):
    """After skipping an interim head, the upstream connection's next response is read as usual."""
    with httpx.Client(timeout=5, trust_env=False) as client:
        answers = [client.get(f"{proxy.url}/two-interims?n={n}") for n in range(3)]
    assert [a.text for a in answers] == ["final"] * 3
