"""Delivery: lease due jobs, send them upstream, and record what came of each.

At most ``ASYNC_WORKERS`` deliveries run at once and at most ``ASYNC_RATE`` start per second. A job
is leased for ``ASYNC_REQUEST_TIMEOUT`` + 10 s, and the lease is renewed while its delivery runs: a
job whose proxy died is taken over once its lease runs out (at least once delivery; the upstream
can deduplicate by the ``Idempotency-Key`` every attempt carries). A stopping proxy lets its
deliveries finish within ``ASYNC_SHUTDOWN_TIMEOUT`` and gives the rest back to the queue.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from .engine import Answer, DeliveryClient, DeliveryFailed
from .job import IDEMPOTENCY_KEY, Job, State
from .metrics import RATE_WINDOW, QueueMetrics
from .pacing import TokenBucket
from .retry import Verdict, backoff, parse_retry_after, verdict
from .settings import QueueSettings
from .store import QueueStore, StoreUnavailable

log = logging.getLogger("mitmcache")

POLL_SECONDS = 0.25  # how often the queue is looked at when nothing says a job arrived
# How often the queue's counts are read (metrics, health, the stats command; GET {prefix}/queue reads
# them anew): counting every delivered job of the last ASYNC_KEEP_SECS is not free.
WATCH_SECONDS = 2.0
STOP_LEASING_SECONDS = 2.0
PRUNE_SECONDS = 60.0
RENEW_FRACTION = 3  # a lease is renewed this many times per lease period
STORE_RETRY_SECONDS = 1.0

type Invalidate = Callable[[str, list[tuple[str, str]], list[tuple[bytes, bytes]]], Awaitable[int]]


class Deliverer:
    def __init__(
        self,
        store: QueueStore,
        client: DeliveryClient,
        settings: Callable[[], QueueSettings],
        metrics: QueueMetrics,
        invalidate: Invalidate,
    ) -> None:
        self._store = store
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._invalidate = invalidate
        self.owner = f"{uuid.uuid4()}"
        self._bucket = TokenBucket(settings().rate)
        self._inflight: dict[asyncio.Task[None], str] = {}
        self._slot_freed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._lease_loop()),
            loop.create_task(self._watch()),
            loop.create_task(self._renew_leases()),
        ]

    # -- leasing -----------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while not self._stopping:
            try:
                await self._lease_once()
            except Exception:  # a bug must not stop every delivery for good: logged, then on
                log.exception("write queue: leasing failed")
                await asyncio.sleep(STORE_RETRY_SECONDS)

    async def _lease_once(self) -> None:
        """Lease what the free workers and the rate allow, and start delivering it; or wait."""
        settings = self._settings()
        if self._bucket.rate != settings.rate:
            self._bucket = TokenBucket(settings.rate)
        free = settings.workers - len(self._inflight)
        if free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            return
        want = min(free, self._bucket.available())
        if want < 1:
            await self._bucket.wait()
            return
        now = time.time()
        try:
            jobs = await self._store.lease(self.owner, want, now, now + settings.lease_secs, settings.ordered)
        except StoreUnavailable as e:
            if self._metrics.reachable:  # said once, not every second (housekeeping says when it is back)
                log.warning("write queue: cannot lease jobs: %s", e)
                self._metrics.reachable = False
            await asyncio.sleep(STORE_RETRY_SECONDS)
            return
        if self._stopping:  # leased while stopping: straight back to the queue
            await self._release([job.id for job in jobs])
            return
        if not jobs:
            await self._store.wait_for_jobs(POLL_SECONDS)
            return
        self._bucket.take(len(jobs))
        for job in jobs:
            task = asyncio.get_running_loop().create_task(self._deliver(job))
            self._inflight[task] = job.id
            task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("write queue: delivery failed unexpectedly", exc_info=task.exception())

    # -- one delivery ------------------------------------------------------------------------

    async def _deliver(self, job: Job) -> None:
        settings = self._settings()
        fields = [*job.fields, (IDEMPOTENCY_KEY, job.delivery_key)]
        answer: Answer | None = None
        error: str | None = None
        try:
            answer = await self._client.send(job.method, job.url, fields, job.body, settings.request_timeout)
        except DeliveryFailed as e:
            error = str(e)
        status = None if answer is None else answer.status
        now = time.time()
        outcome = verdict(status, job.attempts, settings.max_retries)
        try:
            if outcome is Verdict.RETRY:
                await self._postpone(job, answer, error, now)
                return
            state = State.DELIVERED if outcome is Verdict.DELIVERED else State.DEAD
            recorded = await self._store.finish(self.owner, job.id, state, status, error, now)
        except StoreUnavailable as e:
            # The lease runs out and the job is delivered again: at least once, never lost.
            log.warning("write queue: cannot record the delivery of job %s: %s", job.id, e)
            return
        if state is State.DELIVERED:
            if recorded:
                self._metrics.counts["delivered"] += 1
                self._metrics.observe_latency(now - job.accepted_at)
            assert answer is not None
            await self._invalidate(job.url, job.fields, answer.fields)
        elif recorded:
            self._metrics.counts["dead"] += 1
            log.warning(
                "write queue: %s %s (job %s) is dead after %d attempts: %s",
                job.method,
                job.target,
                job.id,
                job.attempts,
                error or f"upstream answered {status}",
            )

    async def _postpone(self, job: Job, answer: Answer | None, error: str | None, now: float) -> None:
        """Schedules the job's next attempt after its back-off (or the upstream's ``Retry-After``)."""
        status = None if answer is None else answer.status
        retry_after = None
        if answer is not None:
            raw = next((v for k, v in answer.fields if k.lower() == b"retry-after"), b"")
            retry_after = parse_retry_after(raw.decode("latin-1"), now)
        delay = backoff(job.attempts, retry_after)
        if await self._store.postpone(self.owner, job.id, now + delay, status, error):
            self._metrics.counts["retried"] += 1
            log.debug(
                "write queue: %s %s (job %s) attempt %d: %s; retry in %.1fs",
                job.method,
                job.target,
                job.id,
                job.attempts,
                error or status,
                delay,
            )

    async def _renew_leases(self) -> None:
        """Every in-flight job's lease, renewed in one statement a few times per lease period: a
        delivery that runs long is never taken over while this process is alive."""
        while True:
            lease_secs = self._settings().lease_secs
            await asyncio.sleep(lease_secs / RENEW_FRACTION)
            if ids := list(self._inflight.values()):
                with contextlib.suppress(StoreUnavailable):
                    await self._store.renew(self.owner, ids, time.time() + lease_secs)

    # -- housekeeping ------------------------------------------------------------------------

    async def refresh_counts(self) -> None:
        try:
            self._metrics.snapshot = await self._store.counts(time.time(), RATE_WINDOW)
            self._metrics.snapshot_at = time.time()
            if not self._metrics.reachable:
                log.info("write queue: the queue is reachable again")
            self._metrics.reachable = True
        except StoreUnavailable as e:
            if self._metrics.reachable:
                log.warning("write queue: the queue is unreachable: %s", e)
            self._metrics.reachable = False

    async def _watch(self) -> None:
        last_prune = 0.0
        while True:
            try:
                await self.refresh_counts()
                now = time.time()
                if now - last_prune >= PRUNE_SECONDS and self._metrics.reachable:
                    last_prune = now
                    await self._prune(now)
            except Exception:  # as for leasing: logged, then on
                log.exception("write queue: housekeeping failed")
            await asyncio.sleep(WATCH_SECONDS)

    async def _prune(self, now: float) -> None:
        with contextlib.suppress(StoreUnavailable):
            if pruned := await self._store.prune(now - self._settings().keep_secs):
                log.info("write queue: pruned %d delivered or dead jobs", pruned)

    async def stop(self, timeout: float) -> None:
        """Take no more jobs; let deliveries in flight finish within ``timeout``; release the rest."""
        self._stopping = True
        self._slot_freed.set()
        leasing, *housekeeping = self._tasks
        for task in housekeeping:
            task.cancel()
        # The lease loop ends by itself within a poll; cancelled, a lease committed meanwhile (SQLite's
        # statements run on in their thread) would hold its jobs until the lease runs out.
        await asyncio.wait([leasing], timeout=STOP_LEASING_SECONDS)
        leasing.cancel()
        if self._inflight:
            log.info(
                "write queue: stopping: waiting up to %gs for %d deliveries", timeout, len(self._inflight)
            )
            await asyncio.wait(list(self._inflight), timeout=timeout)
        unfinished = list(self._inflight.items())
        for task, _ in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait([task for task, _ in unfinished])
            await self._release([job_id for _, job_id in unfinished])

    async def _release(self, ids: list[str]) -> None:
        if not ids:
            return
        try:
            await self._store.release(self.owner, ids)
            log.info("write queue: stopping: %d deliveries released for the next start", len(ids))
        except StoreUnavailable as e:
            log.warning(
                "write queue: stopping: could not release %d jobs (%s): their leases run out", len(ids), e
            )
