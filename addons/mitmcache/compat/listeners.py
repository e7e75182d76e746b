"""Patches of mitmproxy's listeners.

* Its listeners (``proxy/mode_servers.py``, ``ServerInstance.listen``) call
  ``asyncio.start_server`` with asyncio's default backlog of 100: a burst of 1000 connections
  waited up to 20 s in SYN retries. ``install_listen_backlog`` re-listens each TCP socket with
  ``CACHE_LISTEN_BACKLOG`` (``listen()`` on a listening socket only changes its queue length).
* **Workers on one port** (``install_reuse_port``): the listeners bind with ``SO_REUSEPORT``, which
  ``asyncio.start_server`` supports but mitmproxy does not ask for.
"""

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from . import _MARKER, _check, check_version, log, supported


@dataclass(slots=True)
class Backlog:
    size: int = 4096


BACKLOG = Backlog()

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
