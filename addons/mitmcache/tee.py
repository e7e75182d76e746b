"""Keep a copy of a streamed body, but only up to the largest object the cache stores.

mitmproxy calls a callable ``response.stream`` with every chunk on its way to the client and once
more with ``b""`` at the end (``mitmproxy/proxy/layers/http/__init__.py``), so a body of unknown length reaches the client
without being buffered, and is kept for the cache only while it stays small enough.
"""


class BodyTee:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] | None = []
        self._size = 0
        self.complete = False

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            self.complete = True
        elif self._chunks is not None:
            self._size += len(chunk)
            if self._size > self._limit:
                self._chunks = None  # too large to store: stop keeping it, keep streaming
            else:
                self._chunks.append(chunk)
        return chunk

    def body(self) -> bytes | None:
        """The whole body, or None if it was not complete or grew past the limit."""
        if not self.complete or self._chunks is None:
            return None
        return b"".join(self._chunks)
