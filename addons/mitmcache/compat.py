"""Patches of mitmproxy's internals, in one place, each checked against the version it was written for.

mitmproxy 12.2 gives an addon no say over what happens before a request reaches it:

* Its HTTP/1 server (``proxy/layers/http/_http1.py``, ``Http1Server.read_headers``) buffers a
  request head for as long as the client keeps sending it ("FIXME: protect against header size
  DoS") and waits for it for as long as the connection stays open: two unfinished 100 MB heads grew
  the proxy by 200 MB. ``install_request_head_limits`` makes it answer ``431`` to a head larger
  than ``CACHE_MAX_REQUEST_HEAD_BYTES`` and ``408`` to one not complete within
  ``CACHE_REQUEST_HEAD_TIMEOUT_SECS`` (RFC 9110 §15.5.9, RFC 6585 §5), closing the connection.
* Its listeners (``proxy/mode_servers.py``, ``ServerInstance.listen``) call
  ``asyncio.start_server`` with asyncio's default backlog of 100: a burst of 1000 connections
  waited up to 20 s in SYN retries. ``install_listen_backlog`` re-listens each TCP socket with
  ``CACHE_LISTEN_BACKLOG`` (``listen()`` on a listening socket only changes its queue length).

Each ``install_*`` first checks that mitmproxy is the version it was written for
(``SUPPORTED_VERSION``) and has the shape it patches; otherwise it logs one warning saying which
version it found and what is not enforced, and leaves mitmproxy as it is.

The cache's own patches, on the way to and from the upstream and in the production launcher:

* **Interim (1xx) responses.** mitmproxy's HTTP/1 client (``Http1Client.read_headers``) takes the
  first response head it reads as *the* response: a ``102``/``103`` became the flow's response and
  the real one was dropped. ``install_interim_reader`` skips complete 1xx heads other than ``101``;
  the 1xx itself is not forwarded (see docs/conformance.md).
* **Closing a hung upstream** (``abort_upstream``): mitmproxy has no timeout for a response head and
  ``flow.kill()`` does not reach a flow in transit (mitmproxy issue #4711); the proxy server's
  connection handler can close the server connection, and the flow then fails as on any lost one.
* **The production launcher's addon manager** (``DispatchTable``): events dispatched through a
  table of the hooks that exist (see its docstring).
* **Workers on one port** (``install_reuse_port``): the listeners bind with ``SO_REUSEPORT``, which
  ``asyncio.start_server`` supports but mitmproxy does not ask for.
"""

import asyncio
import dataclasses
import inspect
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import addonmanager, ctx, exceptions, flow, hooks, http, master, version
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import http1

from . import responses

log = logging.getLogger("mitmcache")

SUPPORTED_VERSION = "12.2"  # the mitmproxy minor version these patches were written against
_MARKER = "_mitmcache_patched"  # on a patched function: the limits it reads


@dataclass(slots=True)
class HeadLimits:
    """What the patched HTTP/1 reader enforces; the addon updates it when the settings change."""

    max_bytes: int = 64 * 1024
    timeout: float = 30.0


@dataclass(slots=True)
class Backlog:
    size: int = 4096


HEAD_LIMITS = HeadLimits()
BACKLOG = Backlog()


def supported(mitmproxy_version: str | None = None) -> bool:
    """Whether the running mitmproxy (or ``mitmproxy_version``) is the one the patches were written for."""
    found = version.VERSION if mitmproxy_version is None else mitmproxy_version
    return found == SUPPORTED_VERSION or found.startswith(SUPPORTED_VERSION + ".")


def _check(what: str, *attributes: tuple[Any, str]) -> bool:
    """Whether mitmproxy is the version (and has the attributes) a patch was written for; says so
    once in the log when it is not."""
    if not supported():
        log.warning(
            "mitmproxy %s is not the %s.x these patches were written for: %s not enforced",
            version.VERSION,
            SUPPORTED_VERSION,
            what,
        )
        return False
    missing = [name for owner, name in attributes if not hasattr(owner, name)]
    if missing:
        log.warning("mitmproxy %s lacks %s: %s not enforced", version.VERSION, ", ".join(missing), what)
        return False
    return True


_warned = False


