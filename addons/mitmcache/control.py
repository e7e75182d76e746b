"""The admin API under the reserved prefix (``/__cache`` by default), answered by the proxy itself.

``health`` needs no key, so that load balancers and test harnesses can tell that the addon (and
not the upstream) answered; everything else needs the ``CLEAR_CACHE_KEY``, compared in constant
time and never logged.
"""

import hmac
from collections import Counter
from typing import Any

from mitmproxy import http

from . import responses
from .config import Settings
from .store.base import Store

SERVICE = "mitmcache"


def authorized(request: http.Request, admin_key: str) -> bool:
    """Whether the request carries the admin key (``Authorization: Bearer`` or ``Clear-Cache-Key``)."""
    if not admin_key:
        return False
    offered = request.headers.get("clear-cache-key", "")
    bearer = request.headers.get("authorization", "")
    if bearer[:7].lower() == "bearer ":
        offered = offered or bearer[7:].strip()
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), admin_key.encode())


class Control:
    def __init__(self, store: Store, counts: Counter[str]) -> None:
        self._store = store
        self._counts = counts

    def stats(self) -> dict[str, Any]:
        usage = self._store.usage()
        return {
            "entries": usage.entries,
            "keys": usage.keys,
            "bytes": usage.bytes,
            "evictions": usage.evictions,
            "counts": dict(sorted(self._counts.items())),
        }

    async def handle(self, flow: http.HTTPFlow, settings: Settings) -> None:
        """Answer a request under the admin prefix; it is never forwarded."""
        endpoint = flow.request.path_components[-1] if flow.request.path_components else ""
        path = flow.request.path.partition("?")[0].rstrip("/")
        if path == settings.admin_prefix + "/health":
            flow.response = responses.json_response(200, {"service": SERVICE, "status": "ok"})
            return
        if not settings.admin_key:
            flow.response = responses.json_response(
                403,
                {
                    "error": "control plane disabled",
                    "detail": "set CLEAR_CACHE_KEY (or --set cache_admin_key=...)",
                },
            )
            return
        if not authorized(flow.request, settings.admin_key):
            flow.response = responses.json_response(401, {"error": "unauthorized"})
            return
        if path == settings.admin_prefix + "/stats":
            flow.response = responses.json_response(200, self.stats())
            return
        flow.response = responses.json_response(404, {"error": "no such endpoint", "endpoint": endpoint})
