"""The write queue's control plane, under ``{admin prefix}/queue`` and behind the admin key:

==========================================  ===============================================================
``GET  /queue``                             counts by state, oldest queued age, delivery rate
``GET  /queue/{id}``                        one job: state, attempts, last status and error, times
``POST /queue/{id}/retry``                  re-queue a dead job (409 unless dead)
``POST /queue/retry-dead``                  re-queue every dead job
``DELETE /queue/{id}``                      forget a job (409 while it is being delivered)
==========================================  ===============================================================

and the commands ``cache.queue.stats``, ``cache.queue.retry``, ``cache.queue.retry.dead``, whose
results are one-line ``key=value`` summaries.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from mitmproxy import command, http

from .. import summary
from .metrics import QueueMetrics
from .store import Change, QueueStore, StoreUnavailable

log = logging.getLogger("mitmcache")

NAME = "queue"
RETRY_DEAD = "retry-dead"


class Answer(Protocol):
    """The control plane's way of answering a request (``Control._answer``)."""

    def __call__(
        self,
        flow: http.HTTPFlow,
        code: int,
        payload: Any,
        name: str,
        *,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None: ...


class QueueAdmin:
    def __init__(
        self,
        store: Callable[[], QueueStore | None],
        metrics: QueueMetrics,
        refresh: Callable[[], Coroutine[Any, Any, None]],
        status: Callable[[], str],
    ) -> None:
        self._status = status  # open, starting or off
        self._store = store
        self._metrics = metrics
        self._refresh = refresh  # re-reads the queue's counts
        self._tasks: set[asyncio.Task[Any]] = set()

    @staticmethod
    def index() -> dict[str, str]:
        return {
            NAME: "GET HEAD",
            f"{NAME}/{{id}}": "GET HEAD DELETE",
            f"{NAME}/{{id}}/retry": "POST",
            f"{NAME}/{RETRY_DEAD}": "POST",
        }

    # -- health --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        if self._store() is None:
            return {"status": self._status()}
        if not self._metrics.reachable:
            return {"status": "unreachable"}
        return {"status": "ok", **self._metrics.summary()}

    # -- endpoints ------------------------------------------------------------------------------

    async def handle(self, flow: http.HTTPFlow, rest: str, answer: Answer) -> None:
        """``rest`` is the path after ``/queue/``."""
        method = flow.request.method
        name = f"{NAME}/{rest}".rstrip("/")
        store = self._store()
        parts = rest.split("/") if rest else []
        allowed = _allowed_methods(parts)
        if allowed is None:
            answer(flow, 404, {"error": "no such endpoint", "endpoint": name}, name)
            return
        if method not in allowed:
            answer(
                flow,
                405,
                {"error": "method not allowed", "endpoint": name, "allowed": list(allowed)},
                name,
                headers={"allow": ", ".join(allowed)},
            )
            return
        if store is None:
            answer(
                flow,
                404,
                {"error": "the write queue is off", "detail": "set ASYNC_ROUTES to turn it on"},
                name,
            )
            return
        now = time.time()
        try:
            if not parts:
                await self._refresh()
                if not self._metrics.reachable:
                    raise StoreUnavailable("the queue's store does not answer")
                answer(flow, 200, self._metrics.summary(), name, detail=summary.fields(self._jobs()))
            elif parts == [RETRY_DEAD]:
                count = await store.requeue_dead(now)
                log.info("write queue: %d dead jobs re-queued%s", count, _by(flow))
                answer(flow, 200, {"requeued": count}, name, detail=f"requeued={count}")
            elif len(parts) == 2:
                change = await store.requeue(parts[0], now)
                self._answer_change(
                    flow, answer, name, parts[0], change, "requeued", "only a dead job can be retried"
                )
            elif method == "DELETE":
                change = await store.delete(parts[0], now)
                self._answer_change(
                    flow, answer, name, parts[0], change, "deleted", "the job is being delivered"
                )
            else:
                job = await store.get(parts[0], now)
                if job is None:
                    answer(flow, 404, {"error": "no such job", "id": parts[0]}, name)
                else:
                    answer(flow, 200, job.describe(), name, detail=f"state={job.state.value}")
        except StoreUnavailable as e:
            log.warning("write queue: %s %s: %s", method, name, e)
            answer(
                flow,
                503,
                {"error": "queue unavailable", "detail": str(e)},
                name,
                headers={"retry-after": "1"},
            )

    @staticmethod
    def _answer_change(
        flow: http.HTTPFlow, answer: Answer, name: str, job_id: str, change: Change, done: str, conflict: str
    ) -> None:
        if change is Change.NOT_FOUND:
            answer(flow, 404, {"error": "no such job", "id": job_id}, name)
        elif change is Change.CONFLICT:
            answer(flow, 409, {"error": conflict, "id": job_id}, name)
        else:
            log.info("write queue: job %s %s%s", job_id, done, _by(flow))
            answer(flow, 200, {"id": job_id, "result": done}, name, detail=done)

    def _jobs(self) -> dict[str, Any]:
        current = self._metrics.summary()
        return {**(current["jobs"] or {}), **{k: v for k, v in current.items() if k != "jobs"}}  # type: ignore[dict-item]

    # -- commands -------------------------------------------------------------------------------

    @command.command("cache.queue.stats")
    def cmd_stats(self) -> str:
        """The write queue: jobs by state, the oldest queued write's age (s), deliveries per second."""
        if self._store() is None:
            return "queue=off"
        if not self._metrics.reachable:
            return "queue=unreachable"
        return summary.fields(self._jobs())

    @command.command("cache.queue.retry")
    def cmd_retry(self, job_id: str) -> str:
        """Re-queue one dead job (its outcome goes to the event log)."""
        store = self._store()
        if store is None:
            return "queue=off"
        self._spawn(self._retry(store, job_id.strip()))
        return summary.fields({"id": job_id.strip(), "retry": "scheduled"})

    @command.command("cache.queue.retry.dead")
    def cmd_retry_dead(self) -> str:
        """Re-queue every dead job (how many goes to the event log)."""
        store = self._store()
        if store is None:
            return "queue=off"
        self._spawn(self._retry_dead(store))
        return summary.fields({"retry_dead": "scheduled"})

    async def _retry(self, store: QueueStore, job_id: str) -> None:
        try:
            change = await store.requeue(job_id, time.time())
        except StoreUnavailable as e:
            log.warning("write queue: retry of job %s: %s", job_id, e)
            return
        log.info(
            "write queue: retry of job %s: %s",
            job_id,
            {Change.DONE: "requeued", Change.NOT_FOUND: "no such job", Change.CONFLICT: "not dead"}[change],
        )

    async def _retry_dead(self, store: QueueStore) -> None:
        try:
            log.info(
                "write queue: %d dead jobs re-queued (by command)", await store.requeue_dead(time.time())
            )
        except StoreUnavailable as e:
            log.warning("write queue: retry of dead jobs: %s", e)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _by(flow: http.HTTPFlow) -> str:
    peer = flow.client_conn.peername
    return f" (by {peer[0]})" if peer else ""


def _allowed_methods(parts: list[str]) -> tuple[str, ...] | None:
    """The methods an endpoint under ``/queue/`` answers (its path split at ``/``); None: no such
    endpoint."""
    if len(parts) == 2 and parts[1] == "retry":
        return ("POST",)
    if parts == [RETRY_DEAD]:
        return ("POST",)
    if len(parts) <= 1:
        return ("GET", "HEAD", "DELETE") if parts else ("GET", "HEAD")
    return None
