"""The admin API under the reserved prefix (``/__cache`` by default) and the ``Clear-Cache`` request
header: HTTP front ends of the control plane (control.py), answered by the proxy, never forwarded.

``health`` needs no key; everything else needs the ``CLEAR_CACHE_KEY`` (``Authorization: Bearer``
or ``Clear-Cache-Key``), compared in constant time and never logged: its header is even redacted
on the flow, so ``-w`` dumps and mitmweb's request view do not carry it.
"""

import hmac
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from mitmproxy import http

from . import responses
from .config import Settings
from .metrics import exposition
from .policy.tags import clear_tags
from .targets import (
    DEFAULT_PAGE,
    MAX_PAGE,
    BadRequest,
    Target,
    count_param,
    flag_param,
    tags_param,
    target_param,
)

if TYPE_CHECKING:
    from .control import Control

log = logging.getLogger("mitmcache")

SERVICE = "mitmcache"
REDACTED = "[redacted]"
MARKER = ":gear:"

# endpoint -> methods it answers; every endpoint but health needs the key
ENDPOINTS: dict[str, tuple[str, ...]] = {
    "health": ("GET", "HEAD"),
    "stats": ("GET", "HEAD"),
    "entries": ("GET", "HEAD"),
    "metrics": ("GET", "HEAD"),
    "purge": ("POST",),
    "refresh": ("POST",),
    "clear": ("POST",),
}
ALIASES = {"clear-cache": "clear"}  # POST /__admin/clear-cache of caching-reverse-proxy (Python)
PUBLIC = frozenset({"health"})


def authorized(request: http.Request, admin_key: str) -> bool:
    """Whether the request carries the admin key (``Authorization: Bearer`` or ``Clear-Cache-Key``)."""
    if not admin_key:
        return False
    offered = request.headers.get("clear-cache-key", "")
    bearer = request.headers.get("authorization", "")
    if bearer[:7].lower() == "bearer ":
        offered = offered or bearer[7:].strip()
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), admin_key.encode())


def redact(request: http.Request) -> None:
    """Replace the key on the flow: it is never forwarded, but flows are shown and saved."""
    if "clear-cache-key" in request.headers:
        request.headers["clear-cache-key"] = REDACTED
    if request.headers.get("authorization", "")[:7].lower() == "bearer ":
        request.headers["authorization"] = "Bearer " + REDACTED


class Mount(Protocol):
    """Endpoints of another part of the proxy under ``{prefix}/{name}/...``, behind the admin key
    (the write queue's ``queue``); its state shows in ``health``."""

    async def handle(self, flow: http.HTTPFlow, rest: str, answer: Callable[..., None]) -> None: ...

    def health(self) -> dict[str, Any]: ...

    def index(self) -> dict[str, str]:
        """Its endpoints (path under the prefix -> methods), for the admin index."""
        ...


