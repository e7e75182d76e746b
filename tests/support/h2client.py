"""An HTTP/2 client over TLS for end-to-end tests: httpx offers http/1.1 first by ALPN, and
mitmproxy takes the client's first choice, so the tests that need HTTP/2 speak it with h2 (which
mitmproxy depends on) on a plain socket."""

import socket
import ssl
from pathlib import Path

import h2.connection
import h2.events


def h2_requests(
    port: int, cafile: Path, paths: list[str], method: str = "GET"
) -> list[tuple[int, dict[str, str], bytes]]:
    """``method`` (without a body) for ``paths``, one after the other on one HTTP/2-over-TLS
    connection offering only h2 by ALPN: each answer's status, fields and body."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["h2"])
    results = []
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        for stream_id, path in zip(range(1, 2 * len(paths), 2), paths, strict=True):
            request = [
                (":method", method),
                (":path", path),
                (":scheme", "https"),
                (":authority", f"127.0.0.1:{port}"),
            ]
            conn.send_headers(stream_id, request, end_stream=True)
            sock.sendall(conn.data_to_send())
            headers: dict[str, str] = {}
            body = b""
            ended = False
            while not ended:
                data = sock.recv(65536)
                assert data, "connection closed"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                        headers = {k.decode(): v.decode() for k, v in event.headers}
                    elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                        ended = True
                sock.sendall(conn.data_to_send())
            results.append((int(headers[":status"]), headers, body))
    return results
