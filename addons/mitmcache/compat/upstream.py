"""Patches on the way to and from the upstream.

* **Interim (1xx) responses.** mitmproxy's HTTP/1 client (``Http1Client.read_headers``) takes the
  first response head it reads as *the* response: a ``102``/``103`` became the flow's response and
  the real one was dropped. ``install_interim_reader`` skips complete 1xx heads other than ``101``;
  the 1xx itself is not forwarded (see docs/conformance.md).
* **The cache's own answer** where mitmproxy would send its HTML error page to a client whose flow
  failed upstream (``install_failure_answers``, ``answer_failure_with``).
* **Closing a hung upstream** (``abort_upstream``): mitmproxy has no timeout for a response head and
  ``flow.kill()`` does not reach a flow in transit (mitmproxy issue #4711); the proxy server's
  connection handler can close the server connection, and the flow then fails as on any lost one.
"""

import re

from mitmproxy import ctx, http
from mitmproxy.connection import ConnectionState

from . import _INSTALLED, _check, check_version, log, supported

# -- interim (1xx) responses ------------------------------------------------------------------------

# An interim status line: HTTP/1.x 1xx, but not 101 (an upgrade is final for the HTTP exchange).
_INTERIM_STATUS_LINE = re.compile(rb"HTTP/1\.[01] 1(?!01)\d\d[ \r\n]")
_END_OF_HEAD = re.compile(rb"\n\r?\n")  # what h11's ReceiveBuffer takes as the end of a head


def skip_interim_heads(buffer) -> bool:
    """Drop complete interim response heads from the start of ``buffer`` (an h11 ReceiveBuffer);
    False when an interim head is still incomplete (wait for more data)."""
    while True:
        data = bytes(buffer)
        if not _INTERIM_STATUS_LINE.match(data):
            return True
        end = _END_OF_HEAD.search(data)
        if end is None:
            return False
        buffer.maybe_extract_at_most(end.end())
        log.debug("skipped an interim response from the upstream: %r", data[: data.find(b"\n")].strip())


def install_interim_reader() -> bool:
    """Make mitmproxy's HTTP/1 client skip interim responses; True when it does."""
    if not supported():
        _check("skipping interim (1xx) responses")
        return False
    try:
        from mitmproxy.proxy import events
        from mitmproxy.proxy.layers.http import _http1
    except ImportError:  # pragma: no cover - another mitmproxy layout
        return False
    client = getattr(_http1, "Http1Client", None)
    original = getattr(client, "read_headers", None)
    if original is None or not hasattr(_http1, "ReceiveBuffer"):
        log.warning(
            "mitmproxy's HTTP/1 client is not the one expected: interim (1xx) responses stay unhandled"
        )
        return False
    if getattr(original, _INSTALLED, False):
        return True

    def read_headers(self, event):
        # A plain function handing on the original's generator: mitmproxy only iterates a state's
        # result, and a generator of its own around every read would cost every response.
        data_for_a_request = isinstance(event, events.DataReceived) and self.request is not None
        if data_for_a_request and not skip_interim_heads(self.buf):
            return ()  # the rest of an interim head is still to come
        return original(self, event)

    setattr(read_headers, _INSTALLED, True)
    read_headers.__doc__ = original.__doc__
    client.read_headers = read_headers
    return True


# -- the cache's own answer when mitmproxy would send its error page -------------------------------------

_FAILURE_ANSWER = "_mitmcache_failure_answer"  # on a flow's request: what to send if the flow fails


def answer_failure_with(flow: http.HTTPFlow, response: http.Response) -> None:
    """Send ``response`` instead of mitmproxy's HTML error page, should mitmproxy send one for this
    failed flow (it does when the client has no response head yet)."""
    setattr(flow.request, _FAILURE_ANSWER, response)


def install_failure_answers() -> bool:
    """mitmproxy answers a flow that failed upstream (refused, reset, closed, TLS) with an HTML page
    it makes itself, after the ``error`` hook ran; the hook cannot replace it
    (``proxy/layers/http/__init__.py``, ``handle_protocol_error``). The answer the hook left on the
    flow's request (``answer_failure_with``) is sent instead: to an HTTP/1 client by
    ``Http1Server.send``, which makes the page from a ``ResponseProtocolError``; to an HTTP/2
    client by the flow's stream, whose ``ResponseProtocolError`` becomes the answer's head, body and
    end (``Http2Connection`` would make the page). Only the HTTP/1 answer says ``Connection: close``
    (HTTP/2 has no such field, RFC 9113 §8.2.2). True when installed."""
    check_version()
    try:
        from mitmproxy.net.http import http1
        from mitmproxy.proxy import commands
        from mitmproxy.proxy.layers.http import ResponseProtocolError, _http1
    except ImportError:  # pragma: no cover - another mitmproxy layout
        return False
    if not _install_http2_failure_answers():
        log.warning("mitmproxy's HTTP stream is not the one expected: HTTP/2 clients get its error pages")
    server = getattr(_http1, "Http1Server", None)
    original = getattr(server, "send", None)
    if original is None:  # pragma: no cover - another mitmproxy
        log.warning("mitmproxy's HTTP/1 server is not the one expected: its error pages stay unstamped")
        return False
    if getattr(original, _INSTALLED, False):
        return True

    def send(self, event):
        # A plain function handing on a generator (``_handle_event`` only iterates it): every
        # response's head, data and end pass here, and a generator wrapped around each costs.
        answer = None
        if isinstance(event, ResponseProtocolError) and self.response is None and self.request is not None:
            answer = getattr(self.request, _FAILURE_ANSWER, None)
        if (
            answer is None
            or event.code.http_status_code() is None
            or not self.conn.state & ConnectionState.CAN_WRITE
        ):
            return original(self, event)
        answer.headers["connection"] = "close"  # an HTTP/1 answer to a failure ends the connection
        return (
            commands.SendData(self.conn, http1.assemble_response(answer)),
            commands.CloseConnection(self.conn),
        )

    setattr(send, _INSTALLED, True)
    send.__doc__ = original.__doc__
    server.send = send
    return True


