"""The engine through its value-level entry points, on a store that hands out copies (as a networked
store does): coalescing whose followers re-read the store, the invalidation bus, invalidation of
the URLs a response names."""

import asyncio
import time

from mitmcache import config
from mitmcache.engine import Engine
from mitmcache.generations import LocalGenerations
from mitmcache.lookup import Forward, Refuse, Serve
from mitmcache.policy.cache_status import XCache
from mitmcache.policy.reuse import NO_DIRECTIVES, request_directives
from mitmcache.store.base import Read
from mitmcache.store.memory import MemoryStore
from tests.support.claims import ClaimRecorder
from tests.support.serialising_store import SerialisingStore

KEY = "http://example.com/a"
FIELDS = [(b"host", b"example.com")]
RESPONSE = [(b"cache-control", b"max-age=60"), (b"content-length", b"4")]


SETTINGS = config.parse_settings({s.option: s.default for s in config.SETTINGS})


def engine(store: SerialisingStore | MemoryStore | None = None) -> Engine:
    return Engine(lambda: SETTINGS, store=store or SerialisingStore())


async def lookup(e: Engine, key: str = KEY):
    return await e.lookup("GET", key, FIELDS, True, NO_DIRECTIVES, time.monotonic() + 5)


async def store(e: Engine, forward: Forward, key: str = KEY, body: bytes = b"body", fields=RESPONSE):
    return await e.store_response(
        key=key,
        url=key,
        host="example.com",
        request_fields=FIELDS,
        status=200,
        reason=b"OK",
        response_fields=fields,
        body=body,
        request_time=time.time(),
        generation=forward.generation,
        leader=forward.leader,
    )


async def test_a_miss_leads_and_its_stored_answer_is_the_next_hit():
    e = engine()
    forward = await lookup(e)
    assert isinstance(forward, Forward) and forward.leader and forward.fwd == "uri-miss"
    assert (await store(e, forward)).stored
    hit = await lookup(e)
    assert isinstance(hit, Serve) and hit.status.x_cache == XCache.HIT and hit.entry.body == b"body"


async def test_followers_of_a_fetch_re_read_the_store_for_its_answer():
    e = engine()
    forward = await lookup(e)
    follower = asyncio.get_running_loop().create_task(lookup(e))
    await asyncio.sleep(0.01)
    assert not follower.done()
    await store(e, forward)
    answer = await asyncio.wait_for(follower, 1)
    assert isinstance(answer, Serve)
    assert (answer.status.x_cache, answer.entry.body) == (XCache.COALESCED, b"body")


async def test_a_fetch_that_began_before_its_url_was_invalidated_stores_nothing():
    e = engine()
    forward = await lookup(e)
    await e.invalidate(KEY)  # a write to the URL while the GET is under way
    admission = await store(e, forward)
    assert (admission.stored, admission.detail) == (False, "invalidated")
    assert isinstance(await lookup(e), Forward)
    assert e.counters["not_stored_invalidated"] == 1


async def test_a_clear_while_a_fetch_is_under_way_keeps_its_answer_out():
    e = engine()
    forward = await lookup(e)
    await e.clear()
    assert not (await store(e, forward)).stored


async def test_invalidating_a_url_drops_the_urls_its_response_names_of_the_same_origin():
    e = engine()
    for path in ("/items", "/items/7", "/elsewhere"):
        key = f"http://example.com{path}"
        await store(e, await lookup(e, key), key)
    fields = [(b"location", b"/items/7"), (b"content-location", b"http://other.example/items")]
    dropped = await e.invalidate_url("http", "example.com", "/items", fields)
    assert dropped == 2
    assert await e.keys() == ["http://example.com/elsewhere"]


class JoinedReads(SerialisingStore):
    """Every read says it began ``ago`` seconds before it was asked for: what a lookup that joins
    another lookup's read of the in-process tier learns (store.tiered)."""

    def __init__(self, ago: float) -> None:
        super().__init__()
        self.ago = ago

    async def variants(self, key: str) -> Read:
        return Read(await super().variants(key), time.time() - self.ago)


class UnansweredClaims(ClaimRecorder):
    """Claims that are recorded and never answered: the test looks at the claim, not the fetch."""

    async def claim(self, key: str, read_at: float) -> bool:
        await super().claim(key, read_at)
        await asyncio.Event().wait()
        return True


