"""The mitmproxy addon: options, and the hooks that translate flows to and from the cache engine.

A GET or HEAD is looked up (``Engine.lookup``) and answered as the engine says: from a stored
response, with the cache's own error, by relaying an upstream answer, or by letting the flow go
upstream (``Forwarding``), whose response is then stored and wakes whoever waited for it. Other
methods pass by, and their responses invalidate what they changed. The control plane (admin API,
``Clear-Cache``, commands) calls the engine too: the hooks hand it its requests, and its commands
are registered in ``load``.
"""

import asyncio
import inspect
import logging
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from mitmproxy import ctx, exceptions, http

from . import answers, config, request_body, responses, startup, workers
from .admin_guard import answered_here
from .annotate import METADATA, annotate
from .coalesce import Kind, Outcome
from .compat import (
    children,
    install_failure_answers,
    install_interim_reader,
    install_request_body_discard,
    set_children,
)
from .control import Control, add_commands
from .core import run_eagerly
from .credentials import FIELDS as ADMIN_CREDENTIAL_FIELDS
from .credentials import drop_admin_credentials
from .engine import Engine
from .forwarding import Forwarding, answer_failure, over
from .listening import Listening
from .log_safety import escaping
from .lookup import Answer, Forward, Refuse, Serve
from .option_secrets import OptionSecrets
from .policy.cache_status import Status, XCache
from .policy.fields import get_first, has_any
from .policy.reuse import NO_DIRECTIVES, request_directives
from .policy.tags import clear_tags, split_withheld
from .policy.validators import ORIGIN_PRECONDITIONS
from .request_key import authority, cache_key, origin_form
from .retention import FlowRetention
from .store.selection import Backend, disk_path

if TYPE_CHECKING:
    from .disk_tier import DiskTier
    from .store_status import Tier

# mitmproxy's options (tlsconfig's) that decide how the cache's own upstream client verifies TLS.
TLS_OPTIONS = {"ssl_insecure", "ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir"}

log = escaping(logging.getLogger("mitmcache"))  # every cache log line: control characters escaped

TIMEOUT_TICK_SECONDS = 0.1  # how often forwarded flows are checked against REQ_TIMEOUT
CLEAR_TAGS = "cache_clear_tags"  # flow metadata: the tags an upstream response's Clear-Cache-Tag named


