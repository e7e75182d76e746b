"""Background refreshes (Refresher): their concurrency limit, backoff, clean request, and what a
failed refresh keeps -- driven against fake upstreams, no sockets."""

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest

from mitmcache import refresh
from mitmcache.coalesce import Kind
from mitmcache.config import SETTINGS, Settings, parse_settings
from mitmcache.core import Core
from mitmcache.entry import Entry, Meta, Stored
from mitmcache.policy.lifecycle import refreshable_in_background
from mitmcache.policy.storable import Rules, admit
from mitmcache.refresh import MAX_BACKOFF_SECONDS, Refresher, refresh_request_fields
from mitmcache.upstream import Fetched, UpstreamError
from tests.support.claims import ClaimRecorder
from tests.support.entries import stored_entry
from tests.support.serialising_store import SerialisingStore

KEY = "http://example.com/a"

type Fields = Sequence[tuple[bytes, bytes]]


def settings(**options: str) -> Settings:
    """The built-in defaults, with ``options`` (``cache_``-less option names) changed."""
    raw = {s.option: s.default for s in SETTINGS}
    raw.update({f"cache_{name}": value for name, value in options.items()})
    return parse_settings(raw)


def fetched(status: int = 200, body: bytes = b"fresh", *fields: tuple[bytes, bytes]) -> Fetched:
    now = time.time()
    response_fields = list(fields) or [(b"cache-control", b"max-age=60")]
    response_fields.append((b"content-length", str(len(body)).encode()))
    return Fetched(status, b"", response_fields, body, now, now)


class RecordingUpstream:
    """Answers every GET with ``reply()`` and remembers what it was asked."""

    def __init__(self, reply: Callable[[], Fetched] = fetched) -> None:
        self.reply = reply
        self.calls: list[tuple[str, list[tuple[bytes, bytes]]]] = []

    async def get(self, url: str, fields: Fields, timeout: float, max_bytes: int) -> Fetched:
        self.calls.append((url, list(fields)))
        return self.reply()


