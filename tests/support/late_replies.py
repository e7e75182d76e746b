"""A TCP relay that hands a server's replies back late: what a process whose event loop lags sees.

``LateReplies(port)`` listens on a free loopback port and relays every connection to
``127.0.0.1:port``. Requests pass at once; replies pass at once too until ``lag(seconds)``, after
which each reply on a connection opened *before* that call is handed back ``seconds`` after it
arrived, in order. Connections opened later stay prompt, so a client's connection handshakes do
not add up to a timeout. A busy event loop looks the same from the outside: the server answered
in time, the client gets to the answer late.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Self

_CHUNK = 65536


class LateReplies:
    def __init__(self, port: int) -> None:
        self.target_port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._lagging: list[_Lag] = []  # one per connection: its replies' delay

    def start(self) -> Self:
        threading.Thread(target=self._accept, name="late-replies", daemon=True).start()
        return self

    def lag(self, seconds: float) -> None:
        """From now on, hand back every reply on the connections open now ``seconds`` late."""
        with self._lock:
            for lag in self._lagging:
                lag.seconds = seconds

    def close(self) -> None:
        self._listener.close()
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
            lag = _Lag()
            with self._lock:
                self._sockets += [client, server]
                self._lagging.append(lag)
            threading.Thread(target=_relay, args=(client, server, _Lag()), daemon=True).start()
            threading.Thread(target=_relay, args=(server, client, lag), daemon=True).start()


class _Lag:
    def __init__(self) -> None:
        self.seconds = 0.0


def _relay(source: socket.socket, sink: socket.socket, lag: _Lag) -> None:
    """Copy ``source`` to ``sink``, each chunk ``lag.seconds`` (as it is when the chunk arrives) late."""
    due: queue.Queue[tuple[float, bytes]] = queue.Queue()
    threading.Thread(target=_deliver, args=(due, sink), daemon=True).start()
    try:
        while data := source.recv(_CHUNK):
            due.put((time.monotonic() + lag.seconds, data))
    except OSError:
        pass
    due.put((0.0, b""))  # the end


def _deliver(due: queue.Queue[tuple[float, bytes]], sink: socket.socket) -> None:
    try:
        while True:
            at, data = due.get()
            if not data:
                sink.shutdown(socket.SHUT_WR)
                return
            time.sleep(max(0.0, at - time.monotonic()))
            sink.sendall(data)
    except OSError:
        pass
