"""Driving a hook as mitmproxy does: a hook may be a plain function that hands back a coroutine
only when there is work (``Cache.request``, ``Cache.response``, ``WriteQueue.request``)."""

from collections.abc import Awaitable


async def run_hook(result: Awaitable[None] | None) -> None:
    """Await what a hook returned, if anything (mitmproxy's ``AddonManager.trigger_event``)."""
    if result is not None:
        await result
