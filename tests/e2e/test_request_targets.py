"""Absolute-form request targets (issue 13 item 1): sent upstream in origin form, so that the key
and what the upstream sees agree, through both launchers."""

import socket


def raw_exchange(proxy_url: str, request: bytes) -> bytes:
    """Send ``request`` as is on a new connection and read until the proxy closes it."""
    host, port = proxy_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_an_absolute_form_target_goes_upstream_in_origin_form_and_is_keyed_as_such(
    origin, proxy_factory, http
):
    origin.route("/home", headers=[("Cache-Control", "max-age=60")], body="home page")
    proxy = proxy_factory()
    answer = raw_exchange(
        proxy.url,
        b"GET http://evil.example/home HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"home page")
    assert [r["path"] for r in origin.requests()] == ["/home"]
    assert "evil.example" not in str(origin.requests()[0]["headers"])
    later = http.get(f"{proxy.url}/home")
    assert (later.headers["x-cache"], later.text) == ("HIT", "home page")


def test_an_absolute_form_target_cannot_store_a_404_for_everyone(origin, proxy_factory, http):
    """An origin that routes on the literal target answered the absolute form with a 404, which
    was then stored for every client of the URL."""
    origin.route("/fresh", headers=[("Cache-Control", "max-age=60")], body="the real page")
    proxy = proxy_factory()
    raw_exchange(
        proxy.url, b"GET http://elsewhere.example/fresh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    response = http.get(f"{proxy.url}/fresh")
    assert (response.status_code, response.text) == (200, "the real page")