class BlockingUpstream(RecordingUpstream):
    """Holds every GET until ``release`` is set, counting how many are held at once."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.active = 0
        self.peak = 0

    async def get(self, url: str, fields: Fields, timeout: float, max_bytes: int) -> Fetched:
        self.calls.append((url, list(fields)))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        return self.reply()


class FailingUpstream(RecordingUpstream):
    """Every GET fails as an unreachable upstream does."""

    async def get(self, url: str, fields: Fields, timeout: float, max_bytes: int) -> Fetched:
        self.calls.append((url, list(fields)))
        raise UpstreamError(502, "upstream-error: ConnectError: refused")


class Parts:
    """A Refresher and the collaborators a test looks at, on a store that hands out copies."""

    def __init__(self, upstream: RecordingUpstream, **options: str) -> None:
        self.upstream = upstream
        self.settings = settings(**options)
        self.store = SerialisingStore()
        self.core = Core(lambda: self.settings, self.store, upstream)  # type: ignore[arg-type]  # a fake Upstream
        self.inflight = self.core.coalescer
        self.hit_for_miss = self.core.hit_for_miss
        self.counts = self.core.counters
        self.refresher = Refresher(self.core)

    async def put(self, entry: Entry) -> Stored:
        """Store ``entry`` and return it as the store hands it out."""
        now = time.time()
        await self.store.put(entry, Meta(stored_at=now), keep_until=now + 3600, check_at=now + 3600)
        return await self.current(entry.key)

    async def current(self, key: str) -> Stored:
        (stored,) = await self.store.peek(key)
        return stored

    async def settle(self, timeout: float = 2.0) -> None:
        """Wait until no refresh is under way."""
        async with asyncio.timeout(timeout):
            while len(self.inflight):
                await asyncio.sleep(0.005)


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def admitted(request: list[tuple[bytes, bytes]], response: list[tuple[bytes, bytes]]) -> Entry:
    """The entry ``admit`` makes of a 200 with ``response`` fields to a GET with ``request`` fields."""
    now = time.time()
    entry = admit(
        key=KEY,
        url=KEY,
        host="example.com",
        method="GET",
        request_fields=request,
        status=200,
        reason=b"OK",
        response_fields=[*response, (b"content-length", b"4")],
        body=b"good",
        request_time=now,
        response_time=now,
        rules=Rules(default_ttl=60.0, override=False),
    )
    assert isinstance(entry, Entry), entry
    return entry


# ---- concurrency ----


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_background_refreshes_run_at_most_the_configured_number_at_once(concurrency):
    """cache_refresh_concurrency bounds the upstream GETs that refreshes of different keys have
    open at once; the others wait for a slot and all of them run in the end."""
    parts = Parts(BlockingUpstream(), refresh_concurrency=str(concurrency))
    upstream = parts.upstream
    assert isinstance(upstream, BlockingUpstream)
    entries = [await parts.put(stored_entry(f"http://example.com/{i}")) for i in range(5)]
    assert all(parts.refresher.start(stored, time.time()) for stored in entries)
    await until(lambda: upstream.active == concurrency)
    await asyncio.sleep(0.05)  # time for any refresh that wrongly got past the limit to show
    assert (upstream.active, upstream.peak, len(upstream.calls)) == (concurrency, concurrency, concurrency)
    assert len(parts.inflight) == 5  # the waiting ones still hold their keys: nobody else fetches them
    upstream.release.set()
    await parts.settle()
    assert upstream.peak == concurrency
    assert sorted(url for url, _ in upstream.calls) == sorted(s.entry.url for s in entries)
    assert parts.counts["refresh_replaced"] == 5


# ---- backoff ----


class Jitter:
    """Stands in for ``random`` in refresh.py: ``uniform`` answers at ``position`` between its bounds."""

    def __init__(self, position: float) -> None:
        self.position = position
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, low: float, high: float) -> float:
        self.bounds.append((low, high))
        return low + (high - low) * self.position


@pytest.mark.parametrize(("position", "factor"), [(0.0, 0.5), (1.0, 1.0)], ids=["shortest", "longest"])
async def test_the_backoff_doubles_after_each_failed_refresh_jittered_and_capped(
    monkeypatch, position, factor
):
    """After the n-th consecutive failed refresh the next one waits 2^(n-1) s, capped at
    MAX_BACKOFF_SECONDS, times a jitter drawn between 0.5 and 1."""
    jitter = Jitter(position)
    monkeypatch.setattr(refresh, "random", jitter)
    parts = Parts(FailingUpstream())
    await parts.put(stored_entry(KEY))
    delays = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS]
    assert 2.0 ** (7 - 1) > MAX_BACKOFF_SECONDS  # the 7th failure is the first one capped
    for failures, delay in enumerate(delays, start=1):
        before = time.time()
        outcome = await parts.refresher.fetch(await parts.current(KEY))
        after = time.time()
        assert outcome.kind is Kind.FAILED
        meta = (await parts.current(KEY)).meta
        assert meta.refresh_failures == failures
        assert before + delay * factor <= meta.retry_at <= after + delay * factor
    assert jitter.bounds == [(0.5, 1.0)] * len(delays)


async def test_the_real_jitter_stays_between_half_and_all_of_the_backoff():
    """Without a stand-in for ``random``, each retry time lies between 0.5x and 1x its backoff."""
    parts = Parts(FailingUpstream())
    await parts.put(stored_entry(KEY))
    for failures in range(1, 9):
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (failures - 1))
        before = time.time()
        await parts.refresher.fetch(await parts.current(KEY))
        after = time.time()
        assert before + 0.5 * delay <= (await parts.current(KEY)).meta.retry_at <= after + delay


async def test_a_background_refresh_claims_with_the_time_its_copy_was_read():
    """Another process may store a newer version between the read and the refresh's start: the
    claim must count from the read (shared_coordination.SharedCoalescer.claim)."""
    parts = Parts(RecordingUpstream())
    parts.core.coalescer = parts.inflight = recorder = ClaimRecorder()
    stored = await parts.put(stored_entry(KEY))
    read_at = time.time() - 2.0  # the hit's lookup, late to its answer
    assert parts.refresher.start_in_background(stored, time.time(), read_at)
    await parts.settle()
    assert recorder.read_at == [read_at]


async def test_a_background_refresh_is_refused_until_the_backoff_ends():
    """start_in_background does nothing before the entry's retry_at (no upstream request, the key
    stays free), and starts a refresh once that time has come."""
    parts = Parts(FailingUpstream())
    await parts.refresher.fetch(await parts.put(stored_entry(KEY)))  # one failure: retry 0.5 to 1 s away
    stored = await parts.current(KEY)
    assert stored.meta.retry_at > time.time()
    just_before = stored.meta.retry_at - 0.01
    assert parts.refresher.start_in_background(stored, just_before, just_before) is False
    assert len(parts.upstream.calls) == 1
    assert not parts.inflight.busy(KEY)
    assert parts.counts["refresh_background"] == 0
    retry_at = stored.meta.retry_at
    assert parts.refresher.start_in_background(stored, retry_at, retry_at) is True
    await parts.settle()
    assert len(parts.upstream.calls) == 2
    assert parts.counts["refresh_background"] == 1


# ---- the clean request ----


def test_a_refresh_sends_host_the_varied_fields_and_identity_encoding_only():
    """refresh_request_fields: Host, the stored request's values of the fields the response varies
    on, and Accept-Encoding: identity -- none of the client's other fields (Cookie, User-Agent, ...)."""
    entry = admitted(
        request=[
            (b"Host", b"example.com"),
            (b"Cookie", b"session=secret"),
            (b"User-Agent", b"client/1"),
            (b"Accept", b"text/html"),
            (b"Accept-Language", b"fr"),
            (b"X-Client", b"mine"),
        ],
        response=[(b"Cache-Control", b"max-age=60"), (b"Vary", b"Accept-Language")],
    )
    assert refresh_request_fields(entry) == [
        (b"host", b"example.com"),
        (b"accept-language", b"fr"),
        (b"accept-encoding", b"identity"),
    ]