def check_version() -> bool:
    """Whether the running mitmproxy is the one the patches were written for; if not, say so once
    (each patch still checks the shape of what it touches and stays out of the way if that changed)."""
    global _warned
    if supported():
        return True
    if not _warned:
        _warned = True
        log.warning(
            "mitmcache patches mitmproxy internals written for mitmproxy %s.x, but this is mitmproxy %s: "
            "see addons/mitmcache/compat.py for what may not work",
            SUPPORTED_VERSION,
            version.VERSION,
        )
    return False


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
    """Make mitmproxy's HTTP/1 server enforce ``HEAD_LIMITS``; True when it does."""
    from mitmproxy.proxy import commands, events
    from mitmproxy.proxy.layers.http import _http1

    server = getattr(_http1, "Http1Server", None)
    if not _check(
        "request head size and timeout limits",
        (_http1, "Http1Server"),
        (server, "read_headers"),
        (server, "_handle_event"),
        (server, "done"),
    ):
        return False
    assert server is not None
    read_headers, handle_event = server.read_headers, server._handle_event
    if installed := getattr(read_headers, _MARKER, None):
        global HEAD_LIMITS  # a hot reload re-imported this module: share the patch's limits
        HEAD_LIMITS = installed
        return True

    def refuse(self, code: int, detail: str):
        peer = self.conn.peername
        log.info("%d to %s: %s", code, f"{peer[0]}:{peer[1]}" if peer else "a client", detail)
        yield commands.SendData(self.conn, refusal(code, detail))
        yield commands.CloseConnection(self.conn)
        self.state = self.done

    def limited_read_headers(self, event):
        limit = HEAD_LIMITS.max_bytes
        if isinstance(event, events.DataReceived) and head_too_large(self.buf, limit):
            yield from refuse(self, 431, f"the request head is larger than {limit} bytes")
            return
        yield from read_headers(self, event)

    def timed_handle_event(self, event):
        """Time the wait for each request head with a wakeup of this layer's own: it starts when the
        connection is ready for a head (accepted, or its previous response sent)."""
        state = self.__dict__
        if isinstance(event, events.Wakeup) and event.command is state.get("_mitmcache_wakeup"):
            state["_mitmcache_wakeup"] = None
            since = state.get("_mitmcache_head_since")
            if self.state != self.read_headers or since is None:
                return
            remaining = since + HEAD_LIMITS.timeout - time.monotonic()
            if remaining > 0:
                state["_mitmcache_wakeup"] = wakeup = commands.RequestWakeup(remaining)
                yield wakeup
            elif self.buf:
                yield from refuse(self, 408, f"no complete request head within {HEAD_LIMITS.timeout:g}s")
            else:  # an idle connection: nothing to answer
                yield commands.CloseConnection(self.conn)
                self.state = self.done
            return
        yield from handle_event(self, event)
        if self.state != self.read_headers:
            state["_mitmcache_head_since"] = None
        elif state.get("_mitmcache_head_since") is None:
            state["_mitmcache_head_since"] = time.monotonic()
            if state.get("_mitmcache_wakeup") is None:
                state["_mitmcache_wakeup"] = wakeup = commands.RequestWakeup(HEAD_LIMITS.timeout)
                yield wakeup

    for patched, original in ((limited_read_headers, read_headers), (timed_handle_event, handle_event)):
        setattr(patched, _MARKER, HEAD_LIMITS)
        patched.__doc__ = original.__doc__
    server.read_headers = limited_read_headers
    server._handle_event = timed_handle_event
    return True


# -- the listen backlog ------------------------------------------------------------------------------


def install_listen_backlog() -> bool:
    """Make mitmproxy's TCP listeners queue ``BACKLOG.size`` connections; True when they do."""
    from mitmproxy.proxy import mode_servers

    instance = getattr(mode_servers, "AsyncioServerInstance", None)
    if not _check("the listen backlog", (mode_servers, "AsyncioServerInstance"), (instance, "listen")):
        return False
    assert instance is not None
    listen = instance.listen
    if installed := getattr(listen, _MARKER, None):
        global BACKLOG  # a hot reload re-imported this module: share the patch's backlog
        BACKLOG = installed
        return True

    async def listen_with_backlog(self, host, port):
        servers = await listen(self, host, port)
        _relisten_all(servers)
        return servers

    setattr(listen_with_backlog, _MARKER, BACKLOG)
    listen_with_backlog.__doc__ = listen.__doc__
    instance.listen = listen_with_backlog
    return True


