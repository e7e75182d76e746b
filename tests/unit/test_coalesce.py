"""One upstream fetch per key (Inflight) and the hit-for-miss memory (HitForMiss)."""

import asyncio

import pytest

from mitmcache.coalesce import KEY_OVERHEAD, HitForMiss, Inflight, Kind, Outcome

KEY = "http://example.com/a"
STORED = Outcome(Kind.STORED, detail="stored")
NOW = 1_700_000_000.0


async def test_the_first_to_ask_leads_and_the_others_find_it_busy():
    inflight = Inflight()
    assert not inflight.busy(KEY)
    assert inflight.lead(KEY) is True
    assert inflight.busy(KEY) and len(inflight) == 1
    assert inflight.lead(KEY) is False
    assert inflight.lead("other") is True


async def test_every_waiter_gets_the_leaders_outcome_and_the_key_is_freed():
    inflight = Inflight()
    inflight.lead(KEY)
    waiters = [asyncio.create_task(inflight.wait(KEY, 5)) for _ in range(3)]
    await asyncio.sleep(0)
    inflight.finish(KEY, STORED)
    assert await asyncio.gather(*waiters) == [STORED] * 3
    assert not inflight.busy(KEY) and len(inflight) == 0
    assert inflight.lead(KEY) is True


async def test_waiting_without_a_fetch_under_way_is_abandoned():
    assert await Inflight().wait(KEY, 5) == Outcome(Kind.ABANDONED)


async def test_finishing_an_unknown_key_is_harmless():
    inflight = Inflight()
    inflight.finish(KEY, STORED)
    assert len(inflight) == 0


async def test_a_waiter_that_times_out_gets_none_and_the_others_still_get_the_outcome():
    inflight = Inflight()
    inflight.lead(KEY)
    patient = asyncio.create_task(inflight.wait(KEY, 5))
    assert await inflight.wait(KEY, 0.01) is None
    assert inflight.busy(KEY)
    inflight.finish(KEY, STORED)
    assert await patient == STORED


@pytest.mark.parametrize("timeout", [0, -1])
async def test_a_zero_or_negative_timeout_returns_at_once(timeout):
    inflight = Inflight()
    inflight.lead(KEY)
    assert await inflight.wait(KEY, timeout) is None
    assert inflight.busy(KEY)


async def test_a_cancelled_waiter_does_not_cancel_the_fetch_for_the_others():
    inflight = Inflight()
    inflight.lead(KEY)
    leaving = asyncio.create_task(inflight.wait(KEY, 5))
    staying = asyncio.create_task(inflight.wait(KEY, 5))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    inflight.finish(KEY, STORED)
    assert await staying == STORED


# ---- hit-for-miss ----


@pytest.mark.parametrize(("after", "active"), [(0, True), (29.9, True), (30, False), (31, False)])
def test_hit_for_miss_lasts_the_given_seconds(after, active):
    memory = HitForMiss()
    memory.remember(KEY, NOW, 30)
    assert memory.active(KEY, NOW + after) is active


def test_hit_for_miss_forget_and_unknown_keys():
    memory = HitForMiss()
    assert memory.active(KEY, NOW) is False
    memory.remember(KEY, NOW, 30)
    memory.forget(KEY)
    memory.forget(KEY)
    assert memory.active(KEY, NOW) is False


def test_remembering_again_extends():
    memory = HitForMiss()
    memory.remember(KEY, NOW, 30)
    memory.remember(KEY, NOW + 20, 30)
    assert memory.active(KEY, NOW + 40) is True


def test_at_the_limit_expired_keys_make_room_first():
    memory = HitForMiss(limit=3)
    memory.remember("old", NOW, 1)
    memory.remember("a", NOW, 60)
    memory.remember("b", NOW, 60)
    memory.remember("c", NOW + 10, 60)
    assert [memory.active(k, NOW + 10) for k in ("old", "a", "b", "c")] == [False, True, True, True]


def test_at_the_limit_with_nothing_expired_the_oldest_key_is_forgotten():
    """Forgetting is safe: a forgotten key only waits behind a fetch once more."""
    memory = HitForMiss(limit=2)
    memory.remember("a", NOW, 60)
    memory.remember("b", NOW, 60)
    memory.remember("c", NOW, 60)
    assert [memory.active(k, NOW) for k in ("a", "b", "c")] == [False, True, True]


def test_keys_are_bounded_by_the_bytes_they_take():
    memory = HitForMiss(max_bytes=3 * (1000 + KEY_OVERHEAD))
    keys = [f"{i}" * 1000 for i in range(5)]
    for key in keys:
        memory.remember(key, NOW, 60)
    assert [memory.active(k, NOW) for k in keys] == [False, False, True, True, True]
    assert memory.bytes <= 3 * (1000 + KEY_OVERHEAD)


def test_a_smaller_bound_forgets_the_oldest_at_once():
    memory = HitForMiss()
    for key in ("a", "b", "c"):
        memory.remember(key, NOW, 60)
    memory.bound(KEY_OVERHEAD + 1)
    assert len(memory) == 1 and memory.active("c", NOW)


def test_keys_that_ran_out_are_swept_without_being_asked_for():
    memory = HitForMiss()
    memory.remember("a", NOW, 10)
    memory.remember("b", NOW + 5, 10)
    memory.sweep(NOW + 12)
    assert len(memory) == 1
    assert memory.bytes == 1 + KEY_OVERHEAD
    memory.sweep(NOW + 20)
    assert len(memory) == 0 and memory.bytes == 0
