"""The mitmproxy addon: options, and the hooks that answer from the cache or let flows through.

Flow of a GET through ``request``: look up the URL's variants; a fresh entry is served at once
(HIT), a stale one that may be served is served while a background refresh runs (STALE), one that
must be revalidated waits for a single conditional fetch (REVALIDATED); with no entry, the first
request goes upstream through mitmproxy (MISS, the leader) and concurrent ones wait for its
outcome (COALESCED). ``responseheaders``/``response`` store what the leader brought back and
wake the waiters; ``error`` wakes them too, so nobody is left hanging.
"""

import asyncio
import logging
import ssl
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, exceptions, http

from . import config, interim, responses, startup
from .abort import abort_upstream
from .admin_guard import answered_here
from .annotate import annotate
from .coalesce import HitForMiss, Inflight, Kind, Outcome
from .control import Control
from .credentials import FIELDS as ADMIN_CREDENTIAL_FIELDS
from .credentials import drop_admin_credentials
from .entry import Entry
from .expiry import ExpiryScheduler
from .listening import Listening
from .log_safety import escaping
from .policy.cache_status import Status, XCache
from .policy.dates import parse_http_date
from .policy.fields import Fields, get_all, get_first, has_any
from .policy.freshness import current_age
from .policy.invalidation import invalidated_targets, invalidates
from .policy.key import matches, primary_key
from .policy.ranges import Kind as RangeKind
from .policy.ranges import plan as range_plan
from .policy.reuse import (
    NO_DIRECTIVES,
    RequestDirectives,
    Use,
    decide,
    may_serve_stale_on_error,
    request_directives,
    stale_on_error_limit,
)
from .policy.revalidation import freshened_fields, head_freshens
from .policy.storable import Refusal, admit
from .policy.validators import answer_not_modified
from .refresh import (
    ERROR_STATUSES,
    UPSTREAM_STATUS,
    Refresher,
    refresh_request_fields,
    refreshable_in_background,
)
from .retention import FlowRetention
from .store.memory import MemoryStore
from .tee import BodyTee
from .upstream import Upstream, tls_verification

# mitmproxy's options (tlsconfig's) that decide how the cache's own upstream client verifies TLS.
TLS_OPTIONS = {"ssl_insecure", "ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir"}

log = escaping(logging.getLogger("mitmcache"))  # every cache log line: control characters escaped

TIMEOUT_TICK_SECONDS = 0.1  # how often forwarded flows are checked against REQ_TIMEOUT

# Request fields a cache does not evaluate (RFC 9111 §4.3.2): they are for the origin.
_ORIGIN_PRECONDITIONS = frozenset({b"if-match", b"if-unmodified-since"})
_CLIENT_VALIDATORS = frozenset({b"if-none-match", b"if-modified-since"})
_RANGE = frozenset({b"range"})
_CONDITIONAL_OR_RANGE = _CLIENT_VALIDATORS | _RANGE
# Refusals that say something about this request only, not about the URL's responses (a 206
# answers a Range request; "cookie": the default lifetime is not given to a Cookie request's).
_REQUEST_SPECIFIC = frozenset({"request-no-store", "authorization", "partial", "cookie"})


@dataclass(slots=True)
class Forward:
    """A GET (or HEAD) that goes upstream through mitmproxy, with what we need when it returns."""

    flow: http.HTTPFlow  # its response is set once the upstream's head arrives
    key: str
    leader: bool
    fwd: str  # Cache-Status fwd= reason: uri-miss, vary-miss, ...
    request_time: float
    if_none_match: Sequence[str] = ()
    if_modified_since: str | None = None
    detail: str | None = None
    tee: BodyTee | None = None
    released: bool = False  # followers already told (the response turned out unstorable early)
    stale: Entry | None = None  # a HEAD written through to revalidate this stored GET response
    timed_out: bool = False  # REQ_TIMEOUT passed without a response head
    upstream_fields: Fields | None = None  # the response's fields before we stamped them early


