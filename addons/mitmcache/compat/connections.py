"""Closing the connections mitmproxy closes.

mitmproxy closes a connection on a ``CloseConnection`` command (``proxy/server.py``,
``close_connection``) by cancelling the task that reads it (``handle_connection``), which closes its
socket once the cancellation reaches it at a read. When more data was already read than the layer
consumed (a request head past the limit with more bytes behind it, a malformed request followed by
more, about 128 KiB is enough), the task does not wait at a read: the cancellation reaches it while
it hands the next chunk to the layers, leaves the task there, and the socket is never closed. The
client got its answer (``431``, mitmproxy's ``400``) but the connection stays open, one file
descriptor for as long as the client likes. ``install_connection_close`` closes the socket of a
connection whose reading task ends that way.
"""

import asyncio

from . import _INSTALLED, _check


def install_connection_close() -> bool:
    """Make every connection whose reading task is cancelled close its socket; True when it does."""
    from mitmproxy.proxy import server

    handler = getattr(server, "ConnectionHandler", None)
    if not _check(
        "closing connections with data pending", (server, "ConnectionHandler"), (handler, "handle_connection")
    ):
        return False
    assert handler is not None
    handle_connection = handler.handle_connection
    if getattr(handle_connection, _INSTALLED, False):
        return True

    async def closing_handle_connection(self, connection) -> None:
        try:
            await handle_connection(self, connection)
        except asyncio.CancelledError:
            transport = self.transports.get(connection)
            writer = transport.writer if transport is not None else None
            if writer is not None and not writer.is_closing():
                writer.close()
            raise

    setattr(closing_handle_connection, _INSTALLED, True)
    closing_handle_connection.__doc__ = handle_connection.__doc__
    handler.handle_connection = closing_handle_connection
    return True
