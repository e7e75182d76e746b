"""A TCP relay that holds a server's replies back: what a process whose event loop lags sees.

``LateReplies(port)`` listens on a free loopback port and relays every connection to
``127.0.0.1:port``. Requests pass at once, and so do replies, until ``hold(marker, limit)``: from
then on, a connection that carries a request containing ``marker`` has its replies held back until
``release()``, or until ``limit`` seconds after the first of them arrived, whichever comes first;
then they are handed back in order. Other connections, and whatever else the client does over
them meanwhile (a Redis client's background commands), stay prompt. A busy event loop looks the
same from the outside: the server answered in time, the client gets to the answer late.

A test orders events with it rather than guessing durations: ``held`` is set once the server has
answered the marked request (so it went out before anything the test does next), and ``release()``
hands the answer back once the test has done it. ``limit`` keeps the hold within the client's own
timeout: what the test does meanwhile must fit in it.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Self

_CHUNK = 65536


class _Gate:
    """Whether replies pass, for every connection: held while a hold is on, on the connections a
    request containing its marker went over (``_Connection``)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._holding = False
        self.hold_count = 0  # which hold a marked connection was marked in
        self._marker = b""
        self._limit = 0.0
        self._opens_at: float | None = None  # the first held reply's arrival + limit
        self.held = threading.Event()

    def hold(self, marker: bytes, limit: float) -> None:
        with self._changed:
            self._holding, self._marker, self._limit, self._opens_at = True, marker, limit, None
            self.hold_count += 1
            self.held.clear()

    def marks(self, request: bytes) -> int | None:
        """The hold that ``request`` (client to server) makes its connection's replies held for."""
        with self._changed:
            return self.hold_count if self._holding and self._marker in request else None

    def release(self) -> None:
        with self._changed:
            self._holding = False
            self._changed.notify_all()

    def arrived(self) -> None:
        """A reply arrived from the server: the first one held starts the limit's clock."""
        with self._changed:
            if self._holding and self._opens_at is None:
                self._opens_at = time.monotonic() + self._limit
                self.held.set()

    def wait_open(self) -> None:
        with self._changed:
            while self._holding and self._opens_at is not None:
                remaining = self._opens_at - time.monotonic()
                if remaining <= 0:
                    self._holding = False
                    break
                self._changed.wait(remaining)


class LateReplies:
    def __init__(self, port: int) -> None:
        self.target_port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._gate = _Gate()

    @property
    def held(self) -> threading.Event:
        """Set once a reply to a marked request is being held back (since the last ``hold``)."""
        return self._gate.held

    def start(self) -> Self:
        threading.Thread(target=self._accept, name="late-replies", daemon=True).start()
        return self

    def hold(self, marker: bytes, limit: float) -> None:
        """From now on, hold back the replies on a connection that carries a request containing
        ``marker``, until ``release()`` or ``limit`` seconds after the first of them arrived."""
        self._gate.hold(marker, limit)

    def release(self) -> None:
        """Hand back every reply held, in order, and stop holding."""
        self._gate.release()

    def close(self) -> None:
        self._listener.close()
        self._gate.release()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, server]
            connection = _Connection(self._gate)
            threading.Thread(target=_relay, args=(client, server, connection.request), daemon=True).start()
            threading.Thread(target=_relay, args=(server, client, connection.reply), daemon=True).start()


class _Connection:
    """One relayed connection: its replies are held once a request on it is marked."""

    def __init__(self, gate: _Gate) -> None:
        self._gate = gate
        self._marked_in: int | None = None

    def request(self, data: bytes) -> _Gate | None:
        if (hold := self._gate.marks(data)) is not None:
            self._marked_in = hold
        return None  # requests always pass at once

    def reply(self, data: bytes) -> _Gate | None:
        if self._marked_in is None or self._marked_in != self._gate.hold_count:
            return None
        self._gate.arrived()
        return self._gate


def _relay(source: socket.socket, sink: socket.socket, gate_for: Callable[[bytes], _Gate | None]) -> None:
    """Copy ``source`` to ``sink``, each chunk once the gate ``gate_for`` gives it (if any) opens."""
    due: queue.Queue[tuple[_Gate | None, bytes]] = queue.Queue()
    threading.Thread(target=_deliver, args=(due, sink), daemon=True).start()
    try:
        while data := source.recv(_CHUNK):
            due.put((gate_for(data), data))
    except OSError:
        pass
    due.put((None, b""))  # the end


def _deliver(due: queue.Queue[tuple[_Gate | None, bytes]], sink: socket.socket) -> None:
    try:
        while True:
            gate, data = due.get()
            if not data:
                sink.shutdown(socket.SHUT_WR)
                return
            if gate is not None:
                gate.wait_open()
            sink.sendall(data)
    except OSError:
        pass
