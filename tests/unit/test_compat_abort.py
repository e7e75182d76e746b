"""Closing a flow's upstream connection through mitmproxy's connection handler."""

from mitmproxy.test import taddons, tflow

from mitmcache.compat import abort_upstream


class Handler:
    """The part of mitmproxy's ConnectionHandler that abort_upstream uses."""

    def __init__(self, *connections) -> None:
        self.transports = {c: object() for c in connections}
        self.closed: list = []

    def close_connection(self, connection) -> None:
        self.closed.append(connection)


class Proxyserver:
    def __init__(self, **handlers: Handler) -> None:
        self.connections = handlers


def test_the_flows_server_connection_is_closed_by_its_client_connections_handler():
    flow = tflow.tflow()
    handler = Handler(flow.server_conn)
    with taddons.context(Proxyserver(**{flow.client_conn.id: handler})):
        assert abort_upstream(flow)
    assert handler.closed == [flow.server_conn]


def test_a_flow_without_a_live_server_connection_is_left_alone():
    flow = tflow.tflow()
    handler = Handler()  # the server connection is not (or no longer) open
    with taddons.context(Proxyserver(**{flow.client_conn.id: handler})):
        assert not abort_upstream(flow)
    assert handler.closed == []


def test_without_mitmproxys_proxy_server_nothing_is_closed():
    with taddons.context():
        assert not abort_upstream(tflow.tflow())
