"""The queue store's interface, shared by SQLite (one proxy) and PostgreSQL (many proxies).

Jobs move queued -> delivering (leased by one process until ``lease_until``, renewed while it
runs) -> delivered or dead, or back to queued for a retry. A lease whose owner died simply
expires: lease() takes such jobs over. Acceptance is the one hot write: stores commit the
acceptances that arrive together in one transaction (group commit), so a durable commit per
request does not cap throughput.
"""

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .job import Job, NewJob, State, decode_fields, encode_fields

PENDING = (State.QUEUED.value, State.DELIVERING.value)

# An upper bound on the pending jobs from two index lookups: every job accepted since the oldest one
# still pending could be pending. Counting them exactly walks an index as long as the backlog (about
# 110 us per batch at 5,000 pending on SQLite, 440 us at 20,000), and acceptance pays it per commit:
# a queue would slow down exactly while it absorbs a burst. ``pending_count`` counts only when the
# bound says the batch might not fit.
PENDING_BOUND_SQL = (
    "SELECT coalesce((SELECT max(seq) FROM {table}) - "
    "(SELECT min(seq) FROM {table} WHERE state IN ('queued', 'delivering')) + 1, 0)"
)
PENDING_COUNT_SQL = "SELECT count(*) FROM {table} WHERE state IN ('queued', 'delivering')"


# Group commit's gathering delay, after PostgreSQL's commit_delay and commit_siblings: a store that
# commits as soon as one acceptance is waiting commits one or two at a time while the event loop is
# still reading the next ones, and each pays a whole durable commit (an fsync: about 100 us of CPU
# and 240 us of waiting for SQLite on the project's machine). A commit that carries fewer
# acceptances than clients have lately been writing at once (``arrivals.Arrivals``) waits at most
# this long for more.
COMMIT_DELAY_SECONDS = 0.002


def gather_more(accepts: int, expected: int) -> bool:
    """Whether a commit carrying ``accepts`` acceptances waits for more (``expected``: the most
    writes lately on their way at once, its own included)."""
    return accepts < expected


def needs_exact_count(bound: int, batch: int, max_queued: int) -> bool:
    """Whether a batch of acceptances might meet ``ASYNC_MAX_QUEUED``, given the upper bound on the
    jobs pending: only then are they counted."""
    return bound + batch > max_queued


class StoreUnavailable(Exception):
    """The queue cannot be reached or written: nothing is accepted (503)."""


class QueueFull(Exception):
    """ASYNC_MAX_QUEUED jobs are waiting: nothing more is accepted (503 with Retry-After)."""


class KeyReused(Exception):
    """An Idempotency-Key already names a different request (422)."""


class Change(enum.Enum):
    DONE = "done"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the job is not in a state that allows it


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    duplicate: bool  # the same Idempotency-Key and request were accepted before: nothing stored


@dataclass(frozen=True, slots=True)
class Counts:
    queued: int
    delivering: int
    delivered: int
    dead: int
    oldest_queued_at: float | None
    delivered_recently: int  # delivered within the window asked for


class QueueStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def accept(self, job: NewJob, max_queued: int) -> Accepted: ...
    async def lease(self, owner: str, limit: int, now: float, until: float, ordered: bool) -> list[Job]: ...
    async def renew(self, owner: str, ids: list[str], until: float) -> None: ...
    async def finish(
        self, owner: str, job_id: str, state: State, status: int | None, error: str | None, now: float
    ) -> bool: ...
    async def postpone(
        self, owner: str, job_id: str, next_attempt_at: float, status: int | None, error: str | None
    ) -> bool: ...
    async def release(self, owner: str, ids: list[str]) -> None: ...
    async def get(self, job_id: str, now: float) -> Job | None: ...
    async def counts(self, now: float, window: float) -> Counts: ...
    async def requeue(self, job_id: str, now: float) -> Change: ...
    async def requeue_dead(self, now: float) -> int: ...
    async def delete(self, job_id: str, now: float) -> Change: ...
    async def prune(self, before: float) -> int: ...
    async def wait_for_jobs(self, timeout: float) -> None: ...


def new_job_values(job: NewJob) -> tuple[Any, ...]:
    """An accepted job's values, in the order both stores insert them: id, method, url, target,
    fields, body, idempotency_key, fingerprint, accepted_at (each store's INSERT names them)."""
    return (
        job.id,
        job.method,
        job.url,
        job.target,
        encode_fields(job.fields),
        job.body,
        job.idempotency_key,
        job.fingerprint,
        job.accepted_at,
    )


def settle(future: asyncio.Future[Any], result: Any) -> None:
    """Hand a waiting acceptance its result: an exception is raised to it, anything else returned;
    a future already settled (its client gone) is left alone."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def job_from_row(row: Mapping[str, Any], now: float) -> Job:
    """A stored row as a Job; a delivery whose lease ran out is waiting to be taken over: queued."""
    state = State(row["state"])
    if state is State.DELIVERING and row["lease_until"] is not None and row["lease_until"] < now:
        state = State.QUEUED
    return Job(
        id=str(row["id"]),
        state=state,
        method=row["method"],
        url=row["url"],
        target=row["target"],
        fields=decode_fields(row["fields"]),
        body=bytes(row["body"]),
        idempotency_key=row["idempotency_key"],
        attempts=row["attempts"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        accepted_at=row["accepted_at"],
        next_attempt_at=row["next_attempt_at"],
        delivered_at=row["delivered_at"],
    )
