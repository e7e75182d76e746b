"""A script for e2e tests (``-s tests/support/broken_control.py``): makes the cache's control plane
fail, so that tests can show what a failing admin or Clear-Cache request does.

It replaces, once the proxy runs, the control plane's ``stats`` and ``clear_cache`` with functions
that raise: any bug in an endpoint looks like this to the addon.
"""

from mitmproxy import ctx


def _fail(*args, **kwargs):
    raise RuntimeError("induced failure of the control plane")


class BreakControl:
    def running(self) -> None:
        cache = ctx.master.addons.get("cache")
        cache.control.stats = _fail
        cache.control.clear_cache = _fail


addons = [BreakControl()]
