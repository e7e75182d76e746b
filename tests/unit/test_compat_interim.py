"""Skipping interim (1xx) responses in mitmproxy's HTTP/1 client (RFC 9110 §15.2)."""

import pytest
from h11._receivebuffer import ReceiveBuffer
from mitmproxy.proxy.layers.http import _http1

from mitmcache import compat

FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def buffer(data: bytes) -> ReceiveBuffer:
    buf = ReceiveBuffer()
    buf += data
    return buf


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        b"HTTP/1.0 199 Whatever\n\n",
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    ],
    ids=["100", "102", "103", "bare LF", "two in a row"],
)
def test_complete_interim_heads_are_dropped(head):
    """RFC 9110 §15.2: 1xx responses are interim; the final response follows them."""
    buf = buffer(head + FINAL)
    assert compat.skip_interim_heads(buf)
    assert bytes(buf) == FINAL


@pytest.mark.parametrize(
    "data",
    [
        FINAL,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ],
    ids=["200", "101 is final", "204"],
)
def test_final_responses_are_left_alone(data):
    """RFC 9110 §15.2.2: 101 ends the HTTP exchange on the connection; it is not skipped."""
    buf = buffer(data)
    assert compat.skip_interim_heads(buf)
    assert bytes(buf) == data


def test_an_incomplete_interim_head_waits_for_more_data():
    buf = buffer(b"HTTP/1.1 103 Early Hints\r\nLink: </a>")
    assert not compat.skip_interim_heads(buf)
    assert bytes(buf) == b"HTTP/1.1 103 Early Hints\r\nLink: </a>"


def test_install_wraps_the_http1_client_once():
    """The wrapper goes on mitmproxy's HTTP/1 client once, however often the addon loads."""
    assert compat.install_interim_reader()
    wrapped = _http1.Http1Client.read_headers
    assert compat.install_interim_reader()
    assert _http1.Http1Client.read_headers is wrapped
    assert getattr(wrapped, compat._INSTALLED, False)
