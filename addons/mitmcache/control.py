"""The control plane: purge, refresh, clear and statistics, shared by three front ends.

* The ``Clear-Cache`` header of reverse-proxy-rust: a request to any path carrying ``Clear-Cache`` and
  ``Clear-Cache-Key`` refreshes that URL's variants a client asked for within the refresh window
  and drops the others (``clear_cache_header``).
* The admin API under the reserved prefix (``/__cache`` by default): ``health`` (no key),
  ``stats``, ``entries``, ``metrics``, ``purge``, ``refresh``, ``clear`` (``handle``).
* mitmproxy commands (``cache.stats``, ``cache.purge``, ...) for the console and mitmweb.

All three call the same coroutines (``purge``, ``refresh``, ``clear``, ``entries``, ``stats``).
Control requests are answered by the proxy and never forwarded; everything but ``health`` needs
the ``CLEAR_CACHE_KEY`` (``Authorization: Bearer`` or ``Clear-Cache-Key``), compared in constant
time and never logged: its header is even redacted on the flow, so ``-w`` dumps and mitmweb's
request view do not carry it.

What a purge or refresh names: a path (``/api/items?page=2``) matches that URL under every host
the cache holds it for (a reverse proxy has one upstream, but ``keep_host_header`` keys by the
client's Host); a full URL (``http://127.0.0.1:8000/api/items``, as ``entries`` lists keys)
matches under that host only. Query parameters are sorted the way cache keys are.
"""

import asyncio
import base64
import binascii
import hmac
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from mitmproxy import command, exceptions, http
from mitmproxy import flow as mflow

from . import responses, summary
from .coalesce import HitForMiss, Inflight
from .config import Settings
from .entry import Entry
from .metrics import CacheCollector, Stats, exposition, registry_for, snapshot
from .policy.freshness import current_age
from .policy.key import primary_key
from .policy.numbers import capped
from .refresh import Refresher, refreshable_in_background
from .store.base import Store

log = logging.getLogger("mitmcache")

SERVICE = "mitmcache"
REDACTED = "[redacted]"
MARKER = ":gear:"
DEFAULT_PAGE = 100
MAX_PAGE = 1000

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


class CacheState(Protocol):
    """What the control plane uses of the Cache addon."""

    settings: Settings
    store: Store
    refresher: Refresher
    inflight: Inflight
    hit_for_miss: HitForMiss
    counts: Counter[str]


class Mount(Protocol):
    """Endpoints of another part of the proxy under ``{prefix}/{name}/...``, behind the admin key
    (the write queue's ``queue``); its state shows in ``health``."""

    async def handle(self, flow: http.HTTPFlow, rest: str, answer: Callable[..., None]) -> None: ...

    def health(self) -> dict[str, Any]: ...

    def index(self) -> dict[str, str]:
        """Its endpoints (path under the prefix -> methods), for the admin index."""
        ...


class BadRequest(ValueError):
    """A control request that cannot be carried out as asked (answered 400)."""


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
    """Replace the key on the flow: it is never forwarded, but flows are shown and saved. Any
    ``Authorization`` of a control request is redacted, whatever its scheme (``Basic`` hides the
    key only in base64)."""
    if "clear-cache-key" in request.headers:
        request.headers["clear-cache-key"] = REDACTED
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, space, _ = authorization.strip().partition(" ")
        request.headers["authorization"] = f"{scheme} {REDACTED}" if space else REDACTED


# -- what a purge or refresh names -------------------------------------------------------------


def split_key(key: str) -> tuple[str, str]:
    """``http://host:80/a?x=1`` -> (``http://host:80``, ``/a?x=1``)."""
    start = key.find("://")
    slash = key.find("/", start + 3 if start >= 0 else 0)
    return (key, "/") if slash < 0 else (key[:slash], key[slash:])