class Cache:
    def __init__(self) -> None:
        # Derived state starts from the built-in defaults: configure() replaces it, but test
        # contexts call configure with only the options they change.
        self.settings = config.parse_settings({s.option: s.default for s in config.SETTINGS})
        self.engine = Engine(lambda: self.settings)
        self.forwarding = Forwarding(self.engine, lambda: self.settings)
        self.control = Control(self.engine, lambda: self.settings, cache_key)
        self.retention = FlowRetention(lambda: self.settings)
        self.listening = Listening(lambda: self.settings)  # has no flow hooks: called from ours
        # mitmproxy's one child: the flow retention hooks, while there are flows to retain
        # (``running``). The control plane has no hooks: only its commands are registered (``load``).
        set_children(self, [self.retention])
        self._tls_verify: bool | ssl.SSLContext = True
        self._timeouts: asyncio.Task[None] | None = None
        self._defaults: dict[str, config.Default] = {}  # load() fills it; errors name their source
        self.shared: Tier | None = None  # CACHE_STORE=redis://..., disk, sqlite://...
        self._secrets = OptionSecrets()
        self._running = False

    # -- options ---------------------------------------------------------------------------

    @startup.one_line_at_startup
    def load(self, loader) -> None:
        self._defaults = config.resolve_defaults()  # a bad CACHE_ENV_FILE raises ValueError
        add_commands(loader, self.control, self.control.tags)
        for setting in config.SETTINGS:
            default = self._secrets.conceal(setting, self._defaults[setting.option].value)
            loader.add_option(setting.option, str, default, f"{setting.help} (env {setting.env})")
        install_interim_reader()  # mitmproxy would take an upstream's 1xx for its final response
        install_request_body_discard()  # a refused GET body is dropped as it arrives
        install_failure_answers()  # a failed flow's client gets the cache's JSON error, stamped
        self.listening.install()

    @startup.one_line_at_startup
    def configure(self, updated: set[str]) -> None:
        self._configure(updated)
        self.listening.configure(updated)  # the listeners' limits, from the settings just parsed

    def _configure(self, updated: set[str]) -> None:
        if updated & TLS_OPTIONS and "ssl_insecure" in ctx.options:
            self._tls_verify = startup.upstream_tls_verification()
        if not updated & config.BY_OPTION.keys():
            return
        values = {s.option: getattr(ctx.options, s.option) for s in config.SETTINGS}
        values = self._secrets.reveal(values)
        changed = "an option change" if self._running else "--set"
        try:
            settings = config.parse_settings(values, config.value_sources(values, self._defaults, changed))
            workers.check_store(settings.store)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if settings.store != self.settings.store:
            self._use_store(settings)
        elif (
            settings.store.backend is Backend.DISK
            and settings.store_max_bytes != self.settings.store_max_bytes
        ):
            run_eagerly(cast("DiskTier", self.shared).configure(settings))
        self._secrets.conceal_options(ctx.options)
        self.settings = settings
        self.engine.configure(settings)
        log.setLevel(settings.log_level.upper())
        startup.warn_about_options(settings)

    # -- the store ---------------------------------------------------------------

    def _use_store(self, settings: config.Settings) -> None:
        """Where entries are kept is decided at startup: a running proxy keeps its store."""
        if self._running:
            raise exceptions.OptionsError(
                f"cache_store: changes take effect at startup only (now {self.settings.store.shown}); "
                "restart the proxy to use another store"
            )
        if settings.store.backend is Backend.REDIS:
            # Imported when chosen: redis-py would cost every proxy's start ~35 ms it has no use for.
            from .shared_tier import SharedTier

            self.shared = SharedTier(settings.store, lambda: self.settings)
            self.shared.install(self.engine.core)
        elif settings.store.backend is Backend.DISK:
            self.shared = self._open_disk(settings)
            self.shared.install(self.engine.core)
        self.control.shared = self.shared

    @staticmethod
    def _open_disk(settings: config.Settings) -> "DiskTier":
        from .disk_tier import DiskTier, InUse  # imported when chosen, as the shared tier is

        # CACHE_DATA_DIR is the write queue's option too (registered by its addon, loaded with this one)
        path = disk_path(settings.store, config.data_dir(getattr(ctx.options, "cache_data_dir", "")))
        try:
            return DiskTier(settings.store, path, settings)
        except (OSError, sqlite3.Error, InUse) as e:
            raise exceptions.OptionsError(f"cache_store: cannot use the disk store {path}: {e}") from None

    def running(self) -> None:
        self._running = True
        startup.warn_about_unknown_options()
        if self.settings.store.backend is Backend.REDIS:
            log.info("cache store: %s, with an in-process tier in front", self.settings.store.shown)
        if self.shared is not None:
            self.shared.start()
        self.engine.start(self._tls_verify)
        self._timeouts = asyncio.get_running_loop().create_task(self._watch_upstream_timeouts())
        if self.retention in children(self) and ctx.master.addons.get("view") is None:
            # mitmdump and the production launcher keep no flows: nothing to bound, and the
            # retention's hooks would cost every request two more dispatches.
            ctx.master.addons.remove(self.retention)
            set_children(self, [])
        self.listening.running()

    def done(self) -> asyncio.Task[None] | None:
        """Hands mitmproxy the store's closing (it awaits it: a disk store commits what is still
        written behind); a script reload, which calls this synchronously, leaves it to finish."""
        if self._timeouts is not None:
            self._timeouts.cancel()
        self.engine.stop()
        if self.shared is None:
            return None
        try:
            return asyncio.get_running_loop().create_task(self.shared.close())
        except RuntimeError:  # no loop (tests)
            asyncio.run(self.shared.close())
            return None

    async def _watch_upstream_timeouts(self) -> None:
        while True:
            await asyncio.sleep(TIMEOUT_TICK_SECONDS)
            try:
                now = time.time()
                self.forwarding.time_out(now)
                self.engine.sweep(now)
            except Exception:  # housekeeping must survive a bad flow
                log.exception("upstream timeout watch failed")

    # -- hooks -----------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """A plain function that hands mitmproxy a coroutine only when the answer must be awaited:
        a hit on what this process holds is answered here and now (``Engine.lookup_held``)."""
        if flow.response or flow.error:
            return None
        if flow.is_replay == "request":
            self.engine.upstream_fetch()
            return None
        request, settings = flow.request, self.settings
        fields = request.headers.fields
        # The request's field names in one pass: each ``in request.headers`` costs ~2 us on a hit.
        names = {name.lower() for name, _ in fields}
        if (control := self._by_control(flow, names)) is not None:
            return control
        if not names.isdisjoint(ADMIN_CREDENTIAL_FIELDS):
            drop_admin_credentials(request, settings.admin_key)
            fields = request.headers.fields
        method = request.method  # decoded per access: once per request is ~1 us of a hit
        if method not in ("GET", "HEAD") or request.stream:
            # Passed by (varnish MAIN.backend_req): another method, or a GET/HEAD streaming its
            # body upstream (request_body: CACHE_GET_BODY=pass).
            self.engine.upstream_fetch()
            return None
        key = cache_key(request)
        if not names.isdisjoint(ORIGIN_PRECONDITIONS):
            # RFC 9111 §4.3.2: "the If-Match and If-Unmodified-Since conditional header fields are
            # not applicable to a cache": they are for the origin to evaluate.
            self.forwarding.send(flow, key, self.engine.forward(key, "bypass", "origin-precondition"))
            return None
        directives = (
            request_directives(request.headers.get_all("cache-control"), request.headers.get_all("pragma"))
            if b"cache-control" in names or b"pragma" in names
            else NO_DIRECTIVES
        )
        head = method == "HEAD"
        deadline = time.monotonic() + settings.upstream_timeout
        may_lead = method == "GET" and b"range" not in names
        held = self.engine.lookup_held(method, key, fields, may_lead, directives, deadline)
        if held is None:
            held = self.engine.lookup(method, key, fields, may_lead, directives, deadline)
        if inspect.iscoroutine(held):
            return self._answer_when(flow, key, held, names, head)
        self._answer(flow, key, held, names, head)
        return None

    async def _answer_when(
        self, flow: http.HTTPFlow, key: str, answer: Awaitable[Answer], names: set[bytes], head: bool
    ) -> None:
        self._answer(flow, key, await answer, names, head)

    def _by_control(self, flow: http.HTTPFlow, names: set[bytes]) -> Coroutine[Any, Any, None] | None:
        """How the control plane answers its requests (the admin API, ``Clear-Cache``,
        ``Clear-Cache-Tag``) here, to await; None for every other request."""
        settings = self.settings
        path, prefix = flow.request.path, settings.admin_prefix
        if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("", "/", "?"):
            return answered_here(flow, self.control.handle(flow, settings), "admin")
        if b"clear-cache" in names:  # reverse-proxy-rust's refresh-or-clear request
            return answered_here(flow, self.control.clear_cache_header(flow, settings), "clear-cache")
        if b"clear-cache-tag" in names:  # the same by tag (tag_control.py)
            return self.control.clear_cache_tag_header(flow, settings)
        return None

    def _answer(self, flow: http.HTTPFlow, key: str, answer: Answer, names: set[bytes], head: bool) -> None:
        name, counters = self.settings.name, self.engine.counters
        if isinstance(answer, Serve):
            answers.serve(flow, key, answer, name, counters, names, head)
        elif isinstance(answer, Forward):
            try:
                self.forwarding.send(flow, key, answer, names)
            except BaseException:
                if answer.leader:  # nobody else would release the key
                    self.engine.release(key, Outcome(Kind.UNSHAREABLE, detail="internal-error"))
                raise
        elif isinstance(answer, Refuse):
            answers.refuse(flow, key, answer, name, counters)
        else:
            answers.relay(flow, key, answer, name, counters)
            self._withhold(flow, None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Uploads larger than the largest object we store, or chunked, stream upstream: the cache
        never reads a request body, and a large one must not sit in memory."""
        request = flow.request
        if request.data.authority and request.data.http_version.startswith(b"HTTP/1"):
            origin_form(request)
        if request.data.method in (b"GET", b"HEAD"):
            if request_body.carries_body(request.headers.fields):
                request_body.handle(flow, self.settings.get_body, self.settings.name)
                if flow.response is not None:
                    annotate(flow, cache_key(request), request_body.STATUS, self.engine.counters)
            return
        if request.stream:
            return
        length = get_first(request.headers.fields, "content-length")
        if over(length, self.settings.max_object_bytes) or (
            length is None and "chunked" in request.headers.get("transfer-encoding", "").lower()
        ):
            request.stream = True

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or response.stream:
            return
        if METADATA in flow.metadata and not flow.is_replay:
            # The cache's own answer (annotated when made; a forwarded response is annotated in
            # ``response``, after this hook): built from stored fields, nothing in it to withhold.
            return
        sent = self.forwarding.get(flow)
        if sent is not None:
            if flow.request.data.method == b"GET" and response.status_code not in (204, 304):
                self.forwarding.bound(sent, response)
        elif (
            flow.request.method not in ("GET", "HEAD") or flow.metadata.get(request_body.GET_BODY)
        ) and response.status_code not in (204, 304):
            # Nothing of it is stored: only its memory is bounded. Its head goes out now, stamped.
            length = get_first(response.headers.fields, "content-length")
            if length is None or over(length, self.settings.max_object_bytes):
                response.stream = True
                responses.add_status(response, self._bypass_status(flow), self.settings.name)
        self._withhold(flow, sent)

    def _withhold(self, flow: http.HTTPFlow, sent) -> None:
        """What clients never see of an upstream response: its tag fields (unless
        ``CACHE_TAG_FIELDS_KEEP``) and ``Clear-Cache-Tag``, whose tags are cleared before the
        response goes on (``response``). What is stored comes from the upstream's own fields."""
        response = flow.response
        assert response is not None
        fields, withheld = response.headers.fields, self.settings.rules.tags.withheld
        if not has_any(fields, withheld):
            return
        if sent is not None and sent.upstream_fields is None:
            sent.upstream_fields = fields
        tags = clear_tags(fields)
        if tags:
            flow.metadata[CLEAR_TAGS] = list(tags)
        response.headers.fields = tuple(split_withheld(fields, withheld)[0])

    async def _clear_tags_then(self, flow: http.HTTPFlow) -> None:
        """An upstream response named tags in Clear-Cache-Tag (trusted: the upstream is the
        authority on its data): they are cleared before the response reaches its client."""
        tags = flow.metadata.pop(CLEAR_TAGS)
        await self.control.tags.clear_cache(tags, by=" (by upstream response)")
        then = self.response(flow)
        if then is not None:
            await then

    def response(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """What came back from upstream: stored, invalidating, or passing by. A plain function
        that hands mitmproxy a coroutine only when there is work: the hits the cache served
        itself pass through here too, and a coroutine each is measurable on the hit path."""
        if flow.metadata.get("cache_control"):  # answered by the control plane: nothing to store
            return None
        if CLEAR_TAGS in flow.metadata:
            return self._clear_tags_then(flow)
        if flow.request.data.method not in (b"GET", b"HEAD"):
            return self._unsafe(flow)
        sent = self.forwarding.pop(flow)
        if sent is None or flow.response is None:
            if flow.response is not None and flow.metadata.get(request_body.GET_BODY):
                answers.stamp(flow.response, request_body.STATUS, self.settings.name)
                annotate(flow, cache_key(flow.request), request_body.STATUS, self.engine.counters)
            return None  # a hit, or a flow the cache let by
        if flow.request.data.method == b"HEAD":
            return self.forwarding.head(flow, sent)
        return self.forwarding.store(flow, sent)

    def error(self, flow: http.HTTPFlow) -> None:
        sent = self.forwarding.pop(flow)
        if sent is not None:
            self.forwarding.failed(flow, sent)
        answer_failure(flow, sent, self.settings.name)

    async def _unsafe(self, flow: http.HTTPFlow) -> None:
        """RFC 9111 §4.4: a non-error response to an unsafe request (any method not known to be
        safe) invalidates the target URI, and the same-origin Location and Content-Location URIs.
        Responses to safe methods other than GET and HEAD (OPTIONS, TRACE) only pass by."""
        response = flow.response
        if response is None:
            return
        request = flow.request
        dropped = await self.engine.after_unsafe(
            request.method,
            response.status_code,
            request.scheme,
            authority(request),
            request.path,
            response.headers.fields,
        )
        status = self._bypass_status(flow, "invalidated" if dropped else None)
        answers.stamp(response, status, self.settings.name)
        annotate(flow, cache_key(request), status, self.engine.counters)

    @staticmethod
    def _bypass_status(flow: http.HTTPFlow, detail: str | None = None) -> Status:
        code = flow.response.status_code if flow.response else None
        return Status(XCache.BYPASS, fwd="method", fwd_status=code, detail=detail)
