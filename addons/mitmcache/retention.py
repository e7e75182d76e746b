"""Bound the flows mitmweb (or the mitmproxy console) keeps: the oldest finished ones are dropped.

mitmweb keeps every flow with its bodies (its ``view`` addon, ``mitmproxy/addons/view.py``), which an all-day debugging session in front of a busy API turns into gigabytes. mitmdump
keeps no flows, so this does nothing there.
"""

from collections.abc import Callable

from mitmproxy import ctx, http

from .config import Settings

CHECK_EVERY = 100  # flows between trims: resolving the flow list is O(flows)


class FlowRetention:
    def __init__(self, settings: Callable[[], Settings]) -> None:
        self._settings = settings
        self._seen = 0

    def response(self, flow: http.HTTPFlow) -> None:
        self._count()

    def error(self, flow: http.HTTPFlow) -> None:
        self._count()

    def _count(self) -> None:
        self._seen += 1
        if self._seen % CHECK_EVERY == 0:
            self.trim()

    def trim(self) -> int:
        """Drop the oldest finished flows beyond the limit; returns how many were dropped."""
        limit = self._settings().web_max_flows
        # `"view" in ctx.master.addons` is always False (AddonManager.__contains__ takes an addon,
        # not a name): ask for the addon itself.
        if not limit or ctx.master.addons.get("view") is None:
            return 0
        flows = ctx.master.commands.call("view.flows.resolve", "@all")  # oldest first
        excess = len(flows) - limit
        if excess <= 0:
            return 0
        # Live flows (held, coalescing, streaming) must not be killed.
        doomed = [f for f in flows if not f.live][:excess]
        ctx.master.commands.call("view.flows.remove", doomed)
        return len(doomed)
