"""Closing a flow's upstream connection from an addon, for an upstream that does not answer.

mitmproxy has no timeout for a response head, and ``flow.kill()`` does not reach a flow in
transit (mitmproxy issue #4711): a flow whose upstream hangs waits as long as the connection
stays open. The proxy server's connection handler can close a server connection, though, and the
HTTP layer then fails the flow as it would on any lost connection: the ``error`` hook runs and the
client gets mitmproxy's ``502``. ``abort_upstream`` reaches that handler through the
``proxyserver`` addon; it checks the shape of what it uses and does nothing (returns False) with a
mitmproxy that differs from the one it was written for (12.2).
"""

import logging

from mitmproxy import ctx, http

log = logging.getLogger("mitmcache")


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
