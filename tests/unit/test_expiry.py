"""What the expiry schedule does when an entry's check time comes, in pure RFC 9111 mode and with a
configured lifetime, on request and continuous; driven by what the store holds."""

import time

import pytest

from mitmcache import config
from mitmcache.core import Core
from mitmcache.entry import Entry, Meta, Stored
from mitmcache.expiry import ExpiryScheduler
from mitmcache.policy.storable import Rules, admit
from mitmcache.upstream import Upstream
from tests.support.serialising_store import SerialisingStore

STORED_AT = 0.0  # each test's own "now" (stores drop what is past its lifetime by the clock)


@pytest.fixture(autouse=True)
def recent() -> None:
    global STORED_AT
    STORED_AT = time.time()


class FakeRefresher:
    def __init__(self) -> None:
        self.started: list[Entry] = []

    def start(self, stored: Stored, read_at: float) -> bool:
        self.started.append(stored.entry)
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


def parts(**changes: str) -> tuple[Core, FakeRefresher, ExpiryScheduler]:
    current = settings(**changes)
    core = Core(lambda: current, SerialisingStore(), Upstream())
    refresher = FakeRefresher()
    return core, refresher, ExpiryScheduler(core, refresher)  # type: ignore[arg-type]


async def at(
    stored: Entry, now: float, *, asked: float | None = 1.0, **changes: str
) -> tuple[FakeRefresher, bool]:
    """Store ``stored`` (a client last asked for it ``asked`` seconds after it was stored; None: not
    since), run the schedule at ``now``; the refresher, and whether the entry is still stored."""
    core, refresher, scheduler = parts(**changes)
    meta = Meta(stored_at=STORED_AT, last_access=STORED_AT + (asked or 0.0))
    await core.write(stored, meta)
    await scheduler.run_due(now)
    return refresher, any(s.entry.version == stored.version for s in await core.store.peek(stored.key))


async def test_pure_rfc_mode_fetches_nothing_no_client_asked_for():
    """RFC 9111 (pure mode, cache_ttl 0): a hot entry is not refreshed in the background at expiry;
    with validators it is kept for the next client to revalidate (§4.3)."""
    refresher, kept = await at(entry(), STORED_AT + 11, cache_ttl="0")
    assert (refresher.started, kept) == ([], True)


async def test_an_entry_asked_for_since_it_was_stored_is_refreshed_once_at_expiry():
    stored = entry()
    refresher, kept = await at(stored, STORED_AT + 12, cache_ttl="60")
    assert (refresher.started, kept) == ([stored], True)


async def test_on_request_an_entry_nobody_asked_for_since_it_was_stored_is_not_refreshed():
    """CACHE_REFRESH_MODE=on-request: the miss that stored it is no request for a refresh."""
    refresher, kept = await at(entry(), STORED_AT + 11, asked=None, cache_ttl="60")
    assert (refresher.started, kept) == ([], True)


async def test_continuous_refreshes_an_entry_asked_for_within_the_window_at_every_expiry():
    stored = entry()
    refresher, _ = await at(
        stored, STORED_AT + 11, asked=None, cache_ttl="60", cache_refresh_mode="continuous"
    )
    assert refresher.started == [stored]


async def test_refresh_ahead_is_honoured_in_pure_mode():
    """Refreshing ahead is an explicit opt-in, so it still runs in pure RFC mode."""
    stored = entry()
    refresher, _ = await at(stored, STORED_AT + 11, cache_ttl="0", cache_refresh_ahead="1")
    assert refresher.started == [stored]


@pytest.mark.parametrize("cache_control", ["max-age=0", "max-age=30, no-cache"])
async def test_entries_that_are_never_fresh_are_not_refreshed_at_every_expiry(cache_control):
    """An entry revalidated on every use (max-age=0, no-cache) gains nothing from a background
    refresh, which would otherwise repeat at each of its (immediate) expiries."""
    refresher, kept = await at(entry(cache_control), STORED_AT + 31, cache_ttl="60")
    assert (refresher.started, kept) == ([], True)


async def test_a_cold_entry_is_dropped_once_its_stale_allowances_run_out():
    refresher, kept = await at(
        entry(etag=False),
        STORED_AT + 100,
        asked=None,
        cache_ttl="0",
        cache_refresh_window="5",
        cache_stale_if_error="30",
    )
    assert (refresher.started, kept) == ([], False)


async def test_a_cold_entry_stays_while_the_upstream_lets_it_be_served_stale():
    """RFC 5861: within stale-if-error (or stale-while-revalidate) a stale entry is still of use."""
    stored = entry("max-age=10, stale-if-error=300", etag=False)
    _, kept = await at(
        stored, STORED_AT + 100, asked=None, cache_ttl="0", cache_refresh_window="5", cache_stale_if_error="0"
    )
    assert kept


async def test_a_cold_entry_stays_within_the_operators_stale_if_error():
    """An upstream that cannot be reached may be stood in for by the stored copy (RFC 9111 §4.2.4)."""
    _, kept = await at(
        entry(etag=False), STORED_AT + 100, asked=None, cache_ttl="0", cache_refresh_window="0"
    )
    assert kept  # CACHE_STALE_IF_ERROR_SECS: 300 by default


async def test_an_entry_with_validators_is_kept_for_revalidation_without_a_refresh_window():
    _, kept = await at(
        entry(),
        STORED_AT + 1000,
        asked=None,
        cache_refresh_window="0",
        cache_stale_if_error="0",
        cache_keep_stale="3600",
    )
    assert kept


async def test_an_entry_with_validators_goes_after_the_keep_time():
    _, kept = await at(
        entry(),
        STORED_AT + 100,
        asked=None,
        cache_refresh_window="0",
        cache_stale_if_error="0",
        cache_keep_stale="60",
    )
    assert not kept


async def test_a_replaced_entry_is_not_handled_at_the_old_ones_check_time():
    core, _, scheduler = parts(
        cache_ttl="0", cache_refresh_window="0", cache_stale_if_error="0", cache_keep_stale="0"
    )
    old = entry(etag=False)
    await core.write(old, Meta(stored_at=STORED_AT))
    new = entry("max-age=100", etag=False)  # the refreshed version, stored later
    await core.write(new, Meta(stored_at=STORED_AT + 5))
    await scheduler.run_due(STORED_AT + 11)  # past the old version's lifetime
    assert [s.entry.version for s in await core.store.peek(new.key)] == [new.version]


async def test_uses_written_behind_reach_the_store_before_the_schedule_is_read():
    core, refresher, scheduler = parts(cache_ttl="60")
    stored = entry()
    await core.write(stored, Meta(stored_at=STORED_AT, last_access=STORED_AT))
    (found,) = await core.store.peek(stored.key)
    core.note_use(found, STORED_AT + 2, hit=True)  # a hit: no await
    core.note_use(found, STORED_AT + 3, hit=False)  # a waiter answered from it: a use, not a hit
    await scheduler.run_due(STORED_AT + 11)
    assert refresher.started == [stored]
    (seen,) = await core.store.peek(stored.key)
    assert (seen.meta.hits, seen.meta.last_access) == (1, STORED_AT + 3)