@dataclass(frozen=True, slots=True)
class Target:
    """One URL with all its variants, or every URL starting with a prefix."""

    value: str  # a path (matched under every host) or a key / key prefix
    prefix: bool

    @property
    def any_host(self) -> bool:
        return self.value.startswith("/")

    @classmethod
    def parse(cls, raw: str, *, prefix: bool) -> "Target":
        raw = raw.strip()
        if raw.startswith("/"):
            return cls(raw if prefix else split_key(primary_key("", "", raw))[1], prefix)
        parts = urlsplit(raw)
        if parts.scheme in ("http", "https") and parts.netloc:
            path = raw[len(parts.scheme) + 3 + len(parts.netloc) :] or "/"
            if prefix:
                return cls(f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}", True)
            return cls(primary_key(parts.scheme, parts.netloc, path.partition("#")[0]), False)
        raise BadRequest(
            f"expected a path such as /api/items or a URL such as http://host/api/items, got {raw!r}"
        )

    def matches(self, key: str) -> bool:
        subject = split_key(key)[1] if self.any_host else key
        return subject.startswith(self.value) if self.prefix else subject == self.value

    def describe(self) -> dict[str, str]:
        return {"prefix" if self.prefix else "url": self.value}


type Position = tuple[str, tuple[tuple[str, bool, str], ...]]


def _position(key: str, vary: Sequence[Sequence[str | None]]) -> Position:
    """Where an entry sorts in ``entries``: by key, then by its Vary values, an absent field
    (None) before any present one -- None and a string cannot be compared."""
    return key, tuple(
        (str(name), value is not None, "" if value is None else str(value)) for name, value in vary
    )


