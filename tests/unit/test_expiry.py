"""What the expiry schedule does at expiry, in pure RFC 9111 mode and with a configured lifetime."""

from collections import Counter

import pytest

from mitmcache import config
from mitmcache.entry import Entry
from mitmcache.expiry import ExpiryScheduler
from mitmcache.policy.storable import Rules, admit
from mitmcache.store.memory import MemoryStore

STORED_AT = 1_700_000_000.0


class FakeRefresher:
    def __init__(self) -> None:
        self.started: list[Entry] = []

    def start(self, entry: Entry) -> bool:
        self.started.append(entry)
        return True


def settings(**changes: str) -> config.Settings:
    raw = {s.option: s.default for s in config.SETTINGS} | changes
    return config.parse_settings(raw)


def entry(cache_control: str = "max-age=10", *, etag: bool = True) -> Entry:
    fields = [(b"cache-control", cache_control.encode())] + ([(b"etag", b'"v1"')] if etag else [])
    made = admit(
        key="http://example.com/r",
        url="http://example.com/r",
        host="example.com",
        method="GET",
        request_fields=[],
        status=200,
        reason=b"OK",
        response_fields=fields,
        body=b"body",
        request_time=STORED_AT,
        response_time=STORED_AT,
        rules=Rules(default_ttl=0, override=False),
    )
    assert isinstance(made, Entry), made
    return made


async def at_expiry(stored: Entry, now: float, **changes: str) -> tuple[FakeRefresher, bool]:
    """Store ``stored``, run the schedule at ``now``; the refresher and whether the entry is kept."""
    store = MemoryStore(2**30, 0)
    refresher = FakeRefresher()
    scheduler = ExpiryScheduler(store, refresher, lambda: settings(**changes), Counter())  # type: ignore[arg-type]
    await store.put(stored)
    scheduler.track(stored)
    await scheduler.run_due(now)
    return refresher, any(e is stored for e in await store.peek(stored.key))


async def test_pure_rfc_mode_fetches_nothing_no_client_asked_for():
    """RFC 9111 (pure mode, cache_ttl 0): a hot entry is not refreshed in the background at expiry;
    with validators it is kept for the next client to revalidate (§4.3)."""
    refresher, kept = await at_expiry(entry(), STORED_AT + 11, cache_ttl="0")
    assert (refresher.started, kept) == ([], True)


async def test_with_a_configured_lifetime_hot_entries_are_refreshed():
    """The seed's refresh window: a key asked for within it is refreshed at expiry."""
    stored = entry()
    refresher, kept = await at_expiry(stored, STORED_AT + 11, cache_ttl="60")
    assert (refresher.started, kept) == ([stored], True)


async def test_refresh_ahead_is_honoured_in_pure_mode():
    """Refreshing ahead is an explicit opt-in, so it still runs in pure RFC mode."""
    stored = entry()
    refresher, _ = await at_expiry(stored, STORED_AT + 11, cache_ttl="0", cache_refresh_ahead="1")
    assert refresher.started == [stored]


@pytest.mark.parametrize("cache_control", ["max-age=0", "max-age=30, no-cache"])
async def test_entries_that_are_never_fresh_are_not_refreshed_at_every_expiry(cache_control):
    """An entry revalidated on every use (max-age=0, no-cache) gains nothing from a background
    refresh, which would otherwise repeat at each of its (immediate) expiries."""
    stored = entry(cache_control)
    refresher, kept = await at_expiry(stored, STORED_AT + 31, cache_ttl="60")
    assert (refresher.started, kept) == ([], True)


async def test_a_cold_entry_is_dropped_at_expiry():
    """Nobody asked for it within the refresh window: it goes."""
    refresher, kept = await at_expiry(entry(), STORED_AT + 100, cache_ttl="0", cache_refresh_window="5")
    assert (refresher.started, kept) == ([], False)


async def test_a_cold_entry_stays_while_the_upstream_lets_it_be_served_stale():
    """RFC 5861: within stale-if-error (or stale-while-revalidate) a stale entry is still of use."""
    stored = entry("max-age=10, stale-if-error=300", etag=False)
    _, kept = await at_expiry(stored, STORED_AT + 100, cache_ttl="0", cache_refresh_window="5")
    assert kept


def scheduler_with_store(max_entries: int) -> tuple[ExpiryScheduler, MemoryStore]:
    store = MemoryStore(2**30, max_entries)
    return ExpiryScheduler(store, FakeRefresher(), settings, Counter()), store  # type: ignore[arg-type]


def entry_at(path: str) -> Entry:
    made = entry()
    made.key = made.url = f"http://example.com/{path}"
    return made


async def test_entries_evicted_before_their_expiry_are_swept_from_the_schedule():
    """A flood of keys that are evicted long before they expire must not grow the schedule."""
    scheduler, store = scheduler_with_store(max_entries=3)
    for i in range(10):
        stored = entry_at(str(i))
        await store.put(stored)
        scheduler.track(stored)
    await scheduler.compact(slack=0)
    assert len(scheduler) == 3  # only what is still stored


async def test_a_replaced_entry_is_not_handled_at_the_old_ones_expiry():
    scheduler, store = scheduler_with_store(max_entries=0)
    old = entry()
    await store.put(old)
    scheduler.track(old)
    new = entry()
    new.response_time = old.response_time + 5  # the refreshed version, stored later
    await store.put(new)
    await scheduler.run_due(STORED_AT + 11)  # the old version's expiry
    assert [e is new for e in await store.peek(new.key)] == [True]  # not dropped as cold
