"""Patches of what mitmproxy does with a request before an addon sees it.

* Its HTTP/1 server (``proxy/layers/http/_http1.py``, ``Http1Server.read_headers``) buffers a
  request head for as long as the client keeps sending it ("FIXME: protect against header size
  DoS") and waits for it for as long as the connection stays open: two unfinished 100 MB heads grew
  the proxy by 200 MB. ``install_request_head_limits`` makes it answer ``431`` to a head larger
  than ``CACHE_MAX_REQUEST_HEAD_BYTES`` and ``408`` to one not complete within
  ``CACHE_REQUEST_HEAD_TIMEOUT_SECS`` (RFC 9110 §15.5.9, RFC 6585 §5), closing the connection.
* A refused request body is dropped as it arrives (``install_request_body_discard``).
"""

import time
from dataclasses import dataclass

from mitmproxy import http
from mitmproxy.net.http import http1

from .. import responses
from . import _INSTALLED, _MARKER, _check, check_version, log


@dataclass(slots=True)
class HeadLimits:
    """What the patched HTTP/1 reader enforces; the addon updates it when the settings change."""

    max_bytes: int = 64 * 1024
    timeout: float = 30.0


HEAD_LIMITS = HeadLimits()

# -- request heads -----------------------------------------------------------------------------------


def head_too_large(buffer: bytes | bytearray, limit: int) -> bool:
    """Whether the head at the start of ``buffer`` is (or will be) larger than ``limit`` bytes: no
    blank line ends it within the limit. What follows a complete head (a body) does not count."""
    if len(buffer) <= limit:
        return False
    window = bytes(buffer)[: limit + 4]  # h11's ReceiveBuffer has no slicing
    end = window.find(b"\n\r\n")
    if end < 0:
        end = window.find(b"\n\n")
    return end < 0 or end + 1 > limit


def refusal(code: int, detail: str) -> bytes:
    """A complete HTTP/1 answer that closes the connection: the proxy will not read the rest."""
    reason = {408: "request timeout", 431: "request header fields too large"}[code]
    response = responses.json_response(code, {"error": reason, "detail": detail})
    response.headers["connection"] = "close"
    return http1.assemble_response(response)


