"""A TCP relay that holds a server's replies back: what a process whose event loop lags sees.

``LateReplies(port)`` listens on a free loopback port and relays every connection to
``127.0.0.1:port``. Requests pass at once; replies pass at once too until ``hold(limit)``, after
which the replies on connections opened *before* that call are held back until ``release()``, or
until ``limit`` seconds after the first of them arrived, whichever comes first; then they are
handed back in order. Connections opened later stay prompt, so a client's connection handshakes do
not add up to a timeout. A busy event loop looks the same from the outside: the server answered in
time, the client gets to the answer late.

A test orders events with it rather than guessing durations: ``held`` is set once the server has
answered on a held connection (so the client's request went out before anything the test does
next), and ``release()`` hands the answer back once the test has done it. ``limit`` keeps the hold
within the client's own timeout, however slow the machine is.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Self

_CHUNK = 65536


class _Gate:
    """Whether replies pass: shared by the connections that were open when ``hold`` was called."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._holding = False
        self._limit = 0.0
        self._opens_at: float | None = None  # the first held reply's arrival + limit
        self.held = threading.Event()

    def hold(self, limit: float) -> None:
        with self._changed:
            self._holding, self._limit, self._opens_at = True, limit, None
            self.held.clear()

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
        self._open: list[_Reply] = []  # one per connection: the gate its replies pass
        self._gate = _Gate()

    @property
    def held(self) -> threading.Event:
        """Set once a reply is being held back (since the last ``hold``)."""
        return self._gate.held

    def start(self) -> Self:
        threading.Thread(target=self._accept, name="late-replies", daemon=True).start()
        return self

    def hold(self, limit: float) -> None:
        """From now on, hold back the replies on the connections open now, until ``release()`` or
        ``limit`` seconds after the first of them arrived."""
        with self._lock:
            for reply in self._open:
                reply.gate = self._gate
        self._gate.hold(limit)

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
            reply = _Reply()
            with self._lock:
                self._sockets += [client, server]
                self._open.append(reply)
            threading.Thread(target=_relay, args=(client, server, _Reply()), daemon=True).start()
            threading.Thread(target=_relay, args=(server, client, reply), daemon=True).start()


class _Reply:
    """One direction of a connection: prompt until ``hold`` gives it the relay's gate."""

    def __init__(self) -> None:
        self.gate: _Gate | None = None


def _relay(source: socket.socket, sink: socket.socket, reply: _Reply) -> None:
    """Copy ``source`` to ``sink``, each chunk once the gate (as it is when the chunk arrives) opens."""
    due: queue.Queue[tuple[_Gate | None, bytes]] = queue.Queue()
    threading.Thread(target=_deliver, args=(due, sink), daemon=True).start()
    try:
        while data := source.recv(_CHUNK):
            gate = reply.gate
            if gate is not None:
                gate.arrived()
            due.put((gate, data))
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
