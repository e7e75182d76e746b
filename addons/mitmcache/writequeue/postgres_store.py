"""The queue in PostgreSQL: one queue shared by several proxies (asyncproxy's model).

Each job is delivered by exactly one proxy: leasing takes due rows with ``FOR UPDATE SKIP LOCKED``
(no two transactions take the same row, none waits for another's), and a lease that outlives its
owner's process expires and is taken over. An acceptance ``NOTIFY``s the other proxies, which also
poll, so a lost notification delays a delivery by at most one poll. Acceptances that arrive together
(within a short gathering delay) are committed together (group commit), and up to
``COMMITS_IN_FLIGHT`` such commits run at once, each on its own pooled connection: while one waits
for PostgreSQL to make it durable, the acceptances that arrived meanwhile are committed beside it
instead of behind it.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from .job import Job, NewJob, State
from .postgres_table import (
    CHANNEL,
    DUE,
    IN_ORDER,
    INSERT,
    PENDING_BOUND,
    PENDING_COUNT,
    REQUEUE,
    SCHEMA,
    TABLE,
)
from .store import (
    COMMIT_DELAY_SECONDS,
    Accepted,
    Change,
    Counts,
    KeyReused,
    QueueFull,
    StoreUnavailable,
    gather_more,
    job_from_row,
    needs_exact_count,
    new_job_values,
    settle,
)

log = logging.getLogger("mitmcache")

CONNECT_TIMEOUT = 5.0
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# Group commits at once. With one, a burst's clients all waited on the same commit while the core
# sat idle (queue-accept: 541 writes/s against a pass-through's 626); with two, 612 against 632.
# Four measured the same on loopback, and would take every spare connection of the pool.
COMMITS_IN_FLIGHT = 2


class PostgresStore:
    def __init__(self, url: str, connections: int, expected: Callable[[], int] = lambda: 0) -> None:
        self._url = url
        self._connections = connections
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._arrived = asyncio.Event()
        self._waiting: list[tuple[NewJob, int, asyncio.Future[Accepted]]] = []
        self._committer: asyncio.Task[None] | None = None  # gathers the waiting ones into commits
        self._commits: set[asyncio.Task[None]] = set()  # commits under way
        self._slots = asyncio.Semaphore(COMMITS_IN_FLIGHT)
        self._in_flight = 0  # acceptances in commits under way: not yet counted by PostgreSQL
        self._more = asyncio.Event()  # an acceptance joined the waiting ones
        self._expected = expected  # the most writes lately on their way at once (arrivals.py)

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=self._connections, timeout=CONNECT_TIMEOUT
            )
            async with self._pool.acquire() as conn, conn.transaction():
                # Proxies starting together must not race to create the table.
                await conn.execute(f"SELECT pg_advisory_xact_lock(hashtext('{TABLE}'))")
                await conn.execute(SCHEMA)
        except _FAILURES as e:
            await self.close()
            raise StoreUnavailable(f"{type(e).__name__}: {e}") from None
        await self._listen()

    async def _listen(self) -> None:
        """Notifications from other proxies; without them (a lost connection) polling still works."""
        try:
            self._listener = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT)
            await self._listener.add_listener(CHANNEL, lambda *_: self._arrived.set())
        except _FAILURES as e:
            log.warning("write queue: no notifications from PostgreSQL (%s); polling", e)
            self._listener = None

    async def close(self) -> None:
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer
        await asyncio.gather(*self._commits, return_exceptions=True)
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(*_FAILURES):
                await listener.close(timeout=2)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (*_FAILURES,):
                pool.terminate()

    @contextlib.asynccontextmanager
    async def _transaction(self, *, single: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in a transaction; ``single``: for one statement, which is atomic on
        its own (no BEGIN and COMMIT round trips)."""
        if self._pool is None:
            raise StoreUnavailable("postgresql: the queue is closed")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                if single:
                    yield conn
                else:
                    async with conn.transaction():
                        yield conn
        except _FAILURES as e:
            raise StoreUnavailable(f"postgresql: {type(e).__name__}: {e}") from None

    # -- acceptance: group commit ------------------------------------------------------------

    async def accept(self, job: NewJob, max_queued: int) -> Accepted:
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, max_queued, future))
        self._more.set()
        if self._committer is None or self._committer.done():
            self._committer = asyncio.get_running_loop().create_task(self._commit_waiting())
        return await future

    async def _commit_waiting(self) -> None:
        """Gather the waiting acceptances into batches, each committed in a task of its own."""
        loop = asyncio.get_running_loop()
        while self._waiting:
            await self._slots.acquire()
            await self._gather()
            batch, self._waiting = self._waiting, []
            commit = loop.create_task(self._commit_batch(batch))
            self._commits.add(commit)
            commit.add_done_callback(self._commits.discard)

    async def _commit_batch(self, batch: list[tuple[NewJob, int, asyncio.Future[Accepted]]]) -> None:
        earlier, self._in_flight = self._in_flight, self._in_flight + len(batch)
        try:
            results: list[Accepted | Exception] = await self._commit(batch, earlier)
        except StoreUnavailable as e:
            results = [e] * len(batch)
        except Exception as e:  # a fault of ours: said once, and no client waits for ever
            log.exception("write queue: a commit failed")
            results = [StoreUnavailable(f"postgresql: commit failed: {type(e).__name__}: {e}")] * len(batch)
        except BaseException:  # cancelled (shutdown)
            for *_, future in batch:
                future.cancel()
            raise
        finally:
            self._in_flight -= len(batch)
            self._slots.release()
        for (_, _, future), result in zip(batch, results, strict=True):
            settle(future, result)

    async def _gather(self) -> None:
        """Hold the commit for the acceptances on their way (``store.gather_more``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COMMIT_DELAY_SECONDS
        while gather_more(len(self._waiting), self._expected()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._more.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._more.wait(), remaining)

    async def _commit(
        self, batch: list[tuple[NewJob, int, asyncio.Future[Accepted]]], in_flight: int
    ) -> list[Accepted | Exception]:
        """``in_flight``: acceptances of the other commits under way, unseen by this transaction:
        counted as pending, so that commits together never pass ``ASYNC_MAX_QUEUED``."""
        async with self._transaction() as conn:
            pending = await conn.fetchval(PENDING_BOUND) + in_flight
            if needs_exact_count(pending, len(batch), min(max_queued for _, max_queued, _ in batch)):
                pending = await conn.fetchval(PENDING_COUNT) + in_flight
            results: list[Accepted | Exception] = []
            plain: list[tuple[Any, ...]] = []
            inserted = 0
            for job, max_queued, _ in batch:
                if job.idempotency_key is None:
                    if pending >= max_queued:
                        results.append(QueueFull())
                        continue
                    plain.append(new_job_values(job))
                    pending += 1
                    results.append(Accepted(job.id, False))
                    continue
                row = await conn.fetchrow(
                    f"SELECT id, fingerprint FROM {TABLE} WHERE idempotency_key = $1", job.idempotency_key
                )
                if row is None and pending >= max_queued:
                    results.append(QueueFull())
                    continue
                if row is None:
                    new_id = await conn.fetchval(
                        INSERT + " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                        *new_job_values(job),
                    )
                    if new_id is not None:
                        pending += 1
                        inserted += 1
                        results.append(Accepted(job.id, False))
                        continue
                    # another proxy committed the same key meanwhile: what it stored decides
                    row = await conn.fetchrow(
                        f"SELECT id, fingerprint FROM {TABLE} WHERE idempotency_key = $1", job.idempotency_key
                    )
                results.append(
                    Accepted(row["id"], True) if row["fingerprint"] == job.fingerprint else KeyReused()
                )
            if plain:
                await conn.executemany(INSERT, plain)
            if plain or inserted:
                await conn.execute(f"SELECT pg_notify('{CHANNEL}', '')")
        return results

    # -- delivery ----------------------------------------------------------------------------

    async def lease(self, owner: str, limit: int, now: float, until: float, ordered: bool) -> list[Job]:
        sql = (
            f"UPDATE {TABLE} SET state = 'delivering', lease_owner = $1, lease_until = $2, attempts = attempts + 1 "
            f"WHERE seq IN (SELECT j.seq FROM {TABLE} AS j WHERE {DUE}{IN_ORDER if ordered else ''} "
            "ORDER BY j.seq LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING *"
        )
        async with self._transaction(single=True) as conn:
            rows = await conn.fetch(sql, owner, until, now, limit)
        return [job_from_row(row, now) for row in sorted(rows, key=lambda row: row["seq"])]

    async def renew(self, owner: str, ids: list[str], until: float) -> None:
        async with self._transaction(single=True) as conn:
            await conn.execute(
                f"UPDATE {TABLE} SET lease_until = $1 WHERE id = ANY($2) AND lease_owner = $3 AND state = 'delivering'",
                until,
                ids,
                owner,
            )

    async def finish(
        self, owner: str, job_id: str, state: State, status: int | None, error: str | None, now: float
    ) -> bool:
        async with self._transaction(single=True) as conn:
            done = await conn.execute(
                f"UPDATE {TABLE} SET state = $1, last_status = $2, last_error = $3, delivered_at = $4, "
                "finished_at = $5, lease_owner = NULL, lease_until = NULL "
                "WHERE id = $6 AND lease_owner = $7 AND state = 'delivering'",
                state.value,
                status,
                error,
                now if state is State.DELIVERED else None,
                now,
                job_id,
                owner,
            )
        return done.endswith(" 1")

    async def postpone(
        self, owner: str, job_id: str, next_attempt_at: float, status: int | None, error: str | None
    ) -> bool:
        async with self._transaction(single=True) as conn:
            done = await conn.execute(
                f"UPDATE {TABLE} SET state = 'queued', next_attempt_at = $1, last_status = $2, last_error = $3, "
                "lease_owner = NULL, lease_until = NULL WHERE id = $4 AND lease_owner = $5 AND state = 'delivering'",
                next_attempt_at,
                status,
                error,
                job_id,
                owner,
            )
        return done.endswith(" 1")

    async def release(self, owner: str, ids: list[str]) -> None:
        async with self._transaction(single=True) as conn:
            await conn.execute(
                f"UPDATE {TABLE} SET state = 'queued', attempts = greatest(attempts - 1, 0), lease_owner = NULL, "
                "lease_until = NULL WHERE id = ANY($1) AND lease_owner = $2 AND state = 'delivering'",
                ids,
                owner,
            )

    # -- control -----------------------------------------------------------------------------

    async def get(self, job_id: str, now: float) -> Job | None:
        async with self._transaction(single=True) as conn:
            row = await conn.fetchrow(f"SELECT * FROM {TABLE} WHERE id = $1", job_id)
        return None if row is None else job_from_row(row, now)

    async def counts(self, now: float, window: float) -> Counts:
        by_state = dict.fromkeys(("queued", "delivering", "delivered", "dead"), 0)
        async with self._transaction() as conn:
            for row in await conn.fetch(
                f"SELECT CASE WHEN state = 'delivering' AND lease_until < $1 THEN 'queued' ELSE state END AS s, "
                f"count(*) AS n FROM {TABLE} GROUP BY s",
                now,
            ):
                by_state[row["s"]] = row["n"]
            oldest = await conn.fetchval(
                f"SELECT accepted_at FROM {TABLE} WHERE state IN ('queued', 'delivering') "
                "AND (state = 'queued' OR lease_until < $1) ORDER BY seq LIMIT 1",
                now,
            )
            recent = await conn.fetchval(
                f"SELECT count(*) FROM {TABLE} WHERE delivered_at >= $1", now - window
            )
        return Counts(**by_state, oldest_queued_at=oldest, delivered_recently=recent)

    async def requeue(self, job_id: str, now: float) -> Change:
        async with self._transaction() as conn:
            state = await conn.fetchval(f"SELECT state FROM {TABLE} WHERE id = $1 FOR UPDATE", job_id)
            if state is None:
                return Change.NOT_FOUND
            if state != State.DEAD.value:
                return Change.CONFLICT
            await conn.execute(REQUEUE + " WHERE id = $2", now, job_id)
            await conn.execute(f"SELECT pg_notify('{CHANNEL}', '')")
        return Change.DONE

    async def requeue_dead(self, now: float) -> int:
        async with self._transaction() as conn:
            done = await conn.execute(REQUEUE + " WHERE state = 'dead'", now)
            await conn.execute(f"SELECT pg_notify('{CHANNEL}', '')")
        return int(done.rsplit(" ", 1)[1])

    async def delete(self, job_id: str, now: float) -> Change:
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                f"SELECT state, lease_until FROM {TABLE} WHERE id = $1 FOR UPDATE", job_id
            )
            if row is None:
                return Change.NOT_FOUND
            if (
                row["state"] == State.DELIVERING.value
                and row["lease_until"] is not None
                and row["lease_until"] >= now
            ):
                return Change.CONFLICT
            await conn.execute(f"DELETE FROM {TABLE} WHERE id = $1", job_id)
        return Change.DONE

    async def prune(self, before: float) -> int:
        async with self._transaction(single=True) as conn:
            done = await conn.execute(
                f"DELETE FROM {TABLE} WHERE finished_at < $1 AND state IN ('delivered', 'dead')", before
            )
        return int(done.rsplit(" ", 1)[1])

    async def wait_for_jobs(self, timeout: float) -> None:
        """Until a notification (any proxy accepted or re-queued a job) or ``timeout`` (the poll)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._arrived.wait()
        self._arrived.clear()
