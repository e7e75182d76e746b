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
