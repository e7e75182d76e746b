#!/usr/bin/env python3
"""A tiny demo API to put the cache in front of (stdlib only, HTTP/1.1, keep-alive).

Why: ``scripts/run.sh`` with no upstream starts this, so anyone can watch the cache work in one
command without an API of their own. Each route shows one caching behaviour:

    /time           current time as JSON, ``Cache-Control: max-age=5`` (fresh for 5 s, then refreshed)
    /slow           answers after 1 s, no caching headers (the cache's default TTL applies; shows
                    coalescing: concurrent clients wait for one upstream request)
    /items?page=N   a page of items as JSON, no caching headers (the query is part of the key)
    /private        ``Cache-Control: private`` (a shared cache must not store it)
    /gzip           a gzip-encoded JSON body with ``Content-Encoding: gzip`` (stored as raw bytes)
    anything else   404 JSON

Every response carries an ``X-Upstream-Count`` header: how many requests this server has answered,
so a cached reply is recognisable by its stale count.

    python scripts/demo_upstream.py [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import signal
import time
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
PAGE_SIZE = 5
Headers = list[tuple[str, str]]


class Demo:
    """The routes; ``served`` counts answered requests for the X-Upstream-Count header."""

    def __init__(self) -> None:
        self.served = 0

    async def answer(self, method: str, target: str) -> tuple[int, Headers, bytes]:
        url = urlsplit(target)
        if method not in ("GET", "HEAD"):
            return json_response(405, {"error": f"{method} not allowed"}, [("Allow", "GET, HEAD")])
        if url.path == "/time":
            now = time.time()
            return json_response(
                200, {"epoch": now, "iso": formatdate(now, usegmt=True)}, [("Cache-Control", "max-age=5")]
            )
        if url.path == "/slow":
            await asyncio.sleep(1)
            return json_response(200, {"slow": True, "answered_at": time.time()})
        if url.path == "/items":
            page_text = parse_qs(url.query).get("page", ["1"])[0]
            if not page_text.isdigit() or int(page_text) < 1:
                return json_response(400, {"error": "page must be a positive integer"})
            page = int(page_text)
            first = (page - 1) * PAGE_SIZE + 1
            items = [{"id": i, "name": f"item {i}"} for i in range(first, first + PAGE_SIZE)]
            return json_response(200, {"page": page, "items": items})
        if url.path == "/private":
            return json_response(
                200, {"user": "alice", "secret": "not for shared caches"}, [("Cache-Control", "private")]
            )
        if url.path == "/gzip":
            payload = json.dumps({"compressed": True, "text": "hello " * 50}).encode()
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
                ("Vary", "Accept-Encoding"),
                ("Cache-Control", "max-age=30"),
            ]
            return 200, headers, gzip.compress(payload, mtime=0)
        return json_response(404, {"error": "not found", "path": url.path})

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one connection until the client closes or asks to."""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    writer.write(encode(*json_response(400, {"error": "bad request line"}), close=True))
                    await writer.drain()
                    return
                method, target, version = parts
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                if length := headers.get("content-length", "").strip():  # request bodies are ignored
                    await reader.readexactly(int(length) if length.isdigit() else 0)
                close = "close" in headers.get("connection", "").lower() or version == "HTTP/1.0"
                status, response_headers, body = await self.answer(method, target)
                self.served += 1
                response_headers.append(("X-Upstream-Count", str(self.served)))
                writer.write(
                    encode(status, response_headers, b"" if method == "HEAD" else body, close, len(body))
                )
                await writer.drain()
                if close:
                    return
        except ConnectionError:
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def json_response(status: int, payload: object, headers: Headers | None = None) -> tuple[int, Headers, bytes]:
    return status, [("Content-Type", "application/json"), *(headers or [])], json.dumps(payload).encode()


def encode(
    status: int, headers: Headers, body: bytes, close: bool = False, content_length: int | None = None
) -> bytes:
    """Serialise a response; HEAD passes an empty body but the GET body's length."""
    all_headers = [
        *headers,
        ("Date", formatdate(usegmt=True)),
        ("Content-Length", str(len(body) if content_length is None else content_length)),
    ]
    if close:
        all_headers.append(("Connection", "close"))
    head = f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in all_headers) + "\r\n"
    return head.encode("latin-1") + body


async def serve(host: str, port: int) -> None:
    demo = Demo()
    server = await asyncio.start_server(demo.handle, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"demo upstream listening on http://{host}:{bound}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Demo upstream API for the caching proxy.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed when ready)")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
