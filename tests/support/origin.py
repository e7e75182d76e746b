#!/usr/bin/env python3
"""A real, programmable HTTP/1.1 origin server for end-to-end tests (stdlib asyncio only).

Why a separate process speaking real HTTP: the proxy under test is a real ``mitmdump`` process, and
the failure modes we must catch (keep-alive reuse, framing, large streamed bodies, 1000 concurrent
connections, an upstream that closes or hangs) only show up on real sockets. Running the origin in
its own process also keeps its event loop from competing with the test's.

Run it as::

    python tests/support/origin.py --port 0 --portfile PATH [--host 127.0.0.1] [--certfile C --keyfile K]

It writes its bound port to PATH (atomically) once it accepts connections. With ``--certfile`` and
``--keyfile`` it speaks HTTPS (HTTP/1.1 over TLS), for tests of a proxy in front of an https:// origin.

Control API, on the same port, under ``/__origin/`` (control requests are never logged):

``POST /__origin/routes``
    JSON object defining (or replacing) one route; the request counter of that route restarts::

        {"path": "/a",                  # matched exactly against the path WITHOUT the query
         "status": 200,
         "headers": [["Cache-Control", "max-age=60"], ["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]],
         "body_b64": "...",             # response body, base64
         "size": N,                     # instead of body: deterministic N-byte pattern body,
                                        #   streamed in 64 KiB chunks (see pattern_chunks)
         "chunked": false,              # true: Transfer-Encoding: chunked, no Content-Length
         "close_delimited": false,      # true: neither, the body ends when the connection closes
         "delay": 0.3,                  # seconds before the response head is sent
         "chunk_delay": 0,              # seconds between 64 KiB body chunks (slow streams)
         "echo": false,                 # true: body = JSON describing the received request
         "fail": null,                  # "close" | "reset" | "hang" | "partial" (see below)
         "sequence": [{...}, ...]}      # per-request overrides, see below

    ``sequence`` items override any of the keys above (except ``path`` and ``sequence``) for the
    1st, 2nd, ... request to the route; once exhausted, the last item repeats.

    ``fail``: ``"close"`` closes the connection without answering, ``"reset"`` aborts it with a TCP RST,
    ``"hang"`` never answers (the connection stays open until the peer goes away), ``"partial"`` sends
    the head and about half of the body, then closes; ``"partial-reset"`` likewise, then aborts it
    with a TCP RST.

    Framing headers (``Content-Length``, ``Transfer-Encoding``) are computed by the origin and may not
    be given in ``headers``. A ``Date`` header is added unless ``headers`` has one.

``POST /__origin/reset``
    Forget all routes and the request log.

``GET /__origin/log``
    JSON list of received (non-control) requests, oldest first: ``method``, ``path`` (with query),
    ``headers`` (list of pairs, as received), ``body_size``, ``body_b64``, ``time`` (epoch seconds),
    ``conn`` (serial number of the TCP connection, to observe keep-alive).

Requests to undefined paths get a 404 with a small text body and no caching headers (and are logged).
Supports keep-alive, ``Connection: close``, HEAD (same head as GET, no body) and request bodies framed
by Content-Length or chunked encoding.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import os
import resource
import signal
import socket
import ssl
import struct
import sys
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

CONTROL_PREFIX = "/__origin/"
CHUNK_SIZE = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
BACKLOG = 4096

# The pattern body: byte i of a generated body is ``i % 251``. 251 is prime, so losing or repeating a
# 64 KiB chunk anywhere in a stream changes the checksum, not only the length.
PATTERN_PERIOD = 251
_PATTERN = bytes(range(PATTERN_PERIOD)) * (CHUNK_SIZE // PATTERN_PERIOD + 2)

ROUTE_KEYS = frozenset(
    {
        "status",
        "headers",
        "body_b64",
        "size",
        "chunked",
        "close_delimited",
        "delay",
        "chunk_delay",
        "echo",
        "fail",
    }
)
FAIL_MODES = frozenset({"close", "reset", "hang", "partial", "partial-reset"})
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})

REASONS = {
    200: "OK",
    201: "Created",
    203: "Non-Authoritative Information",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def pattern_chunks(size: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the deterministic ``size``-byte pattern body in chunks, never holding it whole."""
    offset = 0
    while offset < size:
        n = min(chunk_size, size - offset)
        start = offset % PATTERN_PERIOD
        if n <= len(_PATTERN) - start:
            yield _PATTERN[start : start + n]
        else:  # a caller asked for chunks larger than the precomputed buffer
            yield (_PATTERN[start:] + bytes(range(PATTERN_PERIOD)) * (n // PATTERN_PERIOD + 1))[:n]
        offset += n


def pattern_bytes(size: int) -> bytes:
    """The whole pattern body (for small sizes in tests)."""
    return b"".join(pattern_chunks(size))


class BadRequest(Exception):
    """The client sent something this server cannot parse; answered with 400 and a closed connection."""


class Request:
    """One parsed HTTP/1.1 request."""

    __slots__ = ("body", "headers", "method", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = b""

    @property
    def path(self) -> str:
        """The path without the query; routes are matched on it."""
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def wants_close(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.target,
            "headers": [list(h) for h in self.headers],
            "body_size": len(self.body),
            "body_b64": base64.b64encode(self.body).decode(),
        }


def validate_route(spec: Any) -> dict[str, Any]:
    """Check a route definition; raise ``ValueError``/``TypeError`` with a message meant for the test author."""
    if not isinstance(spec, dict):
        raise TypeError("route must be a JSON object")
    path = spec.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "?" in path:
        raise ValueError("route 'path' must be a string starting with '/' and without a query")
    if path.startswith(CONTROL_PREFIX):
        raise ValueError(f"paths under {CONTROL_PREFIX} are reserved for the control API")
    unknown = set(spec) - ROUTE_KEYS - {"path", "sequence"}
    if unknown:
        raise ValueError(f"unknown route keys: {sorted(unknown)}")
    _validate_fields(spec, "route")
    sequence = spec.get("sequence")
    if sequence is not None:
        if not isinstance(sequence, list) or not sequence:
            raise ValueError("'sequence' must be a non-empty list of objects")
        for i, item in enumerate(sequence):
            if not isinstance(item, dict):
                raise TypeError(f"sequence[{i}] must be an object")
            bad = set(item) - ROUTE_KEYS
            if bad:
                raise ValueError(f"sequence[{i}] has unknown keys: {sorted(bad)}")
            _validate_fields(item, f"sequence[{i}]")
    return spec


def _validate_fields(spec: dict[str, Any], where: str) -> None:
    if "status" in spec and not (isinstance(spec["status"], int) and 100 <= spec["status"] <= 999):
        raise ValueError(f"{where}: 'status' must be an integer 100..999")
    if "headers" in spec:
        headers = spec["headers"]
        if not isinstance(headers, list) or not all(
            isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in headers
        ):
            raise ValueError(f"{where}: 'headers' must be a list of [name, value] string pairs")
        framing = [name for name, _ in headers if name.lower() in FRAMING_HEADERS]
        if framing:
            raise ValueError(f"{where}: framing headers are computed by the origin, do not set {framing}")
    if "body_b64" in spec:
        try:
            base64.b64decode(spec["body_b64"], validate=True)
        except (binascii.Error, TypeError):
            raise ValueError(f"{where}: 'body_b64' is not valid base64") from None
    if spec.get("size") is not None and not (isinstance(spec["size"], int) and spec["size"] >= 0):
        raise ValueError(f"{where}: 'size' must be a non-negative integer or null")
    for key in ("delay", "chunk_delay"):
        if key in spec and not (isinstance(spec[key], int | float) and spec[key] >= 0):
            raise ValueError(f"{where}: {key!r} must be a non-negative number")
    if spec.get("fail") is not None and spec["fail"] not in FAIL_MODES:
        raise ValueError(f"{where}: 'fail' must be one of {sorted(FAIL_MODES)} or null")


class Route:
    """A defined route and how many requests it has answered (to pick the ``sequence`` item)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.hits = 0

    def next_response(self) -> dict[str, Any]:
        """The effective definition for the next request: base fields plus this request's override."""
        base = {k: v for k, v in self.spec.items() if k in ROUTE_KEYS}
        sequence = self.spec.get("sequence")
        if sequence:
            base.update(sequence[min(self.hits, len(sequence) - 1)])
        self.hits += 1
        return base


class OriginServer:
    """The server state (routes, log) and the per-connection protocol handler."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[dict[str, Any]] = []
        self.connections = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_id = self.connections
        self.writers.add(writer)
        try:
            while True:
                try:
                    request = await read_request(reader)
                except BadRequest as exc:
                    await send_simple(writer, 400, str(exc).encode(), close=True)
                    return
                if request is None:
                    return
                if request.path.startswith(CONTROL_PREFIX):
                    keep_open = await self.handle_control(request, writer)
                else:
                    entry = request.describe()
                    entry.update(time=time.time(), conn=conn_id)
                    self.log.append(entry)
                    keep_open = await self.handle_request(request, reader, writer)
                if not keep_open or request.wants_close():
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def handle_control(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        command = request.path[len(CONTROL_PREFIX) :]
        if request.method == "POST" and command == "routes":
            try:
                spec = validate_route(json.loads(request.body or b"null"))
            except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                await send_json(writer, 400, {"error": str(exc)})
                return True
            self.routes[spec["path"]] = Route(spec)
            await send_json(writer, 200, {"ok": True, "path": spec["path"]})
        elif request.method == "POST" and command == "reset":
            self.routes.clear()
            self.log.clear()
            await send_json(writer, 200, {"ok": True})
        elif request.method == "GET" and command == "log":
            await send_json(writer, 200, self.log)
        elif request.method == "GET" and command == "health":
            await send_json(writer, 200, {"ok": True, "routes": len(self.routes), "requests": len(self.log)})
        else:
            await send_json(writer, 404, {"error": f"no control command {request.method} {request.path}"})
        return True

    async def handle_request(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one non-control request; return False when the connection must not be reused."""
        route = self.routes.get(request.path)
        if route is None:
            await send_simple(writer, 404, b"not found\n", head_only=request.method == "HEAD")
            return True
        spec = route.next_response()
        if spec.get("delay"):
            await asyncio.sleep(spec["delay"])
        fail = spec.get("fail")
        if fail == "close":
            return False
        if fail == "reset":
            reset(writer)
            return False
        if fail == "hang":
            await hang_until_closed(reader)
            return False

        status = spec.get("status", 200)
        headers = [tuple(h) for h in spec.get("headers", [])]
        if spec.get("echo"):
            body: bytes | None = json.dumps(request.describe()).encode()
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("Content-Type", "application/json"))
        elif spec.get("size") is not None:
            body = None  # generated
        else:
            body = base64.b64decode(spec.get("body_b64", ""))
        size = len(body) if body is not None else spec["size"]
        chunked = bool(spec.get("chunked"))
        close_delimited = bool(spec.get("close_delimited"))
        no_body_status = status in (204, 304) or 100 <= status < 200

        if not any(k.lower() == "date" for k, _ in headers):
            headers.append(("Date", formatdate(usegmt=True)))
        if not no_body_status:
            if chunked:
                headers.append(("Transfer-Encoding", "chunked"))
            elif close_delimited:
                headers.append(("Connection", "close"))
            else:
                headers.append(("Content-Length", str(size)))
        writer.write(encode_head(status, headers))
        if request.method == "HEAD" or no_body_status:
            await writer.drain()
            return True

        partial = fail in ("partial", "partial-reset")
        limit = size // 2 if partial else size
        chunks = [body] if body is not None else pattern_chunks(size)
        sent = 0
        for chunk in chunks:
            if partial:
                chunk = chunk[: max(0, limit - sent)]
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
                await writer.drain()
            if partial and sent >= limit:
                if fail == "partial-reset":
                    reset(writer)
                return False
            if spec.get("chunk_delay"):
                await asyncio.sleep(spec["chunk_delay"])
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return not close_delimited


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:  # linger on, timeout 0: close() sends RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def hang_until_closed(reader: asyncio.StreamReader) -> None:
    """Never answer: discard input until the peer closes (or the server stops and aborts us).

    Reading is what notices the peer's FIN; the transport alone stays half-open.
    """
    while await reader.read(CHUNK_SIZE):
        pass


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request (head and body); None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("connection closed inside the request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("request head too large") from None
    lines = head[:-4].decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest(f"bad request line {lines[0]!r}") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported version {version!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"bad header line {line!r}")
        headers.append((name, value.strip()))
    request = Request(method, target, version, headers)

    transfer_encoding = (request.header("transfer-encoding") or "").lower()
    if "chunked" in transfer_encoding:
        request.body = await read_chunked(reader)
    elif (length := request.header("content-length")) is not None:
        if not length.isdigit():
            raise BadRequest(f"bad Content-Length {length!r}")
        request.body = await reader.readexactly(int(length))
    return request


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def encode_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    reason = REASONS.get(status, "Unknown")
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_simple(
    writer: asyncio.StreamWriter, status: int, body: bytes, *, close: bool = False, head_only: bool = False
) -> None:
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    if close:
        headers.append(("Connection", "close"))
    writer.write(encode_head(status, headers) + (b"" if head_only else body))
    await writer.drain()


async def send_json(writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    writer.write(encode_head(status, headers) + body)
    await writer.drain()


def raise_fd_limit() -> None:
    """1000 concurrent connections need more descriptors than some defaults (1024) allow."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def write_portfile(path: Path, port: int) -> None:
    """Write atomically, so a poller never reads a half-written number."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)


async def serve(host: str, port: int, portfile: Path | None, tls: ssl.SSLContext | None = None) -> None:
    origin = OriginServer()
    server = await asyncio.start_server(
        origin.handle_connection, host, port, backlog=BACKLOG, limit=MAX_HEAD_BYTES, ssl=tls
    )
    bound = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if portfile is not None:
        write_portfile(portfile, bound)
    print(f"origin listening on {'https' if tls else 'http'}://{host}:{bound}", flush=True)
    await stop.wait()
    server.close()
    for writer in list(origin.writers):  # hanging connections would otherwise keep us alive
        writer.transport.abort()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--portfile", type=Path, help="write the bound port here when ready")
    parser.add_argument("--certfile", type=Path, help="PEM certificate (chain): serve HTTPS")
    parser.add_argument("--keyfile", type=Path, help="PEM private key of --certfile")
    args = parser.parse_args(argv)
    tls = None
    if args.certfile is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.certfile, args.keyfile)
    raise_fd_limit()
    asyncio.run(serve(args.host, args.port, args.portfile, tls))


if __name__ == "__main__":
    sys.exit(main())