def install_request_head_limits() -> bool:
    """Make mitmproxy's HTTP/1 server enforce ``HEAD_LIMITS``; True when it does.

    The wait for each head is timed by a wakeup of the layer's own, armed where the connection
    becomes ready for a head (``start``, and ``mark_done`` once the previous exchange is over) and
    caught in ``_handle_event`` before it reaches a state that does not expect it (a connection's
    first state is the class attribute ``state``, mitmproxy's ``start``). Each patch is a
    plain function handing on the original's generator (mitmproxy only iterates what they return),
    except where a request completes: every event of every request passes through ``_handle_event``
    and ``read_headers``, and a generator wrapped around each was measurable on a cache hit."""
    from mitmproxy.proxy import commands, events
    from mitmproxy.proxy.layers.http import _http1

    server = getattr(_http1, "Http1Server", None)
    if not _check(
        "request head size and timeout limits",
        (_http1, "Http1Server"),
        (server, "read_headers"),
        (server, "_handle_event"),
        (server, "mark_done"),
        (server, "state"),
        (server, "done"),
    ):
        return False
    assert server is not None
    read_headers, handle_event = server.read_headers, server._handle_event
    mark_done, start = server.mark_done, server.state
    if installed := getattr(read_headers, _MARKER, None):
        global HEAD_LIMITS  # a hot reload re-imported this module: share the patch's limits
        HEAD_LIMITS = installed
        return True
    server._mitmcache_wakeup = None  # the wakeup armed for the current head wait, if any
    server._mitmcache_head_since = 0.0  # monotonic: when the connection became ready for a head

    def waiting_for_head(self) -> bool:
        return getattr(self.state, "__func__", None) is limited_read_headers

    def refuse(self, code: int, detail: str):
        peer = self.conn.peername
        log.info("%d to %s: %s", code, f"{peer[0]}:{peer[1]}" if peer else "a client", detail)
        yield commands.SendData(self.conn, refusal(code, detail))
        yield commands.CloseConnection(self.conn)
        self.state = self.done

    def limited_read_headers(self, event):
        limit = HEAD_LIMITS.max_bytes
        if isinstance(event, events.DataReceived) and head_too_large(self.buf, limit):
            return refuse(self, 431, f"the request head is larger than {limit} bytes")
        return read_headers(self, event)

    def arm(self):
        """The connection is (perhaps) ready for a head: the wait starts now."""
        if not waiting_for_head(self):
            return
        self._mitmcache_head_since = time.monotonic()
        if self._mitmcache_wakeup is None:  # else the one pending looks at the new wait when it fires
            self._mitmcache_wakeup = wakeup = commands.RequestWakeup(HEAD_LIMITS.timeout)
            yield wakeup

    def on_wakeup(self):
        self._mitmcache_wakeup = None
        if not waiting_for_head(self):
            return  # the head came; the next wait arms its own
        remaining = self._mitmcache_head_since + HEAD_LIMITS.timeout - time.monotonic()
        if remaining > 0:
            self._mitmcache_wakeup = wakeup = commands.RequestWakeup(remaining)
            yield wakeup
        elif self.buf:
            yield from refuse(self, 408, f"no complete request head within {HEAD_LIMITS.timeout:g}s")
        else:  # an idle connection: nothing to answer
            yield commands.CloseConnection(self.conn)
            self.state = self.done

    def timed_handle_event(self, event):
        if isinstance(event, events.Wakeup) and event.command is self._mitmcache_wakeup:
            return on_wakeup(self)
        return handle_event(self, event)

    def timed_start(self, event):
        yield from start(self, event)
        yield from arm(self)

    def timed_mark_done(self, *, request: bool = False, response: bool = False):
        if not ((request or self.request_done) and (response or self.response_done)):
            return mark_done(self, request=request, response=response)  # the exchange goes on
        return chain_then_arm(self, mark_done(self, request=request, response=response))

    def chain_then_arm(self, done):
        yield from done
        yield from arm(self)

    patches = (
        (limited_read_headers, read_headers, "read_headers"),
        (timed_handle_event, handle_event, "_handle_event"),
        (timed_start, start, "state"),
        (timed_mark_done, mark_done, "mark_done"),
    )
    for patched, original, name in patches:
        setattr(patched, _MARKER, HEAD_LIMITS)
        patched.__doc__ = original.__doc__
        setattr(server, name, patched)
    return True


# -- discarding a refused request's body ----------------------------------------------------------------

_DISCARD = "_mitmcache_discard_request_body"  # flow.metadata: its request body is not kept


def discard_request_body(flow: http.HTTPFlow) -> None:
    """Let mitmproxy drop ``flow``'s request body as it arrives (its response is already set)."""
    flow.metadata[_DISCARD] = True


def install_request_body_discard() -> bool:
    """A response set in the ``requestheaders`` hook is sent once the request body has been read,
    and mitmproxy keeps that body whole meanwhile (``HttpStream.state_consume_request_body``): a
    refused 150 MB GET body would take 150 MB. Wrapped, the body of a flow marked by
    ``discard_request_body`` is read and dropped chunk by chunk; True when installed."""
    check_version()
    try:
        from mitmproxy.proxy.layers.http import HttpStream, RequestData
    except ImportError:  # pragma: no cover - another mitmproxy layout
        return False
    original = getattr(HttpStream, "state_consume_request_body", None)
    if original is None:  # pragma: no cover - another mitmproxy
        log.warning("mitmproxy's HTTP stream is not the one expected: refused request bodies are buffered")
        return False
    if getattr(original, _INSTALLED, False):
        return True

    def state_consume_request_body(self, event):
        # A plain function handing on the original's generator (see limited_read_headers).
        if isinstance(event, RequestData) and self.flow.metadata.get(_DISCARD):
            return ()  # dropped: the response (set at the request's head) does not need it
        return original(self, event)

    setattr(state_consume_request_body, _INSTALLED, True)
    state_consume_request_body.__doc__ = original.__doc__
    HttpStream.state_consume_request_body = state_consume_request_body
    return True
