"""Flows that go upstream through mitmproxy, from leaving to their answer: registered when they
leave, bounded when their head arrives (streamed past the largest object stored), handed to the
engine to store when complete, timed out when the upstream does not answer, and released when
they fail, so that nobody waiting for them is left hanging."""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mitmproxy import http

from . import request_body, responses
from .annotate import annotate
from .answers import (
    client_conditions,
    has_client_conditions,
    normalise_accept_encoding,
    not_modified,
    serve,
    stamp,
)
from .coalesce import STORE_FAILED, Failure, Kind, Outcome
from .compat import abort_upstream, answer_failure_with, last_activity, upstream_reset
from .compression import identity_view
from .config import Settings
from .engine import REQUEST_SPECIFIC, Engine
from .entry import Entry
from .generations import Generation
from .lookup import Forward, Serve, lifetime_detail
from .policy.cache_status import Status, XCache
from .policy.fields import Fields, get_first
from .policy.freshness import current_age
from .policy.reuse import ERROR_STATUSES, may_serve_stale_on_error, stale_on_error_limit
from .policy.storable import Head, Refusal, judge_head
from .request_key import authority, upstream_url
from .tee import BodyTee

log = logging.getLogger("mitmcache")


@dataclass(slots=True)
class Forwarded:
    """A GET (or HEAD) that went upstream through mitmproxy, with what we need when it returns."""

    flow: http.HTTPFlow  # its response is set once the upstream's head arrives
    key: str
    leader: bool
    fwd: str  # Cache-Status fwd= reason: uri-miss, vary-miss, ...
    generation: Generation  # the key's generation when it left: stored only if still current
    request_time: float
    if_none_match: Sequence[str] = ()
    if_modified_since: str | None = None
    detail: str | None = None
    tee: BodyTee | None = None
    released: bool = False  # followers already told (the response turned out unstorable early)
    stale: Entry | None = None  # a HEAD written through to revalidate this stored GET response
    timed_out: bool = False  # REQ_TIMEOUT passed without a response head
    upstream_fields: Fields | None = None  # the response's fields before we stamped them early
    head_at: float = 0.0  # when the response head arrived (0: not yet, or a body is not awaited)
    cut_short: bool = False  # a close-delimited body whose connection ended with an error
    head: Head | None = None  # what its head said about storing it (storable.judge_head)


def over(content_length: str | None, limit: int) -> bool:
    """Whether a declared Content-Length is larger than ``limit``."""
    return content_length is not None and content_length.isdigit() and int(content_length) > limit