def apply_listen_backlog(proxyserver: Any) -> None:
    """Give the listeners already running ``BACKLOG.size``: mitmdump loads ``-s`` scripts in a task
    of their own, which may run after its listeners started."""
    if supported():
        for instance in getattr(proxyserver, "servers", ()):
            _relisten_all(getattr(instance, "_servers", ()))


def _relisten_all(servers: Any) -> None:
    for server in servers:
        for listener in getattr(server, "sockets", ()):  # asyncio's TransportSockets: no listen()
            if listener.type == socket.SOCK_STREAM:
                relisten(listener.fileno(), BACKLOG.size)


def relisten(fileno: int, backlog: int) -> None:
    """``listen(backlog)`` on a listening socket we do not own: it only changes its queue length."""
    sock = socket.socket(fileno=fileno)
    try:
        sock.listen(backlog)
    finally:
        sock.detach()  # the descriptor stays asyncio's


# -- interim (1xx) responses ------------------------------------------------------------------------

# An interim status line: HTTP/1.x 1xx, but not 101 (an upgrade is final for the HTTP exchange).
_INTERIM_STATUS_LINE = re.compile(rb"HTTP/1\.[01] 1(?!01)\d\d[ \r\n]")
_END_OF_HEAD = re.compile(rb"\n\r?\n")  # what h11's ReceiveBuffer takes as the end of a head
_FLAG = "_mitmcache_skips_interim"  # on a function patched below: already installed


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
    if getattr(original, _FLAG, False):
        return True

    def read_headers(self, event):
        data_for_a_request = isinstance(event, events.DataReceived) and self.request is not None
        if data_for_a_request and not skip_interim_heads(self.buf):
            return  # the rest of an interim head is still to come
        yield from original(self, event)

    setattr(read_headers, _FLAG, True)
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
    it makes itself, in ``Http1Server.send`` on a ``ResponseProtocolError``, after the ``error``
    hook ran; the hook cannot replace it (``proxy/layers/http/__init__.py``,
    ``handle_protocol_error``). Wrapped, the answer the hook left on the flow's request (the same
    object the HTTP/1 server parsed: ``answer_failure_with``) is sent instead. HTTP/2 clients still
    get mitmproxy's page (``Http2Connection``). True when installed."""
    check_version()
    try:
        from mitmproxy.net.http import http1
        from mitmproxy.proxy import commands
        from mitmproxy.proxy.layers.http import ResponseProtocolError, _http1
    except ImportError:  # pragma: no cover - another mitmproxy layout
        return False
    server = getattr(_http1, "Http1Server", None)
    original = getattr(server, "send", None)
    if original is None:  # pragma: no cover - another mitmproxy
        log.warning("mitmproxy's HTTP/1 server is not the one expected: its error pages stay unstamped")
        return False
    if getattr(original, _FLAG, False):
        return True

    def send(self, event):
        answer = None
        if isinstance(event, ResponseProtocolError) and self.response is None and self.request is not None:
            answer = getattr(self.request, _FAILURE_ANSWER, None)
        if (
            answer is None
            or event.code.http_status_code() is None
            or not self.conn.state & ConnectionState.CAN_WRITE
        ):
            yield from original(self, event)
            return
        yield commands.SendData(self.conn, http1.assemble_response(answer))
        yield commands.CloseConnection(self.conn)

    setattr(send, _FLAG, True)
    send.__doc__ = original.__doc__
    server.send = send
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
    if getattr(original, _FLAG, False):
        return True

    def state_consume_request_body(self, event):
        if isinstance(event, RequestData) and self.flow.metadata.get(_DISCARD):
            return  # dropped: the response (set at the request's head) does not need it
        yield from original(self, event)

    setattr(state_consume_request_body, _FLAG, True)
    state_consume_request_body.__doc__ = original.__doc__
    HttpStream.state_consume_request_body = state_consume_request_body
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


# -- the production launcher's addon manager ------------------------------------------------------------


_HOOK_FIELDS: dict[type, tuple[str, ...]] = {}


def _hook_args(event: hooks.Hook) -> list[Any]:
    """``event.args()`` without ``dataclasses.fields()`` on every call (a hook class's fields are fixed)."""
    names = _HOOK_FIELDS.get(type(event))
    if names is None:
        names = _HOOK_FIELDS[type(event)] = tuple(f.name for f in dataclasses.fields(event))
    return [getattr(event, name) for name in names]


