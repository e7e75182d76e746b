"""The queue store contract, run against both stores: SQLite on a real file, PostgreSQL on a real
server (a database of the test's own)."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mitmcache.writequeue.job import NewJob, State
from mitmcache.writequeue.postgres_store import PostgresStore
from mitmcache.writequeue.sqlite_store import SQLiteStore
from mitmcache.writequeue.store import (
    Accepted,
    Change,
    KeyReused,
    QueueFull,
    QueueStore,
    StoreUnavailable,
    gather_more,
    needs_exact_count,
)
from tests.support import postgres

LEASE = 30.0


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    for url, _ in postgres.database():
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueStore]:
    if request.param == "sqlite":
        opened: QueueStore = SQLiteStore(tmp_path / "queue.db")
    else:
        url = request.getfixturevalue("pg_url")
        opened = PostgresStore(url, 4)
    await opened.open()
    if request.param == "postgresql":
        async with opened._transaction() as conn:  # type: ignore[attr-defined]
            await conn.execute("TRUNCATE mitmcache_jobs")
    yield opened
    await opened.close()


def job(n: int = 0, key: str | None = None, body: bytes = b"x", url: str = "http://up:80/e") -> NewJob:
    return NewJob(
        id=str(uuid.uuid4()),
        method="POST",
        url=f"{url}?n={n}" if url.endswith("/e") else url,
        target=f"/e?n={n}",
        fields=[("Content-Type", "text/plain"), ("X-Odd", "\xe9")],
        body=body,
        idempotency_key=key,
        fingerprint=f"fp-{body!r}",
        accepted_at=time.time(),
    )


async def test_an_accepted_job_reads_back_queued_with_everything_kept(store):
    new = job(1, body=b"\x00\xffbody")
    accepted = await store.accept(new, 10)
    got = await store.get(accepted.id, time.time())
    assert accepted.duplicate is False and got is not None
    assert (got.state, got.method, got.url, got.fields, got.body) == (
        State.QUEUED,
        "POST",
        new.url,
        new.fields,
        b"\x00\xffbody",
    )


async def test_a_repeated_idempotency_key_with_the_same_request_returns_the_first_id(store):
    first = await store.accept(job(1, key="k1"), 10)
    again = await store.accept(job(1, key="k1"), 10)
    assert again.id == first.id and again.duplicate
    assert (await store.counts(time.time(), 10)).queued == 1


async def test_a_repeated_idempotency_key_with_another_body_is_refused(store):
    await store.accept(job(1, key="k2", body=b"a"), 10)
    with pytest.raises(KeyReused):
        await store.accept(job(1, key="k2", body=b"b"), 10)


async def test_a_full_queue_refuses_and_keeps_what_it_has(store):
    await store.accept(job(1), 2)
    await store.accept(job(2), 2)
    with pytest.raises(QueueFull):
        await store.accept(job(3), 2)
    assert (await store.counts(time.time(), 10)).queued == 2


async def test_a_job_delivered_between_pending_ones_frees_its_place_in_a_full_queue(store):
    """The pending jobs span three places but are two: the third place is free."""
    _, second, _ = [(await store.accept(job(n), 3)).id for n in range(3)]
    now = time.time()
    await store.lease("a", 3, now, now + LEASE, ordered=False)
    assert await store.finish("a", second, State.DELIVERED, 200, None, now)
    await store.accept(job(4), 3)
    with pytest.raises(QueueFull):
        await store.accept(job(5), 3)
    counts = await store.counts(now, 10)
    assert (counts.queued, counts.delivering, counts.delivered) == (1, 2, 1)


async def test_acceptances_arriving_together_are_all_committed(store):
    results = await asyncio.gather(*(store.accept(job(n), 1000) for n in range(200)))
    assert len({r.id for r in results}) == 200
    assert (await store.counts(time.time(), 10)).queued == 200


async def test_a_lease_takes_due_jobs_in_order_once(store):
    ids = [(await store.accept(job(n), 10)).id for n in range(3)]
    now = time.time()
    leased = await store.lease("a", 2, now, now + LEASE, ordered=False)
    assert [j.id for j in leased] == ids[:2] and all(j.attempts == 1 for j in leased)
    rest = await store.lease("b", 5, now, now + LEASE, ordered=False)
    assert [j.id for j in rest] == ids[2:]


async def test_an_expired_lease_is_taken_over(store):
    accepted = await store.accept(job(1), 10)
    now = time.time()
    await store.lease("dead-process", 1, now, now + 1, ordered=False)
    assert await store.lease("b", 1, now + 0.5, now + LEASE, ordered=False) == []
    taken = await store.lease("b", 1, now + 2, now + LEASE, ordered=False)
    assert [j.id for j in taken] == [accepted.id] and taken[0].attempts == 2
    assert not await store.finish("dead-process", accepted.id, State.DELIVERED, 200, None, now + 3)


async def test_a_renewed_lease_is_not_taken_over(store):
    accepted = await store.accept(job(1), 10)
    now = time.time()
    await store.lease("a", 1, now, now + 1, ordered=False)
    await store.renew("a", [accepted.id], now + 100)
    assert await store.lease("b", 1, now + 2, now + LEASE, ordered=False) == []


async def test_finishing_records_the_outcome(store):
    accepted = await store.accept(job(1), 10)
    now = time.time()
    await store.lease("a", 1, now, now + LEASE, ordered=False)
    assert await store.finish("a", accepted.id, State.DELIVERED, 201, None, now)
    got = await store.get(accepted.id, now)
    assert (got.state, got.last_status, got.delivered_at) == (State.DELIVERED, 201, now)
    counts = await store.counts(now, 10)
    assert (counts.delivered, counts.queued, counts.delivered_recently) == (1, 0, 1)


async def test_a_postponed_job_waits_for_its_time(store):
    accepted = await store.accept(job(1), 10)
    now = time.time()
    await store.lease("a", 1, now, now + LEASE, ordered=False)
    assert await store.postpone("a", accepted.id, now + 5, 503, None)
    assert await store.lease("a", 1, now + 1, now + LEASE, ordered=False) == []
    assert [j.id for j in await store.lease("a", 1, now + 6, now + LEASE, ordered=False)] == [accepted.id]


async def test_ordered_leases_hold_later_jobs_of_a_url_behind_an_earlier_one(store):
    first = await store.accept(job(url="http://up:80/same"), 10)
    second = await store.accept(job(url="http://up:80/same"), 10)
    other = await store.accept(job(url="http://up:80/other"), 10)
    now = time.time()
    leased = await store.lease("a", 10, now, now + LEASE, ordered=True)
    assert [j.id for j in leased] == [first.id, other.id]
    await store.postpone("a", first.id, now + 5, 503, None)  # being retried: still blocks
    assert await store.lease("a", 10, now + 1, now + LEASE, ordered=True) == []
    leased = await store.lease("a", 10, now + 6, now + LEASE, ordered=True)
    await store.finish("a", first.id, State.DEAD, 400, None, now + 6)  # dead: no longer blocks
    assert [j.id for j in await store.lease("a", 10, now + 6, now + LEASE, ordered=True)] == [second.id]


async def test_only_a_dead_job_can_be_requeued(store):
    accepted = await store.accept(job(1), 10)
    now = time.time()
    assert await store.requeue(accepted.id, now) is Change.CONFLICT
    assert await store.requeue("no-such-id", now) is Change.NOT_FOUND
    await store.lease("a", 1, now, now + LEASE, ordered=False)
    await store.finish("a", accepted.id, State.DEAD, 400, None, now)
    assert await store.requeue(accepted.id, now) is Change.DONE
    got = await store.get(accepted.id, now)
    assert (got.state, got.attempts) == (State.QUEUED, 0)


async def test_every_dead_job_can_be_requeued_at_once(store):
    for n in range(3):
        await store.accept(job(n), 10)
    now = time.time()
    for leased in await store.lease("a", 3, now, now + LEASE, ordered=False):
        await store.finish("a", leased.id, State.DEAD, 400, None, now)
    assert await store.requeue_dead(now) == 3
    assert (await store.counts(now, 10)).queued == 3


async def test_a_job_being_delivered_cannot_be_deleted(store):
    accepted = await store.accept(job(1), 10)
    now = time.time()
    await store.lease("a", 1, now, now + LEASE, ordered=False)
    assert await store.delete(accepted.id, now) is Change.CONFLICT
    await store.release("a", [accepted.id])
    assert await store.delete(accepted.id, now) is Change.DONE
    assert await store.get(accepted.id, now) is None


async def test_a_released_job_is_queued_again_without_counting_the_attempt(store):
    accepted = await store.accept(job(1), 10)
    now = time.time()
    await store.lease("a", 1, now, now + LEASE, ordered=False)
    await store.release("a", [accepted.id])
    got = await store.get(accepted.id, now)
    assert (got.state, got.attempts) == (State.QUEUED, 0)


async def test_pruning_drops_finished_jobs_and_frees_their_keys(store):
    old = await store.accept(job(1, key="old"), 10)
    await store.accept(job(2), 10)
    now = time.time()
    await store.lease("a", 1, now, now + LEASE, ordered=False)
    await store.finish("a", old.id, State.DELIVERED, 200, None, now - 100)
    assert await store.prune(now - 50) == 1
    assert (await store.accept(job(1, key="old"), 10)).duplicate is False
    assert (await store.counts(now, 10)).queued == 2


async def test_a_job_leased_by_a_dead_process_counts_as_queued(store):
    new = job(1)
    accepted = await store.accept(new, 10)
    now = time.time()
    await store.lease("gone", 1, now, now + 1, ordered=False)
    assert (await store.get(accepted.id, now + 2)).state is State.QUEUED
    counts = await store.counts(now + 2, 10)
    assert (counts.queued, counts.delivering, counts.oldest_queued_at) == (1, 0, new.accepted_at)


async def test_postgresql_leases_of_two_proxies_never_overlap(pg_url):
    a, b = PostgresStore(pg_url, 4), PostgresStore(pg_url, 4)
    await a.open()
    await b.open()
    try:
        async with a._transaction() as conn:
            await conn.execute("TRUNCATE mitmcache_jobs")
        for n in range(100):
            await a.accept(job(n), 1000)
        now = time.time()
        taken: list[str] = []
        for _ in range(10):
            batches = await asyncio.gather(
                a.lease("a", 7, now, now + LEASE, False), b.lease("b", 7, now, now + LEASE, False)
            )
            taken += [j.id for batch in batches for j in batch]
        assert len(taken) == len(set(taken)) == 100
    finally:
        await a.close()
        await b.close()


class _HeldCommits:
    """``PostgresStore._commit`` with the first commit held until ``release``."""

    def __init__(self, store: PostgresStore, commit=None) -> None:
        self._commit = commit or store._commit
        self._gate = asyncio.Event()
        self.started: list[int] = []  # each commit's batch size, in the order they started
        self.held = True

    async def __call__(self, batch, in_flight=0):
        first = not self.started
        self.started.append(len(batch))
        if first and self.held:
            await self._gate.wait()
        return await self._commit(batch, in_flight)

    def release(self) -> None:
        self._gate.set()


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def test_postgresql_commits_the_next_acceptances_while_a_commit_is_under_way():
    """A commit waiting for PostgreSQL does not hold back the acceptances that arrive meanwhile."""
    store = PostgresStore("postgresql://unused", 4)
    accepted = []

    async def commit(batch, in_flight):
        accepted.extend(j.id for j, _, _ in batch)
        return [Accepted(j.id, False) for j, _, _ in batch]

    held = store._commit = _HeldCommits(store, commit)
    first = asyncio.ensure_future(store.accept(job(1), 10))
    await _until(lambda: held.started)
    second = await asyncio.wait_for(store.accept(job(2), 10), 5)
    assert not first.done() and accepted == [second.id]
    held.release()
    assert (await first).id in accepted


async def test_postgresql_commits_under_way_together_never_pass_the_queue_bound(pg_url):
    store = PostgresStore(pg_url, 4)
    await store.open()
    try:
        async with store._transaction() as conn:
            await conn.execute("TRUNCATE mitmcache_jobs")
        held = store._commit = _HeldCommits(store)
        first = asyncio.gather(store.accept(job(1), 3), store.accept(job(2), 3))
        await _until(lambda: held.started)
        later = await asyncio.wait_for(
            asyncio.gather(store.accept(job(3), 3), store.accept(job(4), 3), return_exceptions=True), 5
        )
        assert held.started == [2, 2]
        assert isinstance(later[0], Accepted) and isinstance(later[1], QueueFull)
        held.release()
        await first
        assert (await store.counts(time.time(), 10)).queued == 3
    finally:
        store._commit.release()  # a held commit would hold up the close
        await store.close()


async def test_postgresql_a_commit_that_fails_unexpectedly_refuses_its_acceptances():
    store = PostgresStore("postgresql://unused", 4)

    async def commit(batch, in_flight):
        raise RuntimeError("a fault")

    store._commit = commit
    with pytest.raises(StoreUnavailable, match="RuntimeError: a fault"):
        await asyncio.wait_for(store.accept(job(1), 10), 5)


def test_a_commit_waits_for_more_while_it_carries_fewer_than_lately_wrote_at_once():
    assert gather_more(accepts=2, expected=16)


def test_a_commit_carrying_every_write_lately_on_its_way_does_not_wait():
    assert not gather_more(accepts=4, expected=4)
    assert not gather_more(accepts=1, expected=0)


def test_pending_jobs_are_counted_only_when_their_bound_leaves_no_room_for_the_batch():
    assert not needs_exact_count(bound=90, batch=10, max_queued=100)
    assert needs_exact_count(bound=91, batch=10, max_queued=100)
