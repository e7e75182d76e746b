"""How many acceptances a commit can expect: the most writes that were on their way at once lately.

Group commit (``store.gather_more``) holds a commit for more acceptances only while it carries
fewer than that: sixteen clients writing together fill one commit (one fsync) after a short wait,
where committing at once would pay a durable commit for every one or two of them; four clients whose
writes are all in the commit already are not kept waiting for writes that cannot come (each waits
for its answer before it sends the next); one client never waits.
"""

WINDOW_SECONDS = 0.25  # "lately": the peak of this window and of the one before
FORGOTTEN_SECONDS = 60.0  # a write on its way this long was lost without a hook saying so


class Arrivals:
    """Writes on their way (routed, not yet accepted or refused), by flow id. Updated on the event
    loop; ``expected`` is a plain int that a store's committing thread may read at any time."""

    def __init__(self) -> None:
        self._on_the_way: dict[str, float] = {}  # flow id -> when it was routed
        self._window_start = 0.0
        self._peak = 0  # the most on their way at once in this window
        self._previous_peak = 0
        self.expected = 0

    def routed(self, flow_id: str, now: float) -> None:
        self._on_the_way[flow_id] = now
        self._update(now)

    def done(self, flow_id: str, now: float) -> None:
        """Accepted, refused, or failed: no longer on its way (a flow it never named is ignored)."""
        if self._on_the_way.pop(flow_id, None) is not None:
            self._update(now)

    def _update(self, now: float) -> None:
        if now - self._window_start >= WINDOW_SECONDS:
            self._on_the_way = {k: t for k, t in self._on_the_way.items() if now - t < FORGOTTEN_SECONDS}
            self._previous_peak = self._peak if now - self._window_start < 2 * WINDOW_SECONDS else 0
            self._window_start, self._peak = now, 0
        self._peak = max(self._peak, len(self._on_the_way))
        self.expected = max(self._peak, self._previous_peak)
