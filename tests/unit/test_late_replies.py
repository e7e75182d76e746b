"""The test relay that hands replies back late (tests/support/late_replies.py), against an echo server."""

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.late_replies import LateReplies


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def round_trip(sock: socket.socket) -> float:
    started = time.monotonic()
    sock.sendall(b"ping")
    assert sock.recv(1024) == b"ping"
    return time.monotonic() - started


def test_replies_pass_at_once_until_told_to_hold(echo_port):
    with LateReplies(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as sock:
        assert round_trip(sock) < 0.5


def test_a_held_reply_comes_back_when_released(echo_port):
    with LateReplies(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as sock:
        relay.hold(b"ping", limit=10)
        sock.sendall(b"ping")
        assert relay.held.wait(5)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1024)
        relay.release()
        sock.settimeout(5)
        assert sock.recv(1024) == b"ping"


def test_a_held_reply_comes_back_by_itself_after_the_limit(echo_port):
    with LateReplies(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as sock:
        relay.hold(b"ping", limit=0.3)
        assert 0.3 <= round_trip(sock) < 3


def test_replies_on_a_connection_without_the_marker_pass_at_once(echo_port):
    with (
        LateReplies(echo_port) as relay,
        socket.create_connection(("127.0.0.1", relay.port)) as marked,
        socket.create_connection(("127.0.0.1", relay.port)) as other,
    ):
        relay.hold(b"ping", limit=10)
        marked.sendall(b"ping")
        assert relay.held.wait(5)
        other.sendall(b"pong")
        other.settimeout(5)
        assert other.recv(1024) == b"pong"
        relay.release()


def test_replies_after_a_release_pass_at_once(echo_port):
    with LateReplies(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as sock:
        relay.hold(b"ping", limit=10)
        relay.release()
        assert round_trip(sock) < 0.5


def test_a_connection_marked_in_an_earlier_hold_is_not_held_by_the_next(echo_port):
    with LateReplies(echo_port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as sock:
        relay.hold(b"ping", limit=0.3)
        round_trip(sock)  # held, then let through by the limit
        relay.hold(b"other", limit=10)
        assert round_trip(sock) < 0.5
        assert not relay.held.is_set()