def test_a_refresh_of_a_variant_chosen_by_accept_encoding_asks_for_that_encoding():
    """When the response varies on Accept-Encoding, the stored request's value is sent instead of
    identity (the refresh must fetch the variant it renews)."""
    entry = admitted(
        request=[(b"Accept-Encoding", b"gzip"), (b"Cookie", b"a=1")],
        response=[(b"Cache-Control", b"max-age=60"), (b"Vary", b"Accept-Encoding")],
    )
    assert refresh_request_fields(entry) == [
        (b"host", b"example.com"),
        (b"accept-encoding", b"gzip,identity"),
    ]


def test_a_varied_field_the_stored_request_lacked_is_not_sent():
    """A varied-on field absent from the stored request stays absent from the refresh: the variant
    is the one for requests without it."""
    entry = admitted(
        request=[(b"Cookie", b"a=1")],
        response=[(b"Cache-Control", b"max-age=60"), (b"Vary", b"Accept-Language, Accept-Encoding")],
    )
    assert entry.vary == (("accept-encoding", None), ("accept-language", None))
    assert refresh_request_fields(entry) == [(b"host", b"example.com")]


async def test_a_background_refresh_sends_exactly_the_clean_fields_and_the_validators():
    """What reaches the upstream for a background refresh is refresh_request_fields plus the
    upstream's own validators, nothing else."""
    upstream = RecordingUpstream()
    parts = Parts(upstream)
    entry = admitted(
        request=[(b"Accept-Language", b"fr"), (b"Cookie", b"a=1"), (b"User-Agent", b"client/1")],
        response=[(b"Cache-Control", b"max-age=60"), (b"Vary", b"Accept-Language"), (b"ETag", b'"v1"')],
    )
    assert parts.refresher.start(await parts.put(entry), time.time())
    await parts.settle()
    assert upstream.calls == [
        (
            KEY,
            [
                (b"host", b"example.com"),
                (b"accept-language", b"fr"),
                (b"accept-encoding", b"identity"),
                (b"if-none-match", b'"v1"'),
            ],
        )
    ]


# ---- failures keep good data ----


@pytest.mark.parametrize("status", [500, 501, 502, 503, 504, 505, 507, 511])
async def test_a_refresh_answered_with_a_5xx_keeps_the_stored_entry(status):
    """A server error from the upstream fails the refresh (RFC 9111 §4.3.3: the cache may act as if
    the server had not answered): the stored entry stays as it was (good data is never thrown
    away), nothing is stored in its place, and the key is not made hit-for-miss."""
    error_page = (b"content-type", b"text/plain")  # no caching fields of its own, as error pages go
    parts = Parts(RecordingUpstream(lambda: fetched(status, b"oops", error_page)))
    entry = admitted(request=[], response=[(b"Cache-Control", b"max-age=60")])
    outcome = await parts.refresher.fetch(await parts.put(entry))
    stored = await parts.store.peek(KEY)
    assert [(s.entry.status, s.entry.body) for s in stored] == [(200, b"good")], outcome
    assert stored[0].entry.version == entry.version  # nothing was stored in its place
    assert not parts.hit_for_miss.active(KEY, time.time())
    assert (outcome.kind, outcome.detail) == (Kind.FAILED, f"upstream-status-{status}")
    assert (stored[0].meta.refresh_failures, parts.counts["refresh_failed"]) == (1, 1)


# ---- credentials are never replayed ----


@pytest.mark.parametrize("field", [b"Cookie", b"Authorization"])
async def test_an_entry_that_varies_on_credentials_is_never_refreshed_without_a_client(field):
    """SPEC §5: a background refresh never sends a client's Cookie or Authorization; an entry that
    varies on one could only be refreshed by replaying it, so it is not refreshed at all."""
    upstream = RecordingUpstream()
    parts = Parts(upstream)
    entry = admitted(
        request=[(field, b"secret")],
        response=[(b"Cache-Control", b"max-age=60, public"), (b"Vary", field)],
    )
    assert not refreshable_in_background(entry)
    assert not parts.refresher.start(await parts.put(entry), time.time())
    assert upstream.calls == []
    assert not any(name == field.lower() for name, _ in refresh_request_fields(entry))