def _cursor(entry: Entry) -> str:
    raw = json.dumps([entry.key, [list(pair) for pair in entry.vary]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> Position:
    try:
        key, vary = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return _position(str(key), [(name, value) for name, value in vary])
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest(f"invalid cursor {cursor!r}") from None


def _count(params: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):  # "²".isdigit() is true, and int() refuses it
        raise BadRequest(f"{name} must be a whole number >= 0, got {raw!r}")
    return capped(raw, maximum if maximum is not None else sys.maxsize)


def _target(params: Mapping[str, str]) -> Target:
    url, prefix = params.get("url"), params.get("prefix")
    if bool(url) == bool(prefix):
        raise BadRequest('give either "url" (one URL, every variant) or "prefix" (every URL under it)')
    return Target.parse(url or prefix or "", prefix=bool(prefix))


class Control:
    def __init__(self, cache: CacheState, key: Callable[[http.Request], str]) -> None:
        self._cache = cache
        self._key = key  # the cache key of a request (addon.cache_key)
        self._started = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._mounts: dict[str, Mount] = {}
        self.registry = registry_for(CacheCollector(self.read_stats))
        self._endpoints: dict[str, Callable[[http.HTTPFlow, str], Coroutine[Any, Any, None]]] = {
            "health": self._endpoint_health,
            "stats": self._endpoint_stats,
            "entries": self._endpoint_entries,
            "metrics": self._endpoint_metrics,
            "purge": self._endpoint_purge,
            "refresh": self._endpoint_refresh,
            "clear": self._endpoint_clear,
        }

    def mount(self, name: str, endpoints: Mount) -> None:
        self._mounts[name] = endpoints

    # -- the core, shared by the endpoints and the commands -------------------------------------

    def read_stats(self) -> Stats:
        cache = self._cache
        return snapshot(
            cache.counts,
            cache.store.usage(),
            max_bytes=cache.settings.max_bytes,
            max_entries=cache.settings.max_entries,
            inflight=len(cache.inflight),
            started=self._started,
        )

    def stats(self) -> dict[str, Any]:
        return {
            "service": SERVICE,
            "name": self._cache.settings.name,
            **self.read_stats().as_json(),
            "counts": dict(sorted(self._cache.counts.items())),
        }

    async def entries(
        self, target: Target | None = None, limit: int = DEFAULT_PAGE, offset: int = 0, cursor: str = ""
    ) -> dict[str, Any]:
        """Stored entries ordered by key then variant; page with ``cursor`` (stable while entries
        come and go) or ``offset``."""
        store, inflight, now = self._cache.store, self._cache.inflight, time.time()
        keys = await store.keys() if target is None else await self._keys(target)
        found = [e for k in keys for e in await store.peek(k)]
        found.sort(key=lambda e: _position(e.key, e.vary))
        total = len(found)
        if cursor:
            after = _after(cursor)
            found = [e for e in found if _position(e.key, e.vary) > after]
        page = found[offset : offset + limit]
        rows = []
        for e in page:
            age = current_age(e.initial_age, e.response_time, now)
            ttl = e.lifetime - age
            rows.append(
                {
                    "key": e.key,
                    "vary": dict(e.vary),
                    "status": e.status,
                    "state": "fresh" if ttl > 0 else "stale",
                    "size": e.size,
                    "age": int(age),
                    "ttl": int(ttl),
                    "hits": e.hits,
                    "last_access": round(now - e.last_access, 3),  # seconds ago
                    "etag": e.etag,
                    "lifetime_source": e.lifetime_source,
                    "refreshing": inflight.busy(e.key),
                }
            )
        more = offset + limit < len(found)
        return {
            "total": total,
            "count": len(rows),
            "offset": offset,
            "limit": limit,
            "next_cursor": _cursor(page[-1]) if more and page else None,
            "entries": rows,
        }

    async def _keys(self, target: Target) -> list[str]:
        """The stored URLs ``target`` names; one URL of one host is looked up, not searched for."""
        store = self._cache.store
        if not target.prefix and not target.any_host:
            return [target.value] if await store.peek(target.value) else []
        return [k for k in await store.keys() if target.matches(k)]

    async def purge(self, target: Target, by: str = "") -> dict[str, Any]:
        """Drop every variant of the URLs ``target`` names; says how many entries and URLs."""
        store = self._cache.store
        keys = await self._keys(target)
        dropped = 0
        for key in keys:
            dropped += await store.delete(key)
            self._cache.hit_for_miss.forget(key)
        self._cache.counts["purges"] += 1
        self._cache.counts["purged"] += dropped
        log.info("control: purge %s%s: %d entries of %d URLs dropped", target.value, by, dropped, len(keys))
        return {**target.describe(), "purged": dropped, "keys": len(keys)}

    async def clear(self, by: str = "") -> int:
        """Drop everything; returns how many entries were dropped."""
        dropped = await self._cache.store.clear()
        self._cache.counts["purges"] += 1
        self._cache.counts["cleared"] += dropped
        log.info("control: clear%s: %d entries dropped", by, dropped)
        return dropped

    async def refresh(self, target: Target, by: str = "") -> dict[str, Any]:
        """Refresh every stored variant of the URLs ``target`` names, in the background; the stored
        copies keep being served meanwhile, and a failed refresh keeps them."""
        store = self._cache.store
        keys = await self._keys(target)
        variants = cleared = 0
        for key in keys:
            refreshable = []
            for entry in list(await store.peek(key)):
                if refreshable_in_background(entry):
                    refreshable.append(entry)
                else:  # a refresh would replay a client's credentials
                    cleared += await store.discard(entry)
            variants += len(refreshable)
            self._refresh_in_background(key, refreshable)
        log.info(
            "control: refresh %s%s: %d entries of %d URLs (%d dropped: they vary on credentials)",
            target.value,
            by,
            variants,
            len(keys),
            cleared,
        )
        result = "refreshing" if variants else "cleared" if cleared else "not_cached"
        answer = {**target.describe(), "result": result, "refreshing": variants, "keys": len(keys)}
        if cleared:
            answer["cleared"] = cleared
        return answer

    async def clear_cache(self, key: str, by: str = "") -> dict[str, Any]:
        """reverse-proxy-rust's on-demand refresh-or-clear of one URL: each variant a client asked for within
        the refresh window is refreshed in the background (its stale copy served meanwhile), the
        others -- and those that vary on credentials, which no refresh may replay -- are dropped."""
        cache, now = self._cache, time.time()
        window = cache.settings.refresh_window
        variants = list(await cache.store.peek(key))
        hot = [e for e in variants if now - e.last_access <= window and refreshable_in_background(e)]
        hot_ids = {id(e) for e in hot}
        rows = []
        cleared = 0
        for entry in variants:
            if id(entry) in hot_ids:
                result = "refreshing"
            else:
                cleared += await cache.store.discard(entry)
                result = "cleared"
            rows.append(
                {"vary": dict(entry.vary), "result": result, "last_access": round(now - entry.last_access, 3)}
            )
        cache.hit_for_miss.forget(key)
        if hot:
            self._refresh_in_background(key, hot)
        if cleared:
            cache.counts["purges"] += 1
            cache.counts["clear_cache_dropped"] += cleared
        result = "refreshing" if hot else "cleared" if cleared else "not_cached"
        log.info(
            "control: Clear-Cache %s%s: %s (%d refreshing, %d cleared)", key, by, result, len(hot), cleared
        )
        return {
            "key": key,
            "result": result,
            "refreshing": len(hot),
            "cleared": cleared,
            "refresh_window": window,
            "variants": rows,
        }

    def _refresh_in_background(self, key: str, variants: Sequence[Entry]) -> None:
        if not variants:
            return
        self._cache.counts["refresh_control"] += len(variants)
        self._spawn(self._refresh_variants(key, [e.vary for e in variants]))

    async def _refresh_variants(self, key: str, varies: list[tuple[tuple[str, str], ...]]) -> None:
        """One refresh per variant, one after the other: the refresher runs one fetch per key. A
        fetch already under way (a client's, or a refresh that may predate what the caller knows)
        is waited for, then this variant is fetched anew."""
        cache = self._cache
        timeout = cache.settings.upstream_timeout * 2 + 1
        for vary in varies:
            for _ in range(10):
                entry = next((e for e in await cache.store.peek(key) if e.vary == vary), None)
                if entry is None:
                    break  # dropped meanwhile: nothing to refresh
                started = cache.refresher.start(entry)
                outcome = await cache.inflight.wait(key, timeout)
                if started:
                    if outcome is None:
                        log.warning("control: refresh of %s did not finish within %gs", key, timeout)
                    else:
                        log.info(
                            "control: refresh of %s: %s%s",
                            key,
                            outcome.kind.value,
                            f" ({outcome.detail})" if outcome.detail else "",
                        )
                    break

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def done(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- the Clear-Cache header ----------------------------------------------------------------

    async def clear_cache_header(self, flow: http.HTTPFlow, settings: Settings) -> None:
        """Answer a request carrying ``Clear-Cache``; it is never forwarded."""
        request = flow.request
        key = self._key(request)
        if not settings.admin_key:
            self._refuse_disabled(flow, "clear-cache", key)
            return
        if not authorized(request, settings.admin_key):
            self._refuse_unauthorized(flow, "clear-cache", key)
            return
        redact(request)
        result = await self.clear_cache(key, by=self._by(flow))
        detail = f"refreshing={result['refreshing']} cleared={result['cleared']}"
        self._answer(flow, 200, result, "clear-cache", key=key, detail=detail)

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
        self._answer(flow, 200, {"service": SERVICE, "status": "ok", **mounted}, name)

    async def _endpoint_stats(self, flow: http.HTTPFlow, name: str) -> None:
        self._answer(flow, 200, self.stats(), name)

    async def _endpoint_entries(self, flow: http.HTTPFlow, name: str) -> None:
        params = dict(flow.request.query)
        target = Target.parse(params["prefix"], prefix=True) if params.get("prefix") else None
        limit = _count(params, "limit", DEFAULT_PAGE, MAX_PAGE)
        page = await self.entries(target, limit, _count(params, "offset", 0), params.get("cursor", ""))
        self._answer(flow, 200, page, name, detail=f"count={page['count']} total={page['total']}")

    async def _endpoint_metrics(self, flow: http.HTTPFlow, name: str) -> None:
        body, content_type = exposition(self.registry, flow.request.headers.get("accept", ""))
        response = http.Response.make(200, body, {"content-type": content_type, "cache-control": "no-store"})
        self._answer(flow, 200, None, name, response=response)

    async def _endpoint_purge(self, flow: http.HTTPFlow, name: str) -> None:
        result = await self.purge(_target(self._params(flow.request)), by=self._by(flow))
        self._answer(
            flow,
            200,
            result,
            name,
            detail=f"{result.get('url') or result.get('prefix')} purged={result['purged']}",
        )

    async def _endpoint_refresh(self, flow: http.HTTPFlow, name: str) -> None:
        result = await self.refresh(_target(self._params(flow.request)), by=self._by(flow))
        self._answer(flow, 200, result, name, detail=f"refreshing={result['refreshing']}")

    async def _endpoint_clear(self, flow: http.HTTPFlow, name: str) -> None:
        dropped = await self.clear(by=self._by(flow))
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

    # -- commands --------------------------------------------------------------------------------

    def _now[T](self, coro: Coroutine[Any, Any, T]) -> T | None:
        """Run a coroutine from a (synchronous) command: started eagerly, so an in-memory store's
        work is done before the command returns; a networked store's finishes in the background
        (None)."""
        task = asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
        if task.done():
            return task.result()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    @staticmethod
    def _parse(raw: str, *, prefix: bool) -> Target:
        try:
            return Target.parse(raw, prefix=prefix)
        except BadRequest as e:
            raise exceptions.CommandError(str(e)) from None

    @command.command("cache.stats")
    def cmd_stats(self) -> str:
        """The cache's main counters and size on one line (all of them: the admin API's stats)."""
        return summary.stats(self.stats())

    @command.command("cache.entries")
    def cmd_entries(self, prefix: str = "/", limit: int = DEFAULT_PAGE) -> str:
        """Stored entries under a path or URL prefix (key, state, ttl, hits), on one line."""
        return summary.entries(
            self._now(self.entries(self._parse(prefix, prefix=True), min(limit, MAX_PAGE)))
        )

    @command.command("cache.clear")
    def cmd_clear(self) -> int:
        """Drop every cache entry; returns how many were dropped (-1: still running)."""
        dropped = self._now(self.clear(by=" (by command)"))
        return -1 if dropped is None else dropped

    @command.command("cache.purge")
    def cmd_purge(self, url: str) -> int:
        """Drop every variant of one URL (a path such as /api/items, or a full URL); returns how many
        entries were dropped (-1: still running)."""
        result = self._now(self.purge(self._parse(url, prefix=False), by=" (by command)"))
        return -1 if result is None else result["purged"]

    @command.command("cache.purge.prefix")
    def cmd_purge_prefix(self, prefix: str) -> int:
        """Drop every URL under a path prefix (/api/) or URL prefix; returns how many entries were
        dropped (-1: still running)."""
        result = self._now(self.purge(self._parse(prefix, prefix=True), by=" (by command)"))
        return -1 if result is None else result["purged"]

    @command.command("cache.purge.flows")
    def cmd_purge_flows(self, flows: Sequence[mflow.Flow]) -> int:
        """Drop the cache entries (every variant) of the URLs of these flows, e.g. @focus or
        "~u /api"; returns how many entries were dropped (-1: still running)."""
        keys = sorted(
            {
                self._key(f.request)
                for f in flows
                if isinstance(f, http.HTTPFlow) and not f.metadata.get("cache_control")
            }
        )
        total = 0
        for key in keys:
            result = self._now(self.purge(Target(key, prefix=False), by=" (by command)"))
            if result is None:
                return -1
            total += result["purged"]
        return total

    @command.command("cache.refresh")
    def cmd_refresh(self, url: str) -> str:
        """Refresh every variant of one URL (a path or a full URL) in the background."""
        return summary.fields(self._now(self.refresh(self._parse(url, prefix=False), by=" (by command)")))

    @command.command("cache.refresh.prefix")
    def cmd_refresh_prefix(self, prefix: str) -> str:
        """Refresh every stored URL under a path or URL prefix in the background."""
        return summary.fields(self._now(self.refresh(self._parse(prefix, prefix=True), by=" (by command)")))
