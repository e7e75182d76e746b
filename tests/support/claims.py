"""Coalescing in one process that remembers the read time each claim was given: what a test needs to
see that a fetch claims counting from when its copy was read (``Coalescer.claim``)."""

from mitmcache.coalesce import Inflight


class ClaimRecorder(Inflight):
    claims_at_once = False  # every claim is awaited, so that it is recorded

    def __init__(self) -> None:
        super().__init__()
        self.read_at: list[float] = []

    async def claim(self, key: str, read_at: float) -> bool:
        self.read_at.append(read_at)
        return True
