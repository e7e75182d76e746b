"""The lifecycle policy: how long a stored copy is kept, what happens at its check time, and the
steps of a request."""

import pytest

from mitmcache.entry import Meta
from mitmcache.policy.lifecycle import (
    Action,
    Lifecycle,
    RefreshMode,
    Step,
    at_check,
    first_check,
    keep_until,
    wants_refresh,
    with_entry,
    without_entry,
)
from mitmcache.policy.reuse import Use
from tests.support.entries import stored_entry

RULES = Lifecycle(
    refresh_window=60,
    refresh_ahead=0,
    refresh_mode=RefreshMode.ON_REQUEST,
    stale_if_error=300,
    keep_stale=3600,
    pure_rfc=False,
)
EXPIRES = 1000.0  # stored_entry: response_time 940, lifetime 60


def entry(**fields):
    return stored_entry("http://h/a", response_time=EXPIRES - 60, **fields)


def rules(**changes) -> Lifecycle:
    return Lifecycle(**{**{f: getattr(RULES, f) for f in RULES.__slots__}, **changes})


@pytest.mark.parametrize(
    ("fields", "changes", "kept_for"),
    [
        ({}, {}, 300),  # the operator's stale-if-error
        ({"upstream_etag": '"v"'}, {}, 3600),  # validators: kept for revalidation
        ({"last_modified": "Tue, 01 Jan 2030 00:00:00 GMT"}, {"keep_stale": 10}, 300),
        ({"stale_while_revalidate": 900.0}, {}, 900),  # the upstream's own allowance
        ({"stale_if_error": 5000.0}, {}, 5000),
        ({}, {"refresh_window": 400, "stale_if_error": 0}, 400),
        ({}, {"refresh_window": 0, "stale_if_error": 0}, 0),
    ],
)
def test_a_copy_is_kept_past_expiry_for_the_longest_allowance(fields, changes, kept_for):
    assert keep_until(entry(**fields), rules(**changes)) == EXPIRES + kept_for


def test_a_response_that_arrived_stale_is_kept_from_its_arrival():
    arrived_stale = entry(initial_age=500.0, upstream_etag='"v"')
    assert keep_until(arrived_stale, RULES) == arrived_stale.response_time + 3600


def test_the_first_check_is_at_expiry_or_ahead_of_it():
    assert first_check(entry(), 5000, RULES, jitter=1.0) == EXPIRES
    assert first_check(entry(), 5000, rules(refresh_ahead=10), jitter=0.8) == EXPIRES - 8


def test_on_request_a_refresh_needs_a_request_since_the_copy_was_stored():
    assert not wants_refresh(Meta(stored_at=900, last_access=900), 1000, RULES)
    assert wants_refresh(Meta(stored_at=900, last_access=950), 1000, RULES)


def test_continuous_a_request_within_the_window_is_enough():
    asked_before_the_store = Meta(stored_at=960, last_access=950)
    assert wants_refresh(asked_before_the_store, 1000, rules(refresh_mode=RefreshMode.CONTINUOUS))
    assert not wants_refresh(
        asked_before_the_store, 1000, rules(refresh_mode=RefreshMode.CONTINUOUS, refresh_window=40)
    )
    assert not wants_refresh(asked_before_the_store, 1000, RULES)


def test_at_the_end_of_its_lifetime_a_copy_is_dropped():
    assert at_check(entry(), Meta(stored_at=940, last_access=990), 1300, 1300, RULES).action is Action.DROP


def test_at_expiry_a_copy_asked_for_is_refreshed_and_looked_at_again_a_second_later():
    check = at_check(entry(), Meta(stored_at=940, last_access=990), 1300, EXPIRES, RULES)
    assert (check.action, check.when, check.ahead) == (Action.REFRESH, EXPIRES + 1, False)


def test_a_refresh_that_failed_waits_for_its_backoff():
    meta = Meta(stored_at=940, last_access=990, refresh_failures=1, retry_at=EXPIRES + 5)
    check = at_check(entry(), meta, 1300, EXPIRES, RULES)
    assert (check.action, check.when) == (Action.WAIT, EXPIRES + 5)


def test_a_copy_not_asked_for_waits_for_the_end_of_its_lifetime():
    check = at_check(entry(), Meta(stored_at=940, last_access=940), 1300, EXPIRES, RULES)
    assert (check.action, check.when) == (Action.WAIT, 1300)


def test_an_entry_that_varies_on_credentials_is_never_refreshed_in_the_background():
    cookie = entry(vary=(("cookie", "a=1"),))
    assert at_check(cookie, Meta(stored_at=940, last_access=990), 1300, EXPIRES, RULES).action is Action.WAIT


def test_pure_rfc_mode_refreshes_only_ahead_when_asked_to():
    meta = Meta(stored_at=940, last_access=990)
    assert at_check(entry(), meta, 1300, EXPIRES, rules(pure_rfc=True)).action is Action.WAIT
    assert at_check(entry(), meta, 1300, EXPIRES - 1, rules(pure_rfc=True, refresh_ahead=2)).ahead


@pytest.mark.parametrize(
    ("use", "only_if_cached", "head", "busy", "step"),
    [
        (Use.FRESH, False, False, False, Step.SERVE),
        (Use.STALE, False, False, False, Step.SERVE_STALE),
        (Use.REVALIDATE, True, False, False, Step.REFUSE),
        (Use.REVALIDATE, False, True, False, Step.FORWARD_HEAD),
        (Use.REVALIDATE, False, True, True, Step.REVALIDATE),
        (Use.REVALIDATE, False, False, False, Step.REVALIDATE),
    ],
)
def test_the_step_after_finding_a_stored_copy(use, only_if_cached, head, busy, step):
    assert with_entry(use, only_if_cached=only_if_cached, head=head, busy=busy) is step


@pytest.mark.parametrize(
    ("only_if_cached", "hit_for_miss", "may_lead", "busy", "step"),
    [
        (True, False, True, False, Step.REFUSE),
        (False, True, True, True, Step.FORWARD),
        (False, False, True, False, Step.LEAD),
        (False, False, True, True, Step.WAIT),
        (False, False, False, True, Step.WAIT),
        (False, False, False, False, Step.FORWARD),
    ],
)
def test_the_step_after_finding_nothing(only_if_cached, hit_for_miss, may_lead, busy, step):
    assert (
        without_entry(only_if_cached=only_if_cached, hit_for_miss=hit_for_miss, may_lead=may_lead, busy=busy)
        is step
    )
