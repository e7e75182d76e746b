"""Every patch of mitmproxy internals, in one place, checked against the mitmproxy they were written for.

The cache is an addon, but four things it needs are not in mitmproxy's addon API (mitmproxy
12.2.3, ``mitmproxy/addonmanager.py``, ``proxy/layers/http/_http1.py``, ``proxy/server.py``):

* **Interim (1xx) responses.** mitmproxy's HTTP/1 client (``Http1Client.read_headers``) takes the
  first response head it reads as *the* response: a ``102 Processing`` or ``103 Early Hints``
  becomes the flow's response, the client waits for a final response that never comes, and the
  real one is dropped as "Unexpected data from server". ``install_interim_reader`` wraps the reader
  so that complete 1xx heads other than ``101 Switching Protocols`` are skipped; the final response
  then flows, and is cached, as usual. The 1xx itself is not forwarded (RFC 9110 §15.2 asks a proxy
  to, which needs mitmproxy itself; see docs/conformance.md).
* **Closing a hung upstream** (``abort_upstream``). mitmproxy has no timeout for a response head,
  and ``flow.kill()`` does not reach a flow in transit (mitmproxy issue #4711). The proxy server's
  connection handler can close a server connection, and the HTTP layer then fails the flow as on
  any lost connection: the ``error`` hook runs and the client gets mitmproxy's ``502``.
* **The production launcher's addon manager** (``DispatchTable``): mitmproxy's, with events
  dispatched through a table of the hooks that exist (see its docstring).
* **Workers on one port** (``install_reuse_port``): the listeners bind with ``SO_REUSEPORT``, which
  ``asyncio.start_server`` supports but mitmproxy does not ask for.

Each patch checks the shape of what it uses and leaves mitmproxy untouched if that differs;
``check_version`` says once, clearly, when the running mitmproxy is not the one they were written
for, so a mitmproxy upgrade shows where to look.
"""

import asyncio
import dataclasses
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

from mitmproxy import addonmanager, ctx, exceptions, flow, hooks, http, master
from mitmproxy.connection import ConnectionState
from mitmproxy.version import VERSION

log = logging.getLogger("mitmcache")

WRITTEN_FOR = "12.2"  # the mitmproxy release line (major.minor) these patches were written against
_warned = False


def version_matches(version: str = VERSION) -> bool:
    return version == WRITTEN_FOR or version.startswith(WRITTEN_FOR + ".")


def check_version(version: str = VERSION) -> bool:
    """Whether the running mitmproxy is the release line the patches were written for; if not, say
    so once (each patch still checks what it touches and stays out of the way if that changed)."""
    global _warned
    if version_matches(version):
        return True
    if not _warned:
        _warned = True
        log.warning(
            "mitmcache patches mitmproxy internals written for mitmproxy %s.x, but this is mitmproxy %s: "
            "interim (1xx) responses, closing hung upstreams and the production launcher's dispatch may "
            "not work (see addons/mitmcache/compat.py)",
            WRITTEN_FOR,
            version,
        )
    return False


# -- interim (1xx) responses ------------------------------------------------------------------------

# An interim status line: HTTP/1.x 1xx, but not 101 (an upgrade is final for the HTTP exchange).
_INTERIM_STATUS_LINE = re.compile(rb"HTTP/1\.[01] 1(?!01)\d\d[ \r\n]")
_END_OF_HEAD = re.compile(rb"\n\r?\n")  # what h11's ReceiveBuffer takes as the end of a head
_MARKER = "_mitmcache_skips_interim"


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
    check_version()
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
    if getattr(original, _MARKER, False):
        return True

    def read_headers(self, event):
        data_for_a_request = isinstance(event, events.DataReceived) and self.request is not None
        if data_for_a_request and not skip_interim_heads(self.buf):
            return  # the rest of an interim head is still to come
        yield from original(self, event)

    setattr(read_headers, _MARKER, True)
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
    if getattr(original, _MARKER, False):
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

    setattr(send, _MARKER, True)
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
    if getattr(original, _MARKER, False):
        return True

    def state_consume_request_body(self, event):
        if isinstance(event, RequestData) and self.flow.metadata.get(_DISCARD):
            return  # dropped: the response (set at the request's head) does not need it
        yield from original(self, event)

    setattr(state_consume_request_body, _MARKER, True)
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
    if getattr(listen, _REUSE_MARKER, False):
        return True

    async def listen_reusing_port(self, host: str, port: int):
        if self.mode.transport_protocol != "tcp" or port == 0:
            return await listen(self, host, port)
        return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]

    setattr(listen_reusing_port, _REUSE_MARKER, True)
    listen_reusing_port.__doc__ = listen.__doc__
    instance.listen = listen_reusing_port
    return True


_REUSE_MARKER = "_mitmcache_reuses_port"
