"""The mitmproxy addon: options, and the hooks that translate flows to and from the cache engine.

A GET or HEAD is looked up (``Engine.lookup``) and answered as the engine says: from a stored
response, with the cache's own error, by relaying an upstream answer, or by letting the flow go
upstream (``Forwarding``), whose response is then stored and wakes whoever waited for it. Other
methods pass by, and their responses invalidate what they changed. The control plane (admin API,
``Clear-Cache``, commands) is a child addon that calls the engine too.
"""

import asyncio
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from mitmproxy import ctx, exceptions, http

from . import answers, config, responses, startup
from .admin_guard import answered_here
from .annotate import annotate
from .compat import install_interim_reader
from .control import Control
from .credentials import FIELDS as ADMIN_CREDENTIAL_FIELDS
from .credentials import drop_admin_credentials
from .engine import Engine
from .forwarding import Forwarding, over
from .listening import Listening
from .log_safety import escaping
from .lookup import Answer, Forward, Refuse, Serve
from .policy.cache_status import Status, XCache
from .policy.fields import get_first
from .policy.reuse import NO_DIRECTIVES, request_directives
from .policy.validators import ORIGIN_PRECONDITIONS
from .request_key import authority, cache_key
from .retention import FlowRetention
from .upstream import tls_verification

# mitmproxy's options (tlsconfig's) that decide how the cache's own upstream client verifies TLS.
TLS_OPTIONS = {"ssl_insecure", "ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir"}

log = escaping(logging.getLogger("mitmcache"))  # every cache log line: control characters escaped

TIMEOUT_TICK_SECONDS = 0.1  # how often forwarded flows are checked against REQ_TIMEOUT