def _install_http2_failure_answers() -> bool:
    try:
        from mitmproxy.proxy.layers.http import (
            HttpStream,
            ResponseData,
            ResponseEndOfMessage,
            ResponseHeaders,
            ResponseProtocolError,
            SendHttp,
        )
    except ImportError:  # pragma: no cover - another mitmproxy layout
        return False
    original = getattr(HttpStream, "handle_protocol_error", None)
    if original is None:  # pragma: no cover - another mitmproxy
        return False
    if getattr(original, _INSTALLED, False):
        return True

    def answered(stream, command) -> tuple | None:
        """The cache's answer, as the stream's events for its HTTP/2 client, in place of ``command``
        (mitmproxy's error page for that client); None to let ``command`` go."""
        if not (
            isinstance(command, SendHttp)
            and isinstance(command.event, ResponseProtocolError)
            and command.connection is stream.context.client
            and command.connection.alpn == b"h2"
            and command.event.code.http_status_code() is not None
        ):
            return None
        answer = getattr(stream.flow.request, _FAILURE_ANSWER, None)
        response = stream.flow.response
        if answer is None or (response is not None and response.stream):  # its head went out
            return None
        client, stream_id = command.connection, command.event.stream_id
        return (
            SendHttp(ResponseHeaders(stream_id, answer), client),
            SendHttp(ResponseData(stream_id, answer.content or b""), client),
            SendHttp(ResponseEndOfMessage(stream_id), client),
        )

    def handle_protocol_error(self, event):
        # Runs only when a flow fails: a generator around the original's, passing every command and
        # its reply through but the error page for an HTTP/2 client.
        steps = original(self, event)
        reply = None
        while True:
            try:
                command = steps.send(reply)
            except StopIteration as done:
                return done.value
            instead = answered(self, command)
            if instead is None:
                reply = yield command
            else:
                yield from instead
                reply = None

    setattr(handle_protocol_error, _INSTALLED, True)
    handle_protocol_error.__doc__ = original.__doc__
    HttpStream.handle_protocol_error = handle_protocol_error
    return True


# -- closing a hung upstream --------------------------------------------------------------------------


def abort_upstream(flow: http.HTTPFlow) -> bool:
    """Close ``flow``'s server connection; True when it was closed."""
    proxyserver = ctx.master.addons.get("proxyserver")
    handler = getattr(proxyserver, "connections", {}).get(flow.client_conn.id)
    server = flow.server_conn
    if handler is None or server not in getattr(handler, "transports", {}):
        return False
    close = getattr(handler, "close_connection", None)
    if close is None:  # pragma: no cover - another mitmproxy
        log.warning("mitmproxy's connection handler has no close_connection: cannot abort %s", flow.id)
        return False
    close(server)
    return True


def upstream_reset(flow: http.HTTPFlow) -> bool:
    """Whether ``flow``'s server connection ended with an error (a TCP reset) rather than a clean
    close. mitmproxy's connection handler (``proxy/server.py``, ``handle_connection``) ends a
    close-delimited body the same way for both; the stream reader still holds the error while the
    end of the body is being processed. False when it cannot tell."""
    proxyserver = ctx.master.addons.get("proxyserver")
    handler = getattr(proxyserver, "connections", {}).get(flow.client_conn.id)
    io = getattr(handler, "transports", {}).get(flow.server_conn)
    reader = getattr(io, "reader", None)
    return reader is not None and reader.exception() is not None


def last_activity(flow: http.HTTPFlow) -> float | None:
    """When ``flow``'s client connection last saw data either way (epoch seconds), from the proxy
    server's connection handler (``proxy/server.py``: ``server_event`` registers every event with
    the handler's ``TimeoutWatchdog``); None when it cannot tell. mitmproxy's addon API says
    nothing while a response body is being read, and this is how a stalled upstream shows."""
    proxyserver = ctx.master.addons.get("proxyserver")
    handler = getattr(proxyserver, "connections", {}).get(flow.client_conn.id)
    watchdog = getattr(handler, "timeout_watchdog", None)
    return getattr(watchdog, "last_activity", None)
