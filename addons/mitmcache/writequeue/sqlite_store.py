"""The queue in one SQLite file: one proxy's durable queue, no server to run.

One thread owns the connection and runs every statement, in the order asked: the event loop never
waits on the disk. Acceptances queued up while a commit runs (and, when they arrive together, for a
short gathering delay before it: ``store.gather_more``) are written together in the next
transaction (group commit): the WAL journal with ``synchronous=FULL`` makes each commit durable
(fsync) before any of its writes is answered, and one fsync serves them all.
"""

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .job import Job, NewJob, State
from .store import (
    COMMIT_DELAY_SECONDS,
    PENDING_BOUND_SQL,
    PENDING_COUNT_SQL,
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    target TEXT NOT NULL,
    fields TEXT NOT NULL,
    body BLOB NOT NULL,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    accepted_at REAL NOT NULL,
    next_attempt_at REAL,
    delivered_at REAL,
    finished_at REAL,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (seq) WHERE state IN ('queued', 'delivering');
CREATE INDEX IF NOT EXISTS jobs_pending_url ON jobs (url, seq) WHERE state IN ('queued', 'delivering');
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_delivered ON jobs (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
"""

_PENDING_BOUND = PENDING_BOUND_SQL.format(table="jobs")
_PENDING_COUNT = PENDING_COUNT_SQL.format(table="jobs")
_DUE = "((j.state = 'queued' AND j.next_attempt_at <= :now) OR (j.state = 'delivering' AND j.lease_until < :now))"
_IN_ORDER = (
    " AND NOT EXISTS (SELECT 1 FROM jobs AS e WHERE e.url = j.url AND e.seq < j.seq"
    " AND e.state IN ('queued', 'delivering'))"
)


@dataclass(slots=True)
class _Op:
    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    accept: tuple[NewJob, int] | None = None
    result: Any = field(default=None)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """A batch's results, handed to the event loop at once: one wakeup of the loop per batch, not
    one per operation (each is a write to the loop's self-pipe, then a turn of the loop)."""
    for future, result in settled:
        settle(future, result)


class SQLiteStore:
    def __init__(self, path: Path, expected: Callable[[], int] = lambda: 0) -> None:
        self.path = path
        self._expected = expected  # the most writes lately on their way at once (arrivals.py)
        self._inbox: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived = asyncio.Event()

    # -- the thread --------------------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="writequeue-sqlite", daemon=True
        )
        self._thread.start()
        await ready

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it is answered
        conn.executescript(SCHEMA)
        return conn

    def _main(self, ready: asyncio.Future[None]) -> None:
        assert self._loop is not None
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError) as e:
            self._loop.call_soon_threadsafe(settle, ready, StoreUnavailable(f"{self.path}: {e}"))
            return
        self._loop.call_soon_threadsafe(settle, ready, None)
        try:
            while True:
                batch = [self._inbox.get()]
                self._drain(batch)
                self._gather(batch)
                ops = [op for op in batch if op is not None]
                accepts = [op for op in ops if op.accept is not None]
                if accepts:
                    self._accept_all(conn, accepts)
                for op in ops:
                    if op.accept is None:
                        op.result = self._transaction(conn, op.run)
                if ops:
                    with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                        self._loop.call_soon_threadsafe(_settle_all, [(op.future, op.result) for op in ops])
                if None in batch:
                    return
        finally:
            conn.close()

    def _drain(self, batch: list[_Op | None]) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                batch.append(self._inbox.get_nowait())

    def _gather(self, batch: list[_Op | None]) -> None:
        """Hold the commit for the acceptances on their way (``store.gather_more``)."""
        deadline = time.monotonic() + COMMIT_DELAY_SECONDS
        while None not in batch and gather_more(
            sum(op.accept is not None for op in batch if op is not None), self._expected()
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                batch.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                return
            self._drain(batch)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, run: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = run(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            return StoreUnavailable(f"sqlite: {e}")

    def _accept_all(self, conn: sqlite3.Connection, ops: list[_Op]) -> None:
        """One transaction, one fsync, for every acceptance waiting."""

        def run(conn: sqlite3.Connection) -> None:
            pending = conn.execute(_PENDING_BOUND).fetchone()[0]
            if needs_exact_count(pending, len(ops), min(op.accept[1] for op in ops if op.accept)):
                pending = conn.execute(_PENDING_COUNT).fetchone()[0]
            for op in ops:
                assert op.accept is not None
                job, max_queued = op.accept
                if job.idempotency_key is not None:
                    row = conn.execute(
                        "SELECT id, fingerprint FROM jobs WHERE idempotency_key = ?", (job.idempotency_key,)
                    ).fetchone()
                    if row is not None:
                        op.result = Accepted(row[0], True) if row[1] == job.fingerprint else KeyReused()
                        continue
                if pending >= max_queued:
                    op.result = QueueFull()
                    continue
                conn.execute(
                    "INSERT INTO jobs (id, state, method, url, target, fields, body, idempotency_key, "
                    "fingerprint, accepted_at, next_attempt_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*new_job_values(job), job.accepted_at),  # next_attempt_at: at once
                )
                pending += 1
                op.result = Accepted(job.id, False)

        failure = self._transaction(conn, run)
        if isinstance(failure, StoreUnavailable):
            for op in ops:
                op.result = failure

    async def _call(
        self, run: Callable[[sqlite3.Connection], Any], accept: tuple[NewJob, int] | None = None
    ) -> Any:
        if self._thread is None or not self._thread.is_alive() or self._loop is None:
            raise StoreUnavailable("sqlite: the queue is closed")
        future = self._loop.create_future()
        self._inbox.put(_Op(run, future, accept))
        return await future

    async def close(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    # -- the queue ---------------------------------------------------------------------------

    async def accept(self, job: NewJob, max_queued: int) -> Accepted:
        accepted = await self._call(lambda conn: None, accept=(job, max_queued))
        if not accepted.duplicate:
            self._arrived.set()
        return accepted

    async def lease(self, owner: str, limit: int, now: float, until: float, ordered: bool) -> list[Job]:
        sql = (
            "UPDATE jobs SET state = 'delivering', lease_owner = :owner, lease_until = :until, "
            "attempts = attempts + 1 WHERE seq IN (SELECT j.seq FROM jobs AS j WHERE "
            f"{_DUE}{_IN_ORDER if ordered else ''} ORDER BY j.seq LIMIT :limit) RETURNING *"
        )
        params = {"owner": owner, "until": until, "now": now, "limit": limit}
        rows = await self._call(lambda conn: conn.execute(sql, params).fetchall())
        return [job_from_row(row, now) for row in sorted(rows, key=lambda row: row["seq"])]

    async def renew(self, owner: str, ids: list[str], until: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND state = 'delivering'",
                [(until, job_id, owner) for job_id in ids],
            )

        await self._call(run)

    async def finish(
        self, owner: str, job_id: str, state: State, status: int | None, error: str | None, now: float
    ) -> bool:
        delivered_at = now if state is State.DELIVERED else None
        sql = (
            "UPDATE jobs SET state = ?, last_status = ?, last_error = ?, delivered_at = ?, finished_at = ?, "
            "lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ? AND state = 'delivering'"
        )
        params = (state.value, status, error, delivered_at, now, job_id, owner)
        return bool(await self._call(lambda conn: conn.execute(sql, params).rowcount))

    async def postpone(
        self, owner: str, job_id: str, next_attempt_at: float, status: int | None, error: str | None
    ) -> bool:
        sql = (
            "UPDATE jobs SET state = 'queued', next_attempt_at = ?, last_status = ?, last_error = ?, "
            "lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ? AND state = 'delivering'"
        )
        params = (next_attempt_at, status, error, job_id, owner)
        return bool(await self._call(lambda conn: conn.execute(sql, params).rowcount))

    async def release(self, owner: str, ids: list[str]) -> None:
        """Give leased jobs back at once (a stopping proxy): the attempt did not happen."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE jobs SET state = 'queued', attempts = max(attempts - 1, 0), lease_owner = NULL, "
                "lease_until = NULL WHERE id = ? AND lease_owner = ? AND state = 'delivering'",
                [(job_id, owner) for job_id in ids],
            )

        await self._call(run)

    async def get(self, job_id: str, now: float) -> Job | None:
        row = await self._call(
            lambda conn: conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        )
        return None if row is None else job_from_row(row, now)

    async def counts(self, now: float, window: float) -> Counts:
        def run(conn: sqlite3.Connection) -> Counts:
            by_state = dict.fromkeys(("queued", "delivering", "delivered", "dead"), 0)
            for state, n in conn.execute(
                "SELECT CASE WHEN state = 'delivering' AND lease_until < ? THEN 'queued' ELSE state END AS s, "
                "count(*) FROM jobs GROUP BY s",
                (now,),
            ):
                by_state[state] = n
            oldest = conn.execute(
                "SELECT accepted_at FROM jobs WHERE state IN ('queued', 'delivering') "
                "AND (state = 'queued' OR lease_until < ?) ORDER BY seq LIMIT 1",
                (now,),
            ).fetchone()
            recent = conn.execute(
                "SELECT count(*) FROM jobs WHERE delivered_at >= ?", (now - window,)
            ).fetchone()
            return Counts(
                **by_state, oldest_queued_at=oldest[0] if oldest else None, delivered_recently=recent[0]
            )

        return await self._call(run)

    async def requeue(self, job_id: str, now: float) -> Change:
        def run(conn: sqlite3.Connection) -> Change:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return Change.NOT_FOUND
            if row[0] != State.DEAD.value:
                return Change.CONFLICT
            conn.execute(_REQUEUE + " WHERE id = ?", (now, job_id))
            return Change.DONE

        change = await self._call(run)
        self._arrived.set()
        return change

    async def requeue_dead(self, now: float) -> int:
        count = await self._call(
            lambda conn: conn.execute(_REQUEUE + " WHERE state = 'dead'", (now,)).rowcount
        )
        self._arrived.set()
        return count

    async def delete(self, job_id: str, now: float) -> Change:
        def run(conn: sqlite3.Connection) -> Change:
            row = conn.execute("SELECT state, lease_until FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return Change.NOT_FOUND
            if row[0] == State.DELIVERING.value and row[1] is not None and row[1] >= now:
                return Change.CONFLICT
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return Change.DONE

        return await self._call(run)

    async def prune(self, before: float) -> int:
        return await self._call(
            lambda conn: (
                conn.execute(
                    "DELETE FROM jobs WHERE finished_at < ? AND state IN ('delivered', 'dead')", (before,)
                ).rowcount
            )
        )

    async def wait_for_jobs(self, timeout: float) -> None:
        """Until a write is accepted or re-queued here, or ``timeout`` passes (retries come due)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._arrived.wait()
        self._arrived.clear()


# A re-queued dead job starts its retries anew, at once.
_REQUEUE = (
    "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = ?, finished_at = NULL, "
    "lease_owner = NULL, lease_until = NULL"
)
