"""The write queue's mitmproxy addon: routed writes are answered once they are durable, and
delivered in the background.

It sits after the cache in the chain (``addons/cache.py``, the production launcher): the cache
answers its control requests first, then a routed write is captured here, by hooks that are in the
chain only while routes are set (``FlowHooks``). ``requestheaders`` decides early (a declared body
too large gets 413 without a round trip upstream, and a routed body is read whole instead of
streamed); ``request`` commits it and answers.
"""

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.net.http import status_codes

from .. import config, startup
from ..compat import children, set_children
from ..control import add_commands
from ..policy.fields import get_first
from .admin import NAME, QueueAdmin
from .arrivals import Arrivals
from .delivery import Deliverer
from .engine import CacheInvalidation, EngineDelivery
from .job import capture
from .metrics import QueueCollector, QueueMetrics
from .pacing import RecentRate
from .queue_url import Kind
from .routes import route_for
from .settings import OPTIONS, QueueSettings, parse_queue_settings
from .sqlite_store import SQLiteStore
from .store import KeyReused, QueueFull, QueueStore, StoreUnavailable

log = logging.getLogger("mitmcache")

ROUTED = "writequeue"  # flow.metadata: this request is queued (True) or passed through (False)
RETRY_AFTER_FULL = "5"
RETRY_AFTER_UNAVAILABLE = "1"
STARTUP_WAIT = 30.0  # seconds a write that arrives while the queue opens waits for it
EXTRA_CONNECTIONS = 4  # PostgreSQL connections beyond one per worker: 2 commits, control, renewals