class Forwarding:
    def __init__(self, engine: Engine, settings: Callable[[], Settings]) -> None:
        self._engine = engine
        self._settings = settings
        self._forwards: dict[str, Forwarded] = {}  # by flow id, in the order they left

    def send(self, flow: http.HTTPFlow, key: str, forward: Forward, names: set[bytes] | None = None) -> None:
        """Let the flow go upstream; its client's conditions are answered when it returns."""
        request = flow.request
        sent = Forwarded(
            flow,
            key,
            forward.leader,
            forward.fwd,
            forward.generation,
            time.time(),
            detail=forward.detail,
            stale=forward.stale,
        )
        if request.data.method == b"GET" and has_client_conditions(request, names):
            sent.if_none_match, sent.if_modified_since = client_conditions(request)
        if names is None or b"accept-encoding" in names:
            normalise_accept_encoding(request)
        self._forwards[flow.id] = sent
        self._engine.upstream_fetch()

    def pop(self, flow: http.HTTPFlow) -> Forwarded | None:
        return self._forwards.pop(flow.id, None)

    def get(self, flow: http.HTTPFlow) -> Forwarded | None:
        return self._forwards.get(flow.id)

    # -- timeouts --------------------------------------------------------------------------------

    def time_out(self, now: float) -> None:
        """Forwarded flows still without a response head REQ_TIMEOUT after they left, or whose body
        paused longer than CACHE_BODY_IDLE_TIMEOUT_SECS while it is being stored or waited for:
        release the waiters (stale copies or a 504) and the key, so the next request leads a new
        fetch, and close the connection, so the client gets an answer instead of waiting on a hung
        upstream. One sweep, not a timer per flow: a timer costs every miss a handle and a context
        for the garbage collector."""
        settings = self._settings()
        timeout, idle = settings.upstream_timeout, settings.body_idle_timeout
        late, stalled = [], []
        for sent in self._forwards.values():
            if sent.timed_out:
                continue
            if sent.flow.response is None:
                if sent.request_time + timeout <= now:
                    late.append(sent)
            elif sent.head_at and self._awaited(sent) and self._idle_since(sent) + idle <= now:
                stalled.append(sent)
        for sent in stalled:
            sent.timed_out = True
            sent.detail = f"upstream-body-idle after {idle:g}s"
            self.release(sent, Outcome(Kind.FAILED, status=504, detail=sent.detail, failure=Failure.TIMEOUT))
            abort_upstream(sent.flow)
            log.warning(
                "upstream response body of %s paused for more than %gs: connection closed", sent.key, idle
            )
        for sent in late:
            sent.timed_out = True
            sent.detail = f"upstream-timeout after {timeout:g}s"
            self.release(sent, Outcome(Kind.FAILED, status=504, detail=sent.detail))
            closed = abort_upstream(sent.flow)
            log.warning(
                "upstream gave no response for %s within %gs%s",
                sent.key,
                timeout,
                ": connection closed" if closed else "",
            )

    @staticmethod
    def _awaited(sent: Forwarded) -> bool:
        """Whether a response whose head arrived is being stored or has clients waiting for it."""
        if sent.leader and not sent.released:
            return True
        stream = sent.flow.response.stream if sent.flow.response is not None else True
        return not stream or (sent.tee is not None and sent.tee.keeping)

    @staticmethod
    def _idle_since(sent: Forwarded) -> float:
        """When data last moved on the flow's connection (the head's arrival at the earliest)."""
        return max(last_activity(sent.flow) or 0.0, sent.head_at)

    # -- the response ------------------------------------------------------------------------------

    def bound(self, sent: Forwarded, response: http.Response) -> None:
        """A miss larger than the largest object stored streams through and releases its waiters at
        once; one of unknown length streams too, with a copy kept while it stays small enough (and
        releases its waiters once it outgrows that); one whose head already says it cannot be stored
        releases them at once: none of them waits for a body that will not be stored."""
        settings = self._settings()
        sent.head_at = time.time()
        fields = response.headers.fields
        length = get_first(fields, "content-length")
        limit = settings.max_object_bytes
        if over(length, limit):
            response.stream = True
            self._unstorable(sent, "too-large")
            responses.add_status(response, self.miss_status(sent), settings.name)
            return
        if sent.leader:
            judged = judge_head(
                response.status_code, sent.flow.request.headers.fields, fields, settings.rules, sent.head_at
            )
            if isinstance(judged, Refusal):
                self._unstorable(sent, judged.reason)
            else:
                sent.head = judged
        if length is None:
            # The head goes out now, so it is stamped now; what is stored are the upstream's fields.
            if not sent.released:
                close_delimited = "transfer-encoding" not in response.headers
                sent.tee = BodyTee(
                    limit,
                    lambda: self._unstorable(sent, "too-large"),
                    (lambda: self._check_close(sent)) if close_delimited else None,
                )
            response.stream = sent.tee or True
            sent.upstream_fields = fields
            responses.add_status(response, self.miss_status(sent), settings.name)

    @staticmethod
    def _check_close(sent: Forwarded) -> None:
        """A body that ends when its connection closes is complete only if it closed cleanly (RFC
        9112 §6.3: an abortive close cannot be told from the end otherwise)."""
        sent.cut_short = upstream_reset(sent.flow)
        if sent.cut_short:
            sent.detail = "incomplete"

    def _unstorable(self, sent: Forwarded, reason: str) -> None:
        """The response will not be stored: its waiters go upstream themselves, now."""
        sent.detail = reason
        self.release(sent, Outcome(Kind.UNSHAREABLE, detail=reason))
        if reason not in REQUEST_SPECIFIC:
            self._engine.unshareable(sent.key)

    async def store(self, flow: http.HTTPFlow, sent: Forwarded) -> None:
        """A forwarded GET's complete response: stored (unless it may not be), then answered. Its
        waiters are released whatever happens, an exception included."""
        try:
            await self._store(flow, sent)
        finally:
            self.release(sent, STORE_FAILED)

    async def _store(self, flow: http.HTTPFlow, sent: Forwarded) -> None:
        request, response = flow.request, flow.response
        assert response is not None
        body = sent.tee.body() if sent.tee is not None else response.raw_content
        if sent.released or body is None or sent.cut_short:
            self.finish(flow, sent, Outcome(Kind.UNSHAREABLE, detail=sent.detail or "too-large"))
            return
        admission = await self._engine.store_response(
            key=sent.key,
            url=upstream_url(request),
            host=authority(request),
            request_fields=request.headers.fields,
            status=response.status_code,
            reason=response.data.reason,
            response_fields=sent.upstream_fields or response.headers.fields,
            body=body,
            request_time=sent.request_time,
            generation=sent.generation,
            leader=sent.leader,
            forced=sent.fwd == "request",
            head=sent.head,
        )
        sent.released = sent.leader
        entry = admission.entry
        if not admission.stored:
            sent.detail = admission.detail
        if entry is None or not admission.stored:
            self.finish(flow, sent, admission.outcome)
            return
        name = self._settings().name
        ttl = int(entry.lifetime - entry.initial_age)
        status = Status(
            XCache.MISS,
            fwd=sent.fwd,
            fwd_status=response.status_code,
            stored=True,
            ttl=ttl,
            detail=lifetime_detail(entry),
        )
        # The client gets the response as the upstream sent it: the identity one, if it was coded.
        shown = identity_view(entry, b"") if entry.coding is not None else entry
        if response.stream:  # headers are on the wire already
            pass
        elif (sent.if_none_match or sent.if_modified_since) and not_modified(
            sent.if_none_match, sent.if_modified_since, shown
        ):
            flow.response = responses.not_modified(
                shown, age=entry.initial_age, status=status, cache_name=name
            )
        else:
            stamp(response, status, name, etag=shown.etag if entry.upstream_etag is None else None)
        annotate(flow, sent.key, status, self._engine.counters)

    async def head(self, flow: http.HTTPFlow, sent: Forwarded) -> None:
        """A HEAD that went upstream: its 200 freshens or invalidates the stored GET responses it
        could have been answered from (RFC 9111 §4.3.5); an error from a HEAD written through for
        a stale entry may be answered from that entry, where stale may stand in for an error."""
        try:
            await self._head(flow, sent)
        finally:
            self.release(sent, Outcome(Kind.UNSHAREABLE, detail="head"))

    async def _head(self, flow: http.HTTPFlow, sent: Forwarded) -> None:
        response = flow.response
        assert response is not None
        if sent.stale is not None and response.status_code in ERROR_STATUSES:
            settings, now, stale = self._settings(), time.time(), sent.stale
            limit = stale_on_error_limit(
                settings.stale_if_error, disconnected=False, pure_rfc=settings.pure_rfc
            )
            if may_serve_stale_on_error(stale, now, limit):
                age = current_age(stale.initial_age, stale.response_time, now)
                status = Status(XCache.STALE, hit=True, detail=f"upstream-status-{response.status_code}")
                serve(flow, sent.key, Serve(stale, status, age), settings.name, self._engine.counters)
                return
        sent.detail = await self._engine.head_response(
            sent.key,
            flow.request.headers.fields,
            response.status_code,
            response.headers.fields,
            sent.request_time,
        )
        self.finish(flow, sent, Outcome(Kind.UNSHAREABLE, detail="head"))

    def failed(self, flow: http.HTTPFlow, sent: Forwarded) -> None:
        """mitmproxy's error hook for a forwarded flow: say why, and release its waiters."""
        message = flow.error.msg if flow.error else "unknown error"
        # The client leaving (before or after the response head) is not an upstream failure: the
        # waiters look again, and one of them leads a new fetch.
        client_gone = message.startswith(("Client disconnected", "Connection killed"))
        if not sent.timed_out:
            sent.detail = "client-gone" if client_gone else f"upstream-error: {message}"
        try:
            annotate(flow, sent.key, self.miss_status(sent), self._engine.counters)
        finally:
            if client_gone:
                self.release(sent, Outcome(Kind.ABANDONED, detail="leader-gone"))
            else:
                self.release(sent, Outcome(Kind.FAILED, status=502, detail=sent.detail or ""))

    # -- helpers -------------------------------------------------------------------------------------

    def miss_status(self, sent: Forwarded) -> Status:
        return Status(XCache.MISS, fwd=sent.fwd, fwd_status=None, detail=sent.detail)

    def release(self, sent: Forwarded, outcome: Outcome) -> None:
        if sent.leader and not sent.released:
            sent.released = True
            self._engine.release(sent.key, outcome)

    def finish(self, flow: http.HTTPFlow, sent: Forwarded, outcome: Outcome) -> None:
        """A forwarded response that is not stored: stamp it and release the waiters."""
        self.release(sent, outcome)
        response = flow.response
        code = response.status_code if response else None
        status = Status(XCache.MISS, fwd=sent.fwd, fwd_status=code, detail=sent.detail)
        if response is not None:
            stamp(response, status, self._settings().name)
        annotate(flow, sent.key, status, self._engine.counters)


def answer_failure(flow: http.HTTPFlow, sent: Forwarded | None, cache_name: str) -> None:
    """The client of a flow that failed upstream gets the cache's JSON error, stamped like any
    answer (the JSON its waiters get), not mitmproxy's HTML page: a 504 when REQ_TIMEOUT or
    CACHE_BODY_IDLE_TIMEOUT_SECS ran out, else a 502."""
    if sent is not None:
        code, detail = (504 if sent.timed_out else 502), sent.detail or "upstream-error"
        status = Status(XCache.MISS, fwd=sent.fwd, detail=detail)
    else:
        code, detail = 502, f"upstream-error: {flow.error.msg if flow.error else 'unknown error'}"
        fwd = "request" if flow.metadata.get(request_body.GET_BODY) else "method"
        status = Status(XCache.BYPASS, fwd=fwd, detail=detail)
    answer_failure_with(flow, responses.error(code, detail, status, cache_name))
