"""Control requests are answered by the proxy, whatever fails while answering them.

A control request (the admin API under its prefix, a ``Clear-Cache`` request) is never meant for the
upstream, and it carries the admin key. When its handler raised, mitmproxy logged an "Addon error"
and let the flow go on as any other: upstream, key (redacted) included, and the upstream's answer
could be stored. ``answered_here`` runs the handler and, if it raises or leaves the flow without an
answer, answers ``500`` with a JSON error instead.
"""

import logging
from collections.abc import Awaitable

from mitmproxy import http

from . import responses
from .admin_api import MARKER, redact

log = logging.getLogger("mitmcache")


async def answered_here(flow: http.HTTPFlow, handler: Awaitable[None], name: str) -> None:
    """Await ``handler`` (which answers ``flow``); on any failure answer 500 here."""
    try:
        await handler
    except Exception:
        log.exception("control: %s failed", name)
    else:
        if flow.response is not None:
            return
        log.error("control: %s left the request without an answer", name)
    redact(flow.request)
    flow.response = responses.json_response(
        500,
        {"error": "internal error", "detail": f"the {name} request failed; the proxy's log says why"},
    )
    flow.comment = f"cache ADMIN {name} 500"
    flow.marked = MARKER
    flow.metadata["cache_control"] = name  # the response hook leaves it alone: nothing to store