class WriteQueue:
    def __init__(self, cache: Any) -> None:
        self._cache = cache  # mitmcache.addon.Cache: its settings, control plane and store
        self.settings: QueueSettings | None = None
        self.store: QueueStore | None = None
        self.metrics = QueueMetrics()
        self._deliverer: Deliverer | None = None
        self._recent: RecentRate | None = None
        self._started = False
        self._defaults: dict[str, config.Default] = {}  # load() fills it; errors name their source
        self._ready = asyncio.Event()  # running() has opened the store (or found it off, or failed)
        self._client = EngineDelivery(cache)
        self._arrivals = Arrivals()  # writes on their way: what a group commit waits for
        self._invalidation = CacheInvalidation(cache)
        self.admin = QueueAdmin(lambda: self.store, self.metrics, self._refresh_counts, self._status)
        self._flow_hooks = FlowHooks(self)
        set_children(self, [self._flow_hooks])  # while it has routes (``_offer_flow_hooks``)
        cache.control.mount(NAME, self.admin)
        cache.control.registry.register(QueueCollector(self.metrics))

    # -- options -------------------------------------------------------------------------------

    @startup.one_line_at_startup
    def load(self, loader: Any) -> None:
        self._defaults = config.resolve_defaults()
        add_commands(loader, self.admin)
        for setting in config.WRITE_QUEUE_SETTINGS:
            loader.add_option(
                setting.option,
                str,
                self._defaults[setting.option].value,
                f"{setting.help} (env {setting.env})",
            )

    @startup.one_line_at_startup
    def configure(self, updated: set[str]) -> None:
        if not updated & {*OPTIONS, "cache_upstream_timeout"}:
            return
        values = {option: getattr(ctx.options, option) for option in OPTIONS}
        changed = "an option change" if self._started else "--set"
        try:
            settings = parse_queue_settings(
                values,
                self._cache.settings.upstream_timeout,
                Path.cwd(),
                config.value_sources(values, self._defaults, changed),
            )
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if (
            self.store is not None
            and self.settings is not None
            and settings.queue_url != self.settings.queue_url
        ):
            log.warning("write queue: a new ASYNC_QUEUE_URL takes effect at the next start")
            settings = replace(settings, queue_url=self.settings.queue_url)
        elif self._started and self.store is None and settings.enabled and "async_routes" in updated:
            log.warning("write queue: ASYNC_ROUTES set while running: the queue opens at the next start")
        self.settings = settings
        self._offer_flow_hooks(settings.enabled)
        if not self._started and settings.enabled:
            EngineDelivery.reserve(self._cache, settings.workers)  # the engine starts after this
        self._recent = RecentRate(settings.enqueue_rate) if settings.enqueue_rate else None

    def _offer_flow_hooks(self, wanted: bool) -> None:
        """Attach the flow hooks while routes are set, as mitmproxy's script loader attaches scripts
        from ``configure``. Once running they stay: routes set later wait for a restart anyway
        (``configure``), and a write under way must still reach its request hook."""
        attached = self._flow_hooks in children(self)
        if wanted and not attached:
            set_children(self, [self._flow_hooks])
            ctx.master.addons.register(self._flow_hooks)
        elif not wanted and attached and not self._started:
            set_children(self, [])
            ctx.master.addons.remove(self._flow_hooks)

    def running(self) -> asyncio.Task[None]:
        """A plain function handing mitmproxy a task, like ``done``: at startup mitmproxy awaits it
        (so an unreachable queue stops startup), and a script reload, which calls this hook
        synchronously, leaves it to run on its own."""
        self._started = True
        return asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        settings = self.settings
        try:
            if (
                settings is None
                or not settings.enabled
                or (store := await self._open_store(settings)) is None
            ):
                return
            self.store = store
            self._deliverer = Deliverer(
                store, self._client, lambda: self.settings, self.metrics, self._invalidation.invalidate
            )
            self._deliverer.start()
            routes = ", ".join(map(str, settings.routes))
            log.info("write queue: queuing %s in %s", routes, settings.queue_url.redacted)
        finally:
            self._ready.set()

    async def _open_store(self, settings: QueueSettings) -> QueueStore | None:
        """The open store; None after logging the one line that stops startup (mitmproxy's errorcheck
        exits on an error logged while its running hooks run)."""
        url = settings.queue_url
        store: QueueStore
        if url.kind is Kind.POSTGRESQL:
            # Imported when chosen: asyncpg would cost every proxy's start ~12 ms it has no use for.
            from .postgres_store import PostgresStore

            store = PostgresStore(url.url, settings.workers + EXTRA_CONNECTIONS, self._expected)
        else:
            assert url.path is not None
            if url.path.parent == settings.data_dir.resolve():
                try:
                    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    os.chmod(settings.data_dir, 0o700)
                except OSError as e:
                    log.error("cache_data_dir (environment variable CACHE_DATA_DIR): cannot create it: %s", e)
                    return None
            store = SQLiteStore(url.path, self._expected)
        try:
            await store.open()
        except StoreUnavailable as e:
            log.error(
                "async_queue_url (environment variable ASYNC_QUEUE_URL): cannot open the queue %s: %s",
                url.redacted,
                e,
            )
            return None
        return store

    def _expected(self) -> int:
        """Read by a store's committing thread: a plain int, no lock."""
        return self._arrivals.expected

    def done(self) -> asyncio.Task[None]:
        """Graceful stop, as a task (see ``running``): mitmproxy awaits it at shutdown."""
        return asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        if self._deliverer is not None and self.settings is not None:
            deliverer, self._deliverer = self._deliverer, None
            await deliverer.stop(self.settings.shutdown_timeout)
        if self.store is not None:
            store, self.store = self.store, None
            await store.close()

    def _status(self) -> str:
        if self.store is not None:
            return "open"
        enabled = self.settings is not None and self.settings.enabled
        return "starting" if enabled and not self._ready.is_set() else "off"

    async def _refresh_counts(self) -> None:
        if self._deliverer is not None:
            await self._deliverer.refresh_counts()

    # -- flow hooks, called through FlowHooks ---------------------------------------------------

    def on_request_head(self, flow: http.HTTPFlow) -> None:
        settings = self.settings
        request = flow.request
        if settings is None or not settings.enabled or flow.response or request.method in ("GET", "HEAD"):
            return
        if self._ready.is_set() and self.store is None:
            return  # the queue was off (or failed) at startup: routes set later wait for a restart
        path = request.path.partition("?")[0]
        if (
            path.startswith(self._cache.settings.admin_prefix)
            or route_for(settings.routes, request.method, path) is None
        ):
            return  # the control plane's paths are never queued, whatever the routes say
        if self._recent is not None and self._recent.below():
            flow.metadata[ROUTED] = False  # quiet enough: forwarded now, the client gets the real answer
            return
        flow.metadata[ROUTED] = True
        self._arrivals.routed(flow.id, time.monotonic())
        request.stream = False  # read whole: it is kept, not streamed (the cache streams large uploads)
        length = get_first(request.headers.fields, "content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            self._refuse(
                flow,
                413,
                "too_large",
                f"the body is larger than ASYNC_MAX_BODY_BYTES ({settings.max_body_bytes} bytes)",
                {"connection": "close"},
            )

    def on_request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """A plain function that hands mitmproxy a coroutine only for a write to queue: every
        request passes here, the cache's hits too, and a coroutine each is measurable on them."""
        if not flow.metadata.get(ROUTED):
            return None
        if flow.response or flow.error:
            self._arrivals.done(flow.id, time.monotonic())
            return None
        return self._queue_then_done(flow)

    def on_error(self, flow: http.HTTPFlow) -> None:
        """A routed write whose client left before its request hook is no longer on its way."""
        if flow.metadata.get(ROUTED):
            self._arrivals.done(flow.id, time.monotonic())

    async def _queue_then_done(self, flow: http.HTTPFlow) -> None:
        try:
            await self._queue(flow)
        finally:
            self._arrivals.done(flow.id, time.monotonic())

    async def _queue(self, flow: http.HTTPFlow) -> None:
        if not self._ready.is_set():  # mitmproxy listens before its addons' running hooks are done
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), STARTUP_WAIT)
        settings, store = self.settings, self.store
        assert settings is not None
        request = flow.request
        if len(request.raw_content or b"") > settings.max_body_bytes:
            self._refuse(
                flow,
                413,
                "too_large",
                f"the body is larger than ASYNC_MAX_BODY_BYTES ({settings.max_body_bytes} bytes)",
            )
            return
        if store is None:
            self._refuse(
                flow,
                503,
                "unavailable",
                "the write queue is not open",
                {"retry-after": RETRY_AFTER_UNAVAILABLE},
            )
            return
        job = capture(request, self._cache.settings.admin_key)
        try:
            accepted = await store.accept(job, settings.max_queued)
        except QueueFull:
            self._refuse(
                flow,
                503,
                "full",
                f"the queue holds ASYNC_MAX_QUEUED ({settings.max_queued}) writes",
                {"retry-after": RETRY_AFTER_FULL},
            )
            return
        except KeyReused:
            self._refuse(flow, 422, "key_reused", "this Idempotency-Key was used for a different request")
            return
        except StoreUnavailable as e:
            log.warning("write queue: %s %s not accepted: %s", request.method, request.path, e)
            self._refuse(
                flow,
                503,
                "unavailable",
                "the write queue is unavailable",
                {"retry-after": RETRY_AFTER_UNAVAILABLE},
            )
            return
        if not accepted.duplicate:
            self.metrics.counts["accepted"] += 1
            await self._invalidation.invalidate(job.url, job.fields)
        status_url = f"{self._cache.settings.admin_prefix}/{NAME}/{accepted.id}"
        body = json.dumps({"id": accepted.id, "status_url": status_url}).encode()
        response = _response(
            settings.response_status,
            body,
            [
                (b"content-type", b"application/json"),
                (b"location", status_url.encode()),
                (b"x-cache", b"QUEUED"),
                (b"cache-control", b"no-store"),
            ],
        )
        self._answer(
            flow, response, f"QUEUED id={accepted.id}" + (" (repeated)" if accepted.duplicate else "")
        )

    # -- answering -----------------------------------------------------------------------------

    def _refuse(
        self, flow: http.HTTPFlow, code: int, reason: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        self.metrics.counts[f"rejected:{reason}"] += 1
        payload = json.dumps({"error": reason.replace("_", " "), "detail": detail}).encode()
        fields = [(b"content-type", b"application/json")]
        fields += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
        response = _response(code, payload, fields)
        self._answer(flow, response, f"QUEUE {code} {reason}")

    def _answer(self, flow: http.HTTPFlow, response: http.Response, comment: str) -> None:
        flow.response = response
        flow.comment = comment
        flow.marked = ":inbox_tray:"
        # Answered by the proxy itself: the cache's response hook neither stamps nor invalidates it.
        flow.metadata["cache_control"] = NAME
        flow.metadata["cache"] = {
            "status": "QUEUED",
            "key": None,
            "detail": comment,
            "ttl": None,
            "age": None,
            "stored": False,
        }


def _response(code: int, body: bytes, fields: list[tuple[bytes, bytes]]) -> http.Response:
    """Built directly rather than with ``Response.make``, which re-encodes the body and type-checks
    each field: the largest share of this hook's CPU (cProfile of the accept path)."""
    fields.append((b"content-length", str(len(body)).encode()))
    now = time.time()
    reason = status_codes.RESPONSES.get(code, "").encode()
    return http.Response(b"HTTP/1.1", code, reason, http.Headers(fields), body, None, now, now)


class FlowHooks:
    """The write queue's flow hooks, a child of the queue only once it has routes: mitmproxy calls
    every hook an addon has on every request, and without routes these would only return."""

    def __init__(self, queue: WriteQueue) -> None:
        self._queue = queue

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._queue.on_request_head(flow)

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        return self._queue.on_request(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._queue.on_error(flow)