class Cache:
    def __init__(self) -> None:
        # Derived state starts from the built-in defaults: configure() replaces it, but test
        # contexts call configure with only the options they change.
        self.settings = config.parse_settings({s.option: s.default for s in config.SETTINGS})
        self.engine = Engine(lambda: self.settings)
        self.forwarding = Forwarding(self.engine, lambda: self.settings)
        self.control = Control(self.engine, lambda: self.settings, cache_key)
        self.retention = FlowRetention(lambda: self.settings)
        # mitmproxy registers children: the control plane's commands, the flow retention hooks, the
        # listeners' limits.
        self.addons = [self.control, self.retention, Listening(lambda: self.settings)]
        self._tls_verify: bool | ssl.SSLContext = True
        self._timeouts: asyncio.Task[None] | None = None
        self._defaults: dict[str, config.Default] = {}  # load() fills it; errors name their source
        self._running = False

    # -- options ---------------------------------------------------------------------------

    @startup.one_line_at_startup
    def load(self, loader) -> None:
        self._defaults = config.resolve_defaults()  # a bad CACHE_ENV_FILE raises ValueError
        for setting in config.SETTINGS:
            loader.add_option(
                setting.option,
                str,
                self._defaults[setting.option].value,
                f"{setting.help} (env {setting.env})",
            )
        install_interim_reader()  # mitmproxy would take an upstream's 1xx for its final response

    @startup.one_line_at_startup
    def configure(self, updated: set[str]) -> None:
        if updated & TLS_OPTIONS and "ssl_insecure" in ctx.options:
            self._tls_verify = self._upstream_tls_verification()
        if not updated & config.BY_OPTION.keys():
            return
        values = {s.option: getattr(ctx.options, s.option) for s in config.SETTINGS}
        changed = "an option change" if self._running else "--set"
        try:
            settings = config.parse_settings(values, config.value_sources(values, self._defaults, changed))
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        self.settings = settings
        self.engine.configure(settings)
        log.setLevel(settings.log_level.upper())
        self._warn_about_options(settings)

    @staticmethod
    def _warn_about_options(settings: config.Settings) -> None:
        options = ctx.options
        if (
            settings.log_level == "debug"
            and "termlog_verbosity" in options
            and options.termlog_verbosity != "debug"
        ):
            log.warning(
                "cache_log_level is debug, but the terminal log shows debug lines only with "
                "--set termlog_verbosity=debug (mitmweb's event log: its own level filter)"
            )
        if "connection_strategy" in options and options.connection_strategy != "lazy":
            log.warning(
                "connection_strategy is %r: every client connection opens an upstream connection, even for "
                "cache hits, and hits fail while the upstream is down. Run with --set connection_strategy=lazy.",
                options.connection_strategy,
            )

    @staticmethod
    def _upstream_tls_verification() -> bool | ssl.SSLContext:
        """mitmproxy reports an unreadable CA only when a connection fails; the cache's own client
        needs it now, so it stops startup instead, naming the option."""
        options = ctx.options
        try:
            return tls_verification(
                options.ssl_insecure,
                options.ssl_verify_upstream_trusted_ca,
                options.ssl_verify_upstream_trusted_confdir,
            )
        except (OSError, ssl.SSLError) as e:
            raise exceptions.OptionsError(
                "ssl_verify_upstream_trusted_ca/ssl_verify_upstream_trusted_confdir: "
                f"cannot load the upstream's trusted CA: {e}"
            ) from None

    def running(self) -> None:
        self._running = True
        startup.warn_about_unknown_options()
        self.engine.start(self._tls_verify)
        self._timeouts = asyncio.get_running_loop().create_task(self._watch_upstream_timeouts())
        if self.retention in self.addons and ctx.master.addons.get("view") is None:
            # mitmdump and the production launcher keep no flows: nothing to bound, and the
            # retention's hooks would cost every request two more dispatches.
            ctx.master.addons.remove(self.retention)
            self.addons.remove(self.retention)

    def done(self) -> None:
        if self._timeouts is not None:
            self._timeouts.cancel()
        self.engine.stop()

    async def _watch_upstream_timeouts(self) -> None:
        while True:
            await asyncio.sleep(TIMEOUT_TICK_SECONDS)
            try:
                self.forwarding.time_out(time.time())
            except Exception:  # housekeeping must survive a bad flow
                log.exception("upstream timeout watch failed")

    def time_out_forwards(self, now: float) -> None:
        self.forwarding.time_out(now)

    # -- hooks -----------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        if flow.is_replay == "request":
            self.engine.upstream_fetch()
            return
        request = flow.request
        settings = self.settings
        path, prefix = request.path, settings.admin_prefix
        if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("", "/", "?"):
            await answered_here(flow, self.control.handle(flow, settings), "admin")
            return
        # The request's field names in one pass: each ``in request.headers`` costs ~2 us on a hit.
        names = {name.lower() for name, _ in request.headers.fields}
        if b"clear-cache" in names:  # reverse-proxy-rust's refresh-or-clear request
            await answered_here(flow, self.control.clear_cache_header(flow, settings), "clear-cache")
            return
        if not names.isdisjoint(ADMIN_CREDENTIAL_FIELDS):
            drop_admin_credentials(request, settings.admin_key)
        if request.method not in ("GET", "HEAD"):
            self.engine.upstream_fetch()  # passed by (varnish MAIN.backend_req)
            return
        key = cache_key(request)
        if not names.isdisjoint(ORIGIN_PRECONDITIONS):
            # RFC 9111 §4.3.2: "the If-Match and If-Unmodified-Since conditional header fields are
            # not applicable to a cache": they are for the origin to evaluate.
            self.forwarding.send(flow, key, self.engine.forward(key, "bypass", "origin-precondition"))
            return
        directives = (
            request_directives(request.headers.get_all("cache-control"), request.headers.get_all("pragma"))
            if b"cache-control" in names or b"pragma" in names
            else NO_DIRECTIVES
        )
        may_lead = request.method == "GET" and b"range" not in names
        deadline = time.monotonic() + settings.upstream_timeout
        answer = await self.engine.lookup(
            request.method, key, request.headers.fields, may_lead, directives, deadline
        )
        self._answer(flow, key, answer, names)

    def _answer(self, flow: http.HTTPFlow, key: str, answer: Answer, names: set[bytes]) -> None:
        name, counters = self.settings.name, self.engine.counters
        if isinstance(answer, Serve):
            answers.serve(flow, key, answer, name, counters, names)
        elif isinstance(answer, Forward):
            self.forwarding.send(flow, key, answer, names)
        elif isinstance(answer, Refuse):
            answers.refuse(flow, key, answer, name, counters)
        else:
            answers.relay(flow, key, answer, name, counters)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Uploads larger than the largest object we store, or chunked, stream upstream: the cache
        never reads a request body, and a large one must not sit in memory."""
        request = flow.request
        if request.stream or request.method in ("GET", "HEAD"):
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
        sent = self.forwarding.get(flow)
        if sent is not None:
            if flow.request.method == "GET" and response.status_code not in (204, 304):
                self.forwarding.bound(sent, response)
        elif flow.request.method not in ("GET", "HEAD") and response.status_code not in (204, 304):
            # Nothing of it is stored: only its memory is bounded. Its head goes out now, stamped.
            length = get_first(response.headers.fields, "content-length")
            if length is None or over(length, self.settings.max_object_bytes):
                response.stream = True
                responses.add_status(response, self._bypass_status(flow), self.settings.name)

    def response(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """What came back from upstream: stored, invalidating, or passing by. A plain function
        that hands mitmproxy a coroutine only when there is work: the hits the cache served
        itself pass through here too, and a coroutine each is measurable on the hit path."""
        if flow.metadata.get("cache_control"):  # answered by the control plane: nothing to store
            return None
        if flow.request.method not in ("GET", "HEAD"):
            return self._unsafe(flow)
        sent = self.forwarding.pop(flow)
        if sent is None or flow.response is None:
            return None  # a hit, or a flow the cache let by
        if flow.request.method == "HEAD":
            return self.forwarding.head(flow, sent)
        return self.forwarding.store(flow, sent)

    def error(self, flow: http.HTTPFlow) -> None:
        sent = self.forwarding.pop(flow)
        if sent is not None:
            self.forwarding.failed(flow, sent)

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
