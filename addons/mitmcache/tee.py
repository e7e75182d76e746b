"""Keep a copy of a streamed body, but only up to the largest object the cache stores.

mitmproxy calls a callable ``response.stream`` with every chunk on its way to the client and once
more with ``b""`` at the end (``mitmproxy/proxy/layers/http/__init__.py``), so a body of unknown
length reaches the client without being buffered, and is kept for the cache only while it stays
small enough. Once it grows past that, ``on_overflow`` is called once: whoever waits for it to be
stored can stop waiting.
"""

from collections.abc import Callable


class BodyTee:
    def __init__(
        self,
        limit: int,
        on_overflow: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._limit = limit
        self._on_overflow = on_overflow
        self._on_end = on_end  # called at the end of the body, while its connection's state is known
        self._chunks: list[bytes] | None = []
        self._size = 0
        self.complete = False

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            self.complete = True
            if self._on_end is not None:
                self._on_end()
        elif self._chunks is not None:
            self._size += len(chunk)
            if self._size > self._limit:
                self._chunks = None  # too large to store: stop keeping it, keep streaming
                if self._on_overflow is not None:
                    self._on_overflow()
            else:
                self._chunks.append(chunk)
        return chunk

    @property
    def keeping(self) -> bool:
        """Whether the copy is still kept (the body may yet be stored)."""
        return self._chunks is not None

    def body(self) -> bytes | None:
        """The whole body, or None if it was not complete or grew past the limit."""
        if not self.complete or self._chunks is None:
            return None
        return b"".join(self._chunks)