def _over(content_length: str | None, limit: int) -> bool:
    """Whether a declared Content-Length is larger than ``limit``."""
    return content_length is not None and content_length.isdigit() and int(content_length) > limit


def _lifetime_detail(entry: Entry) -> str | None:
    """Cache-Status says when the lifetime is the operator's (override mode), not the upstream's."""
    return "lifetime-override" if entry.lifetime_source == "override" else None


def authority(request: http.Request) -> str:
    """The request's Host (``:authority`` in HTTP/2 and 3), else the address it goes to: what
    ``request.host_header`` says, read straight from the fields (mitmproxy's ``Headers.get`` costs
    ~1 us, and every request needs this)."""
    if request.http_version.startswith("HTTP/1"):
        host = get_first(request.headers.fields, "host")
    else:
        host = request.host_header
    return host or f"{request.host}:{request.port}"


def cache_key(request: http.Request) -> str:
    return primary_key(request.scheme, authority(request), request.path)


class Cache:
    def __init__(self) -> None:
        # Derived state starts from the built-in defaults: configure() replaces it, but test
        # contexts call configure with only the options they change.
        self.settings = config.parse_settings({s.option: s.default for s in config.SETTINGS})
        self.counts: Counter[str] = Counter()
        self.store = MemoryStore(self.settings.max_bytes, self.settings.max_entries)
        self.inflight = Inflight()
        self.hit_for_miss = HitForMiss()
        self.upstream = Upstream()
        self.refresher = Refresher(
            self.store,
            self.upstream,
            self.inflight,
            self.hit_for_miss,
            lambda: self.settings,
            self.counts,
            on_store=lambda entry: self.expiry.track(entry),
        )
        self.expiry = ExpiryScheduler(self.store, self.refresher, lambda: self.settings, self.counts)
        self.control = Control(self, cache_key)
        self.retention = FlowRetention(lambda: self.settings)
        # mitmproxy registers children: the control plane's commands, the flow retention hooks, the
        # listeners' limits.
        self.addons = [self.control, self.retention, Listening(lambda: self.settings)]
        self._forwards: dict[str, Forward] = {}
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
        interim.install()  # mitmproxy would take an upstream's 1xx for its final response

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
        self.store.resize(settings.max_bytes, settings.max_entries)
        log.setLevel(settings.log_level.upper())
        if (
            settings.log_level == "debug"
            and "termlog_verbosity" in ctx.options
            and ctx.options.termlog_verbosity != "debug"
        ):
            log.warning(
                "cache_log_level is debug, but the terminal log shows debug lines only with "
                "--set termlog_verbosity=debug (mitmweb's event log: its own level filter)"
            )
        if "connection_strategy" in ctx.options and ctx.options.connection_strategy != "lazy":
            log.warning(
                "connection_strategy is %r: every client connection opens an upstream connection, even for "
                "cache hits, and hits fail while the upstream is down. Run with --set connection_strategy=lazy.",
                ctx.options.connection_strategy,
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
        self.upstream.start(
            verify_tls=self._tls_verify, max_connections=max(self.settings.refresh_concurrency, 1) * 2
        )
        self.expiry.start()
        self._timeouts = asyncio.get_running_loop().create_task(self._watch_upstream_timeouts())
        if self.retention in self.addons and ctx.master.addons.get("view") is None:
            # mitmdump and the production launcher keep no flows: nothing to bound, and the
            # retention's hooks would cost every request two more dispatches.
            ctx.master.addons.remove(self.retention)
            self.addons.remove(self.retention)

    def done(self) -> None:
        self.expiry.stop()
        if self._timeouts is not None:
            self._timeouts.cancel()
        self.refresher.cancel_all()
        asyncio.get_event_loop().create_task(self.upstream.close())

    # -- hooks -----------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        if flow.is_replay == "request":
            self.counts["upstream_fetch"] += 1
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
            self.counts["upstream_fetch"] += 1  # passed by (varnish MAIN.backend_req)
            return
        key = cache_key(request)
        if not names.isdisjoint(_ORIGIN_PRECONDITIONS):
            # RFC 9111 §4.3.2: "the If-Match and If-Unmodified-Since conditional header fields are
            # not applicable to a cache": they are for the origin to evaluate.
            self._forward(flow, key, leader=False, fwd="bypass", detail="origin-precondition")
            return
        directives = (
            request_directives(request.headers.get_all("cache-control"), request.headers.get_all("pragma"))
            if b"cache-control" in names or b"pragma" in names
            else NO_DIRECTIVES
        )
        deadline = time.monotonic() + settings.upstream_timeout
        while True:
            now = time.time()
            variants = await self.store.variants(key)
            # RFC 9111 §4.1: of several matching stored responses, the most recent one is used.
            entry = next((e for e in reversed(variants) if matches(e.vary, request.headers.fields)), None)
            if entry is not None:
                await self._use_entry(flow, key, entry, directives, now, deadline, names)
                return
            if directives.only_if_cached:  # RFC 9111 §5.2.1.7
                status = Status(XCache.MISS, fwd="miss", detail="only-if-cached")
                flow.response = responses.error(504, "only-if-cached and not in cache", status, settings.name)
                annotate(flow, key, status, self.counts)
                return
            fwd = "vary-miss" if variants else "uri-miss"
            if self.hit_for_miss.active(key, now):
                self._forward(flow, key, leader=False, fwd=fwd, detail="hit-for-miss")
                return
            # A Range request on a miss goes upstream as it is, without leading: its 206 is not
            # stored, and fetching the whole of a large response for one range would cost more.
            if request.method == "GET" and b"range" not in names and self.inflight.lead(key):
                self._forward(flow, key, leader=True, fwd=fwd, names=names)
                return
            if not self.inflight.busy(key):  # a HEAD or a Range request with nothing to wait for
                self._forward(flow, key, leader=False, fwd=fwd, names=names)
                return
            self.counts["coalesced_wait"] += 1
            outcome = await self.inflight.wait(key, deadline - time.monotonic())
            if outcome is None:
                self.counts["coalesced_timeout"] += 1
                status = Status(XCache.COALESCED, fwd=fwd, collapsed=True, detail="wait-timeout")
                flow.response = responses.error(
                    504,
                    f"upstream did not answer within {settings.upstream_timeout:g}s",
                    status,
                    settings.name,
                )
                annotate(flow, key, status, self.counts)
                return
            if outcome.kind is Kind.ABANDONED:
                continue  # the leader's client left before an answer: someone leads anew
            if self._answer(flow, key, outcome, stale=None, fwd=fwd, collapsed=True):
                return
            self._forward(flow, key, leader=False, fwd=fwd, detail=outcome.detail or outcome.kind.value)
            return

    async def _use_entry(
        self,
        flow: http.HTTPFlow,
        key: str,
        entry: Entry,
        directives: RequestDirectives,
        now: float,
        deadline: float,
        names: set[bytes],
    ) -> None:
        settings = self.settings
        decision = decide(
            entry,
            directives,
            now,
            refresh_window=settings.refresh_window,
            # Serving stale in the refresh window promises a background refresh.
            serve_stale_in_window=settings.serve_stale_in_window and refreshable_in_background(entry),
            error_limit=settings.stale_if_error,
        )
        self.store.record_use(entry, now, hit=True)
        if decision.use is Use.FRESH:
            status = Status(XCache.HIT, hit=True, ttl=int(decision.ttl), detail=_lifetime_detail(entry))
            self._serve(flow, key, entry, status, decision.age, names)
            if 0 < decision.ttl <= settings.refresh_ahead:
                self.refresher.start_in_background(entry, now)
            return
        if decision.use is Use.STALE:
            self.refresher.start_in_background(entry, now)
            status = Status(XCache.STALE, hit=True, ttl=int(decision.ttl), detail=decision.reason)
            self._serve(flow, key, entry, status, decision.age, names)
            return
        fwd = "request" if decision.reason.startswith("request-") else "stale"
        if directives.only_if_cached:
            status = Status(XCache.MISS, fwd=fwd, detail="only-if-cached")
            flow.response = responses.error(
                504, "only-if-cached and the stored copy needs revalidation", status, settings.name
            )
            annotate(flow, key, status, self.counts)
            return
        if flow.request.method == "HEAD" and not self.inflight.busy(key):
            # RFC 9111 §4.3.5: the HEAD goes upstream, and its 200 freshens (or invalidates) the
            # stored GET response on the way back.
            self._forward(flow, key, leader=False, fwd=fwd, stale=entry)
            return
        outcome, fetched = await self.refresher.revalidate(
            entry, deadline - time.monotonic(), flow.request.headers.fields
        )
        if outcome is None:
            outcome = Outcome(
                Kind.FAILED, status=504, detail=f"upstream-timeout after {settings.upstream_timeout:g}s"
            )
        if fetched is not None and outcome.kind is not Kind.STORED:
            # The upstream's answer to this client's own revalidation, not stored: it is the
            # answer, unless it is an error a stale copy may stand in for.
            if outcome.kind is Kind.FAILED and self._answer(
                flow,
                key,
                outcome,
                stale=entry,
                fwd=fwd,
                collapsed=False,
                directives=directives,
                only_stale=True,
            ):
                return
            status = Status(XCache.MISS, fwd=fwd, fwd_status=fetched.status, detail=outcome.detail)
            flow.response = responses.from_fetched(
                fetched, head=flow.request.method == "HEAD", status=status, cache_name=settings.name
            )
            annotate(flow, key, status, self.counts)
            return
        if not self._answer(flow, key, outcome, stale=entry, fwd=fwd, collapsed=False, directives=directives):
            self._forward(flow, key, leader=False, fwd=fwd, detail=outcome.detail)

    def _answer(
        self,
        flow: http.HTTPFlow,
        key: str,
        outcome: Outcome,
        *,
        stale: Entry | None,
        fwd: str,
        collapsed: bool,
        directives: RequestDirectives = NO_DIRECTIVES,
        only_stale: bool = False,
    ) -> bool:
        """Answer a flow that waited for a fetch; False when it must go upstream on its own.

        ``only_stale``: answer only with the stale copy, where a failure lets it stand in.
        """
        settings = self.settings
        now = time.time()
        if outcome.kind is Kind.STORED and outcome.entry is not None:
            entry = outcome.entry
            if not matches(entry.vary, flow.request.headers.fields):
                return False
            age = current_age(entry.initial_age, entry.response_time, now)
            x_cache = (
                XCache.REVALIDATED if outcome.revalidated else XCache.COALESCED if collapsed else XCache.MISS
            )
            status = Status(
                x_cache,
                fwd=fwd,
                fwd_status=304 if outcome.revalidated else entry.status,
                stored=True,
                collapsed=collapsed,
                ttl=int(entry.lifetime - age),
            )
            self.store.record_use(entry, now, hit=False)
            self._serve(flow, key, entry, status, age)
            return True
        if outcome.kind is Kind.FAILED:
            limit = stale_on_error_limit(
                settings.stale_if_error,
                disconnected=not outcome.detail.startswith(UPSTREAM_STATUS),
                pure_rfc=settings.pure_rfc,
            )
            if stale is not None and may_serve_stale_on_error(stale, now, limit, directives.stale_if_error):
                age = current_age(stale.initial_age, stale.response_time, now)
                status = Status(XCache.STALE, hit=True, ttl=int(stale.lifetime - age), detail=outcome.detail)
                self._serve(flow, key, stale, status, age)
                return True
            if only_stale:
                return False
            status = Status(XCache.MISS, fwd=fwd, collapsed=collapsed, detail=outcome.detail)
            flow.response = responses.error(outcome.status or 502, outcome.detail, status, settings.name)
            annotate(flow, key, status, self.counts)
            return True
        return False

    def _serve(
        self,
        flow: http.HTTPFlow,
        key: str,
        entry: Entry,
        status: Status,
        age: float,
        names: set[bytes] | None = None,
    ) -> None:
        """Answer from ``entry``: a 304 when the client's own conditions allow, else the response.
        ``names``: the request's field names, lower case, where the caller has them: a plain GET
        (the common hit) then skips looking for validators and ranges."""
        request = flow.request
        name = self.settings.name
        fields = request.headers.fields  # raw, as the stored ETag is: obs-text compares byte for byte
        if names is not None and names.isdisjoint(_CONDITIONAL_OR_RANGE):
            flow.response = responses.from_entry(
                entry, head=request.method == "HEAD", age=age, status=status, cache_name=name
            )
        elif self._not_modified(
            get_all(fields, "if-none-match"), get_first(fields, "if-modified-since"), entry
        ):
            flow.response = responses.not_modified(entry, age=age, status=status, cache_name=name)
        elif request.method == "GET" and entry.status == 200 and has_any(fields, _RANGE):
            plan = range_plan(
                get_all(fields, "range"),
                get_first(fields, "if-range"),
                length=len(entry.body),
                etag=entry.etag,
                last_modified=entry.last_modified,
                date=entry.date,
                multipart_allowed=get_first(entry.fields, "content-encoding") is None,
            )
            if plan.kind is RangeKind.FULL:
                flow.response = responses.from_entry(
                    entry, head=False, age=age, status=status, cache_name=name
                )
            else:
                flow.response = responses.ranges(entry, plan, age=age, status=status, cache_name=name)
        else:
            flow.response = responses.from_entry(
                entry, head=request.method == "HEAD", age=age, status=status, cache_name=name
            )
        annotate(flow, key, status, self.counts, age)

    @staticmethod
    def _not_modified(if_none_match: Sequence[str], if_modified_since: str | None, entry: Entry) -> bool:
        """Whether the client's own conditions let us answer 304 from ``entry`` (RFC 9110 §13.2.2);
        If-Modified-Since compares with Last-Modified, else the stored Date (RFC 9111 §4.3.2)."""
        if not if_none_match and not if_modified_since:
            return False
        modified = parse_http_date(entry.last_modified)
        return answer_not_modified(
            if_none_match, if_modified_since, entry.etag, modified if modified is not None else entry.date
        )

    def _forward(
        self,
        flow: http.HTTPFlow,
        key: str,
        *,
        leader: bool,
        fwd: str,
        detail: str | None = None,
        stale: Entry | None = None,
        names: set[bytes] | None = None,
    ) -> None:
        """Let the flow go upstream; its client's conditions are answered when it returns.

        The client's validators are taken off a GET: they may name our generated ETag, which the
        upstream never saw, and a 304 from upstream would leave nothing to store. ``names``: the
        request's field names, lower case, where the caller has them already.
        """
        request = flow.request
        forward = Forward(
            flow=flow, key=key, leader=leader, fwd=fwd, request_time=time.time(), detail=detail, stale=stale
        )
        if request.method == "GET" and (
            has_any(request.headers.fields, _CLIENT_VALIDATORS)
            if names is None
            else not names.isdisjoint(_CLIENT_VALIDATORS)
        ):
            forward.if_none_match = request.headers.get_all("if-none-match")
            forward.if_modified_since = request.headers.get("if-modified-since")
            request.headers.pop("if-none-match", None)
            request.headers.pop("if-modified-since", None)
        self._forwards[flow.id] = forward
        self.counts["upstream_fetch"] += 1

    async def _watch_upstream_timeouts(self) -> None:
        while True:
            await asyncio.sleep(TIMEOUT_TICK_SECONDS)
            try:
                self.time_out_forwards(time.time())
            except Exception:  # housekeeping must survive a bad flow
                log.exception("upstream timeout watch failed")

    def time_out_forwards(self, now: float) -> None:
        """Forwarded flows still without a response head REQ_TIMEOUT after they left: release the
        waiters (stale copies or a 504) and the key, so the next request leads a new fetch, and
        close the connection, so the client gets an answer (mitmproxy's 502) instead of waiting
        on a hung upstream. One sweep, not a timer per flow: a timer costs every miss a handle
        and a context for the garbage collector, and forwards are kept in the order they left."""
        timeout = self.settings.upstream_timeout
        late = []
        for forward in self._forwards.values():
            if forward.request_time + timeout > now:
                break
            if forward.flow.response is None and not forward.timed_out:
                late.append(forward)
        for forward in late:
            forward.timed_out = True
            forward.detail = f"upstream-timeout after {timeout:g}s"
            self._release(forward, Outcome(Kind.FAILED, status=504, detail=forward.detail))
            closed = abort_upstream(forward.flow)
            log.warning(
                "upstream gave no response for %s within %gs%s",
                forward.key,
                timeout,
                ": connection closed" if closed else "",
            )

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Uploads larger than the largest object we store, or chunked, stream upstream: the cache
        never reads a request body, and a large one must not sit in memory."""
        request = flow.request
        if request.stream or request.method in ("GET", "HEAD"):
            return
        length = get_first(request.headers.fields, "content-length")
        if _over(length, self.settings.max_object_bytes) or (
            length is None and "chunked" in request.headers.get("transfer-encoding", "").lower()
        ):
            request.stream = True

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or response.stream:
            return
        forward = self._forwards.get(flow.id)
        if forward is not None:
            if flow.request.method == "GET" and response.status_code not in (204, 304):
                self._bound_miss(forward, response)
        elif flow.request.method not in ("GET", "HEAD") and response.status_code not in (204, 304):
            # Nothing of it is stored: only its memory is bounded. Its head goes out now, stamped.
            length = get_first(response.headers.fields, "content-length")
            if length is None or _over(length, self.settings.max_object_bytes):
                response.stream = True
                responses.add_status(response, self._bypass_status(flow), self.settings.name)

    def _bound_miss(self, forward: Forward, response: http.Response) -> None:
        """A miss larger than the largest object stored streams through and releases its waiters at
        once; one of unknown length streams too, with a copy kept while it stays small enough."""
        length = get_first(response.headers.fields, "content-length")
        limit = self.settings.max_object_bytes
        if _over(length, limit):
            response.stream = True
            forward.detail = "too-large"
            self._release(forward, Outcome(Kind.UNSHAREABLE, detail="too-large"))
            self.hit_for_miss.remember(forward.key, time.time(), self.settings.hit_for_miss)
            responses.add_status(response, self._miss_status(forward), self.settings.name)
        elif length is None:
            # The head goes out now, so it is stamped now; what is stored are the upstream's fields.
            forward.tee = BodyTee(limit)
            response.stream = forward.tee
            forward.upstream_fields = response.headers.fields
            responses.add_status(response, self._miss_status(forward), self.settings.name)

    def response(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """What came back from upstream: stored, invalidating, or passing by. A plain function
        that hands mitmproxy a coroutine only when there is work: the hits the cache served
        itself pass through here too, and a coroutine each is measurable on the hit path."""
        if flow.metadata.get("cache_control"):  # answered by the control plane: nothing to store
            return None
        if flow.request.method not in ("GET", "HEAD"):
            return self._invalidate(flow)
        forward = self._forwards.pop(flow.id, None)
        if forward is None or flow.response is None:
            return None  # a hit, or a flow the cache let by
        if flow.request.method == "HEAD":
            return self._head_response(flow, forward)
        return self._store_response(flow, forward)

    async def _store_response(self, flow: http.HTTPFlow, forward: Forward) -> None:
        request = flow.request
        response = flow.response
        streamed = bool(response.stream)
        body = forward.tee.body() if forward.tee is not None else response.raw_content
        if forward.released or body is None:
            self._finish_forward(
                flow, forward, Outcome(Kind.UNSHAREABLE, detail=forward.detail or "too-large")
            )
            return
        admitted = admit(
            key=forward.key,
            url=request.url,
            host=authority(request),
            method="GET",
            request_fields=request.headers.fields,
            status=response.status_code,
            reason=response.data.reason,
            response_fields=forward.upstream_fields or response.headers.fields,
            body=body,
            request_time=forward.request_time,
            response_time=time.time(),
            rules=self.settings.rules,
        )
        if isinstance(admitted, Refusal):
            forward.detail = admitted.reason
            if response.status_code >= 500:
                # The upstream is failing: the waiters share the failure (or a stale copy) rather
                # than each sending the failing upstream one more request, and the next request
                # leads a new fetch (no hit-for-miss for what is likely passing).
                failure = f"{UPSTREAM_STATUS}{response.status_code}"
                outcome = Outcome(Kind.FAILED, status=response.status_code, detail=failure)
                self._finish_forward(flow, forward, outcome)
                return
            if admitted.reason not in _REQUEST_SPECIFIC:
                self.hit_for_miss.remember(forward.key, time.time(), self.settings.hit_for_miss)
            self._finish_forward(flow, forward, Outcome(Kind.UNSHAREABLE, detail=admitted.reason))
            return
        await self.store.put(admitted)
        self.expiry.track(admitted)
        self.hit_for_miss.forget(forward.key)
        self.counts["stored"] += 1
        status = Status(
            XCache.MISS,
            fwd=forward.fwd,
            fwd_status=response.status_code,
            stored=True,
            ttl=int(admitted.lifetime - admitted.initial_age),
            detail=_lifetime_detail(admitted),
        )
        if streamed:  # headers are on the wire already
            pass
        elif self._not_modified(forward.if_none_match, forward.if_modified_since, admitted):
            flow.response = responses.not_modified(
                admitted, age=admitted.initial_age, status=status, cache_name=self.settings.name
            )
        else:
            etag = admitted.etag if admitted.upstream_etag is None else None
            responses.add_status(response, status, self.settings.name, etag=etag)
        annotate(flow, forward.key, status, self.counts)
        if forward.leader:
            self.inflight.finish(forward.key, Outcome(Kind.STORED, entry=admitted))

    def error(self, flow: http.HTTPFlow) -> None:
        forward = self._forwards.pop(flow.id, None)
        if forward is None:
            return
        message = flow.error.msg if flow.error else "unknown error"
        client_gone = flow.response is None and message.startswith(
            ("Client disconnected", "Connection killed")
        )
        if not forward.timed_out:
            forward.detail = "client-gone" if client_gone else f"upstream-error: {message}"
        annotate(flow, forward.key, self._miss_status(forward), self.counts)
        if not forward.leader or forward.released:
            return
        if client_gone:
            outcome = Outcome(Kind.ABANDONED, detail="leader-gone")
        else:
            outcome = Outcome(Kind.FAILED, status=502, detail=forward.detail)
        self.inflight.finish(forward.key, outcome)

    # -- helpers ---------------------------------------------------------------------------

    def _miss_status(self, forward: Forward) -> Status:
        return Status(XCache.MISS, fwd=forward.fwd, fwd_status=None, detail=forward.detail)

    def _release(self, forward: Forward, outcome: Outcome) -> None:
        if forward.leader and not forward.released:
            forward.released = True
            self.inflight.finish(forward.key, outcome)

    def _finish_forward(self, flow: http.HTTPFlow, forward: Forward, outcome: Outcome) -> None:
        """A forwarded response that is not stored: stamp it and release the waiters."""
        self._release(forward, outcome)
        response = flow.response
        status = Status(
            XCache.MISS,
            fwd=forward.fwd,
            fwd_status=response.status_code if response else None,
            detail=forward.detail,
        )
        if response is not None and not response.stream:
            responses.add_status(response, status, self.settings.name)
        annotate(flow, forward.key, status, self.counts)

    async def _head_response(self, flow: http.HTTPFlow, forward: Forward) -> None:
        """A HEAD that went upstream: its 200 freshens or invalidates the stored GET responses it
        could have been answered from (RFC 9111 §4.3.5); an error from a HEAD written through for
        a stale entry may be answered from that entry, where stale may stand in for an error."""
        response = flow.response
        assert response is not None
        now = time.time()
        stale = forward.stale
        if stale is not None and response.status_code in ERROR_STATUSES:
            settings = self.settings
            limit = stale_on_error_limit(
                settings.stale_if_error, disconnected=False, pure_rfc=settings.pure_rfc
            )
            if may_serve_stale_on_error(stale, now, limit):
                age = current_age(stale.initial_age, stale.response_time, now)
                detail = f"{UPSTREAM_STATUS}{response.status_code}"
                self._serve(flow, forward.key, stale, Status(XCache.STALE, hit=True, detail=detail), age)
                return
        forward.detail = "head"
        if response.status_code == 200:
            for entry in [
                e for e in await self.store.peek(forward.key) if matches(e.vary, flow.request.headers.fields)
            ]:
                if head_freshens(entry, response.headers.fields):
                    admitted = admit(
                        key=entry.key,
                        url=entry.url,
                        host=entry.host,
                        method="GET",
                        request_fields=refresh_request_fields(entry),
                        status=entry.status,
                        reason=entry.reason,
                        response_fields=freshened_fields(entry, response.headers.fields),
                        body=entry.body,
                        request_time=forward.request_time,
                        response_time=now,
                        rules=self.settings.rules,
                    )
                    if not isinstance(admitted, Refusal) and admitted.vary == entry.vary:
                        admitted.last_access, admitted.hits = entry.last_access, entry.hits
                        await self.store.put(admitted)
                        self.expiry.track(admitted)
                        self.counts["head_freshened"] += 1
                        forward.detail = "head-freshened"
                        continue
                if await self.store.discard(entry):
                    self.counts["invalidated"] += 1
                    forward.detail = "head-invalidated"
        self._finish_forward(flow, forward, Outcome(Kind.UNSHAREABLE, detail="head"))

    def _bypass_status(self, flow: http.HTTPFlow, detail: str | None = None) -> Status:
        code = flow.response.status_code if flow.response else None
        return Status(XCache.BYPASS, fwd="method", fwd_status=code, detail=detail)

    async def _invalidate(self, flow: http.HTTPFlow) -> None:
        """RFC 9111 §4.4: a non-error response to an unsafe request (any method not known to be
        safe) invalidates the target URI, and the same-origin Location and Content-Location URIs.
        Responses to safe methods other than GET and HEAD (OPTIONS, TRACE) only pass by."""
        if flow.response is None:
            return
        request = flow.request
        key = cache_key(request)
        status = self._bypass_status(flow)
        if invalidates(request.method, flow.response.status_code):
            target_authority = authority(request)
            dropped = 0
            for path in invalidated_targets(
                f"{request.scheme}://{target_authority}{request.path}", flow.response.headers.fields
            ):
                target_key = primary_key(request.scheme, target_authority, path)
                dropped += await self.store.delete(target_key)
                self.hit_for_miss.forget(target_key)
            if dropped:
                self.counts["invalidated"] += dropped
                status = self._bypass_status(flow, "invalidated")
        if not flow.response.stream:
            responses.add_status(flow.response, status, self.settings.name)
        annotate(flow, key, status, self.counts)