async def joined_read_of(fields) -> tuple[Engine, UnansweredClaims, float]:
    """An engine holding a response with ``fields`` whose reads began 2 s before they were asked
    for, claims recorded from now on, and the time the next lookup is asked."""
    e = engine(JoinedReads(ago=2.0))
    assert (await store(e, await lookup(e), fields=fields)).stored
    e.core.coalescer = claims = UnansweredClaims()
    return e, claims, time.time()


async def test_a_refresh_started_from_a_read_it_joined_claims_from_when_that_read_began():
    """Another process may have stored a newer version since the shared read began: counting from
    the lookup's own call would miss it, and refresh once more (shared_coordination.claim)."""
    stale = [(b"cache-control", b"max-age=1"), (b"age", b"5"), (b"content-length", b"4")]
    e, claims, asked = await joined_read_of(stale)
    answer = await lookup(e)
    assert isinstance(answer, Serve) and answer.status.x_cache == XCache.STALE
    await asyncio.sleep(0.05)  # the background refresh gets to its claim
    e.refresher.cancel_all()
    assert len(claims.read_at) == 1 and asked - 2.5 < claims.read_at[0] < asked - 1.5


async def test_a_clients_revalidation_of_a_copy_from_a_joined_read_claims_from_when_that_read_began():
    must_revalidate = [
        (b"cache-control", b"max-age=1, must-revalidate"),
        (b"age", b"5"),
        (b"etag", b'"v1"'),
        (b"content-length", b"4"),
    ]
    e, claims, asked = await joined_read_of(must_revalidate)
    revalidation = asyncio.get_running_loop().create_task(lookup(e))
    await asyncio.sleep(0.05)  # the revalidation gets to its claim
    revalidation.cancel()
    e.refresher.cancel_all()
    assert len(claims.read_at) == 1 and asked - 2.5 < claims.read_at[0] < asked - 1.5


def test_generations_change_with_an_invalidation_of_the_key_or_of_everything():
    bus = LocalGenerations()
    a, b = bus.generation("a"), bus.generation("b")
    bus.invalidate("a")
    assert not bus.current("a", a) and bus.current("b", b)
    b = bus.generation("b")
    bus.invalidate_all()
    assert not bus.current("b", b)


def test_the_generation_table_is_bounded():
    bus = LocalGenerations(max_keys=3)
    before = bus.generation("x")
    for key in ("k1", "k2", "k3", "k4"):
        bus.invalidate(key)
    assert len(bus._keys) <= 3
    assert not bus.current("x", before)  # past the bound: every fetch under way is treated as invalidated


def held(e: Engine, key: str = KEY, may_lead: bool = True, directives=NO_DIRECTIVES):
    return e.lookup_held("GET", key, FIELDS, may_lead, directives, time.monotonic() + 5)


async def test_a_miss_on_a_store_all_held_here_leads_without_an_await():
    e = engine(MemoryStore(2**20, 0))
    forward = held(e)
    assert isinstance(forward, Forward) and forward.leader and forward.fwd == "uri-miss"
    assert e.refreshing(KEY)
    assert (await store(e, forward)).stored
    hit = held(e)
    assert isinstance(hit, Serve) and hit.status.x_cache == XCache.HIT


async def test_a_miss_that_may_not_lead_goes_upstream_without_an_await():
    e = engine(MemoryStore(2**20, 0))
    forward = held(e, may_lead=False)  # a HEAD or a Range request: its answer is not stored
    assert isinstance(forward, Forward) and not forward.leader and not e.refreshing(KEY)


async def test_only_if_cached_with_nothing_held_is_refused_without_an_await():
    e = engine(MemoryStore(2**20, 0))
    refused = held(e, directives=request_directives(["only-if-cached"], []))
    assert isinstance(refused, Refuse) and refused.code == 504


async def test_a_request_for_a_key_being_fetched_is_left_to_the_lookup_that_waits():
    e = engine(MemoryStore(2**20, 0))
    assert isinstance(held(e), Forward)
    assert held(e) is None  # it waits for the fetch under way: ``lookup`` does


async def test_a_store_shared_with_others_is_always_asked():
    e = engine()  # hands out copies, as a networked store does: what is held here is not all
    assert held(e) is None


async def test_a_coalescer_whose_claims_must_be_made_is_always_asked():
    e = engine(MemoryStore(2**20, 0))
    e.core.coalescer = ClaimRecorder()
    assert held(e) is None