class AdminApi:
    def __init__(self, control: "Control") -> None:
        self._control = control
        self._mounts: dict[str, Mount] = {}
        self._endpoints: dict[str, Callable[[http.HTTPFlow, str], Coroutine[Any, Any, None]]] = {
            "health": self._endpoint_health,
            "stats": self._endpoint_stats,
            "entries": self._endpoint_entries,
            "metrics": self._endpoint_metrics,
            "purge": self._endpoint_purge,
            "refresh": self._endpoint_refresh,
            "clear": self._endpoint_clear,
        }

    # -- the Clear-Cache header ----------------------------------------------------------------

    async def clear_cache_header(self, flow: http.HTTPFlow, settings: Settings) -> None:
        """Answer a request carrying ``Clear-Cache``; it is never forwarded."""
        request = flow.request
        key = self._control.key(request)
        if not settings.admin_key:
            self._refuse_disabled(flow, "clear-cache", key)
            return
        if not authorized(request, settings.admin_key):
            self._refuse_unauthorized(flow, "clear-cache", key)
            return
        redact(request)
        result = await self._control.clear_cache(key, by=self._by(flow))
        detail = f"refreshing={result['refreshing']} cleared={result['cleared']}"
        self._answer(flow, 200, result, "clear-cache", key=key, detail=detail)

    async def clear_cache_tag_header(self, flow: http.HTTPFlow, settings: Settings) -> None:
        """Answer a request carrying ``Clear-Cache-Tag`` (the same key as ``Clear-Cache``); it is
        never forwarded."""
        request = flow.request
        if not settings.admin_key:
            self._refuse_disabled(flow, "clear-cache-tag")
            return
        if not authorized(request, settings.admin_key):
            self._refuse_unauthorized(flow, "clear-cache-tag")
            return
        redact(request)
        tags = clear_tags(request.headers.fields)
        if not tags:
            self._answer(
                flow,
                400,
                {"error": "bad request", "detail": "Clear-Cache-Tag names no tag"},
                "clear-cache-tag",
            )
            return
        result = await self._control.tags.clear_cache(tags, by=self._by(flow))
        detail = f"refreshing={result['refreshing']} cleared={result['cleared']}"
        self._answer(flow, 200, result, "clear-cache-tag", detail=detail)

    # -- the admin API ---------------------------------------------------------------------------

    async def handle(self, flow: http.HTTPFlow, settings: Settings) -> None:
        """Answer a request under the admin prefix; it is never forwarded."""
        request = flow.request
        path = request.path.partition("?")[0]
        name = path[len(settings.admin_prefix) :].strip("/")
        endpoint = ALIASES.get(name, name)
        if endpoint == "" and request.method in ("GET", "HEAD"):
            self._answer(flow, 200, self._index(settings), "index")
            return
        head, _, rest = endpoint.partition("/")
        if head in self._mounts:
            if self._admitted(flow, settings, name):
                await self._mounts[head].handle(flow, rest, self._answer)
            return
        if endpoint not in ENDPOINTS:
            self._answer(
                flow,
                404,
                {"error": "no such endpoint", "endpoint": name, "endpoints": sorted(ENDPOINTS)},
                name,
            )
            return
        methods = ENDPOINTS[endpoint]
        if request.method not in methods:
            self._answer(
                flow,
                405,
                {"error": "method not allowed", "endpoint": name, "allowed": list(methods)},
                name,
                headers={"allow": ", ".join(methods)},
            )
            return
        if endpoint not in PUBLIC and not self._admitted(flow, settings, name):
            return
        redact(request)
        try:
            await self._endpoints[endpoint](flow, name)
        except BadRequest as e:
            self._answer(flow, 400, {"error": "bad request", "detail": str(e)}, name)

    def mount(self, name: str, endpoints: Mount) -> None:
        self._mounts[name] = endpoints

    def _admitted(self, flow: http.HTTPFlow, settings: Settings, name: str) -> bool:
        """Whether the request carries the admin key; if not, it is answered (403 or 401)."""
        if not settings.admin_key:
            self._refuse_disabled(flow, name)
            return False
        if not authorized(flow.request, settings.admin_key):
            self._refuse_unauthorized(flow, name)
            return False
        redact(flow.request)
        return True

    async def _endpoint_health(self, flow: http.HTTPFlow, name: str) -> None:
        mounted = {mount_name: mount.health() for mount_name, mount in self._mounts.items()}
        self._answer(flow, 200, {**self._control.health(), **mounted}, name)

    async def _endpoint_stats(self, flow: http.HTTPFlow, name: str) -> None:
        self._answer(flow, 200, await self._control.stats(), name)

    async def _endpoint_entries(self, flow: http.HTTPFlow, name: str) -> None:
        params = dict(flow.request.query)
        target = Target.parse(params["prefix"], prefix=True) if params.get("prefix") else None
        limit = count_param(params, "limit", DEFAULT_PAGE, MAX_PAGE)
        page = await self._control.entries(
            target, limit, count_param(params, "offset", 0), params.get("cursor", "")
        )
        self._answer(flow, 200, page, name, detail=f"count={page['count']} total={page['total']}")

    async def _endpoint_metrics(self, flow: http.HTTPFlow, name: str) -> None:
        await self._control.engine.read_usage()
        body, content_type = exposition(self._control.registry, flow.request.headers.get("accept", ""))
        response = http.Response.make(200, body, {"content-type": content_type, "cache-control": "no-store"})
        self._answer(flow, 200, None, name, response=response)

    async def _endpoint_purge(self, flow: http.HTTPFlow, name: str) -> None:
        params = self._params(flow.request)
        tags = tags_param(flow.request.query.get_all("tag"), params)
        if tags:
            soft = flag_param(params, "soft")
            result = await self._control.tags.purge(tags, soft=soft, by=self._by(flow))
            detail = f"tags={','.join(tags)} purged={result['purged']}" + (" soft" if soft else "")
            self._answer(flow, 200, result, name, detail=detail)
            return
        result = await self._control.purge(target_param(self._params(flow.request)), by=self._by(flow))
        self._answer(
            flow,
            200,
            result,
            name,
            detail=f"{result.get('url') or result.get('prefix')} purged={result['purged']}",
        )

    async def _endpoint_refresh(self, flow: http.HTTPFlow, name: str) -> None:
        tags = tags_param(flow.request.query.get_all("tag"), self._params(flow.request))
        if tags:
            result = await self._control.tags.refresh(tags, by=self._by(flow))
            self._answer(
                flow, 200, result, name, detail=f"tags={','.join(tags)} refreshing={result['refreshing']}"
            )
            return
        result = await self._control.refresh(target_param(self._params(flow.request)), by=self._by(flow))
        self._answer(flow, 200, result, name, detail=f"refreshing={result['refreshing']}")

    async def _endpoint_clear(self, flow: http.HTTPFlow, name: str) -> None:
        dropped = await self._control.clear(by=self._by(flow))
        self._answer(
            flow, 200, {"cleared": dropped, "message": "cache cleared"}, name, detail=f"cleared={dropped}"
        )

    def _index(self, settings: Settings) -> dict[str, Any]:
        return {
            "service": SERVICE,
            "endpoints": {
                **{
                    f"{settings.admin_prefix}/{name}": " ".join(methods)
                    + (" (no key)" if name in PUBLIC else "")
                    for name, methods in ENDPOINTS.items()
                },
                **{
                    f"{settings.admin_prefix}/{path}": methods
                    for mount in self._mounts.values()
                    for path, methods in mount.index().items()
                },
            },
        }

    @staticmethod
    def _params(request: http.Request) -> dict[str, str]:
        """Query parameters, overridden by a JSON object or form body. A body starting with ``{``
        is JSON whatever its Content-Type: ``curl -d '{...}'`` labels it as a form."""
        params = {k: v for k, v in request.query.items()}
        body = (request.content or b"").strip()
        if not body:
            return params
        if not body.startswith((b"{", b"[")) and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            params.update(parse_qsl(body.decode("utf-8", "replace")))
            return params
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise BadRequest('the body must be a JSON object such as {"url": "/api/items"}')
        params.update({str(k): str(v) for k, v in payload.items() if v is not None})
        return params

    # -- answering -------------------------------------------------------------------------------

    @staticmethod
    def _by(flow: http.HTTPFlow) -> str:
        peer = flow.client_conn.peername
        return f" (by {peer[0]})" if peer else ""

    def _refuse_disabled(self, flow: http.HTTPFlow, name: str, key: str | None = None) -> None:
        redact(flow.request)
        log.info("control: refused %s%s: no admin key is configured", name, self._by(flow))
        payload = {
            "error": "control plane disabled",
            "detail": "no admin key is configured: set CLEAR_CACHE_KEY in the environment or .env, "
            "or run with --set cache_admin_key=<secret>",
        }
        self._answer(flow, 403, payload, name, key=key, detail="disabled")

    def _refuse_unauthorized(self, flow: http.HTTPFlow, name: str, key: str | None = None) -> None:
        redact(flow.request)
        log.warning("control: refused %s%s: wrong or missing key", name, self._by(flow))
        payload = {
            "error": "unauthorized",
            "detail": "send the admin key as Clear-Cache-Key: <key> or Authorization: Bearer <key>",
        }
        headers = {"www-authenticate": f'Bearer realm="{SERVICE}"'}
        self._answer(flow, 401, payload, name, key=key, detail="unauthorized", headers=headers)

    def _answer(
        self,
        flow: http.HTTPFlow,
        code: int,
        payload: Any,
        name: str,
        *,
        key: str | None = None,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
        response: http.Response | None = None,
    ) -> None:
        """Answer a control request and say so on the flow, as cache decisions are."""
        if response is None:
            response = responses.json_response(code, payload)
        for field, value in (headers or {}).items():
            response.headers[field] = value
        if flow.request.method == "HEAD":
            length = response.headers.get("content-length")
            response.content = b""
            if length is not None:
                response.headers["content-length"] = length
        flow.response = response
        flow.comment = " ".join(["ADMIN", name, str(code), *([detail] if detail else [])])
        flow.marked = MARKER
        flow.metadata["cache_control"] = name
        flow.metadata["cache"] = {
            "status": "ADMIN",
            "key": key,
            "detail": f"{name} {code}" + (f" {detail}" if detail else ""),
            "ttl": None,
            "age": None,
            "stored": False,
        }
        if log.isEnabledFor(logging.DEBUG):
            log.debug("cache %s %s %s", flow.comment, flow.request.method, flow.request.path)