class DispatchTable(addonmanager.AddonManager):
    """mitmproxy's addon manager, with events dispatched through a table of the hooks that exist.

    mitmproxy's ``trigger_event`` walks the whole chain for every event: for each top-level addon a
    coroutine, a ``safecall`` context manager and a generator over the addon's subtree, whether it has
    a hook for the event or not; and every flow event is followed by an ``update`` event nobody here
    handles. With the lean chain that walk was still about half of a cache hit's CPU (py-spy). Here
    each event name maps to the hook callables found in the chain, grouped by top-level addon, built
    on first use and rebuilt after anything that can change the chain: ``add``/``register``/
    ``remove``, and option changes (``OnDemand`` attaches or detaches its addon in ``configure``).

    Semantics are ``trigger_event``'s: chain order, then each addon's subtree in order; an exception
    is logged as "Addon error" and skips the rest of that top-level addon's hooks for the event;
    ``AddonHalt`` stops the event; ``OptionsError`` propagates. Addons must not change their
    ``addons`` list outside ``configure`` (none of the lean chain's do; ``-s`` scripts are read once).
    Synchronous ``trigger`` (configure, commands) is mitmproxy's own.
    """

    def __init__(self, master: master.Master) -> None:
        super().__init__(master)
        self._table: dict[str, list[list[Callable]]] = {}

    def invalidate(self) -> None:
        self._table = {}

    def register(self, addon: Any) -> Any:
        self.invalidate()
        return super().register(addon)

    def add(self, *addons: Any) -> None:
        super().add(*addons)
        self.invalidate()

    def remove(self, addon: Any) -> None:
        super().remove(addon)
        self.invalidate()

    def _configure_all(self, updated: set[str]) -> None:
        super()._configure_all(updated)
        self.invalidate()

    def _hooks(self, event: hooks.Hook) -> list[list[Callable]]:
        groups = self._table.get(event.name)
        if groups is None:
            groups = []
            for top in self.chain:
                with addonmanager.safecall():  # a hook attribute that is not callable: logged, skipped
                    if funcs := [func for _, func in self._iter_hooks(top, event)]:  # mitmproxy's own walk
                        groups.append(funcs)
            self._table[event.name] = groups
        return groups

    async def trigger_event(self, event: hooks.Hook) -> None:
        groups = self._hooks(event)
        if not groups:
            return
        args = _hook_args(event)
        for funcs in groups:
            try:
                for func in funcs:
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception:
                with addonmanager.safecall():  # logs it exactly as mitmproxy does ("Addon error: ...")
                    raise

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        await self.trigger_event(event)
        if "update" in self._table and not self._table["update"]:
            return  # nobody handles update: skip building the event
        message = _hook_args(event)[0]
        if isinstance(message, flow.Flow):
            await self.trigger_event(hooks.UpdateHook([message]))


# -- workers sharing one port -------------------------------------------------------------------------


def install_reuse_port() -> bool:
    """Make mitmproxy's TCP listeners bind with ``SO_REUSEPORT``, so that the supervisor's workers
    (``workers``) all listen on one port and the kernel spreads connections over them; True when
    they do.

    mitmproxy 12.2's ``AsyncioServerInstance.listen`` (``proxy/mode_servers.py``) calls
    ``asyncio.start_server(handler, host, port)`` for TCP modes and lets it bind; the option has to
    be set before the bind, so TCP-only modes are listened here with ``reuse_port=True`` and
    everything else is left to mitmproxy.
    """
    check_version()
    from mitmproxy.proxy import mode_servers

    instance = getattr(mode_servers, "AsyncioServerInstance", None)
    listen = getattr(instance, "listen", None)
    if instance is None or listen is None or not hasattr(instance, "handle_stream"):
        log.warning("mitmproxy's listeners are not the ones expected: workers cannot share a port")
        return False
    if getattr(listen, _REUSE_FLAG, False):
        return True

    async def listen_reusing_port(self, host: str, port: int):
        if self.mode.transport_protocol != "tcp" or port == 0:
            return await listen(self, host, port)
        return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]

    setattr(listen_reusing_port, _REUSE_FLAG, True)
    listen_reusing_port.__doc__ = listen.__doc__
    instance.listen = listen_reusing_port
    return True


_REUSE_FLAG = "_mitmcache_reuses_port"
