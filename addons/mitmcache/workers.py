"""Every core: ``scripts/serve.sh --workers N`` runs N production processes on one port, supervised.

One mitmproxy process uses one core. The supervisor starts N copies of the production launcher
(``python -m mitmcache`` with the same arguments), each listening on the same address with
``SO_REUSEPORT`` (``compat.install_reuse_port``): the kernel spreads new connections over them.

* The first worker starts alone: a bad setting stops startup once, with its own one-line message,
  and the supervisor exits with code 1 (``Exit.STARTUP``). The others start once it is ready.
* A worker that dies is started again, after a back-off that doubles while it keeps dying
  (0.5 s up to 30 s; back to 0.5 s once a worker has run for a minute).
* SIGTERM or SIGINT stops every worker with SIGTERM (each stops cleanly: a disk store commits,
  a write queue gives back its leases) and the supervisor exits 0 (``Exit.STOPPED``); a worker
  still running after the grace period is killed and the exit code is 3 (``Exit.KILLED``).
* More than one worker needs a shared store (``CACHE_STORE=redis://...``): each worker refuses to
  start on the memory or disk store (``check_store``), saying why.

Each worker knows its number (``identity``): health and statistics say which worker answered.
"""

import asyncio
import contextlib
import ctypes
import enum
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .store.selection import Backend, StoreLocation

WORKER_VARIABLE = "MITMCACHE_WORKER"  # "i/N": this process is worker i of N
READY_VARIABLE = "MITMCACHE_READY_FD"  # the pipe a worker writes to once it listens
MAX_WORKERS = 256
FIRST_DELAY, MAX_DELAY = 0.5, 30.0  # restart back-off
STABLE_SECONDS = 60.0  # a worker that ran this long died for a new reason: back-off starts over
STOP_GRACE_SECONDS = 15.0  # how long workers get to stop cleanly before they are killed


class Exit(enum.IntEnum):
    STOPPED = 0  # stopped by SIGTERM/SIGINT, every worker cleanly
    STARTUP = 1  # the first worker could not start (its message says why)
    USAGE = 2  # a bad --workers value
    KILLED = 3  # stopped, but a worker had to be killed (or exited with an error while stopping)


class UsageError(Exception):
    pass


def split_workers(argv: Sequence[str]) -> tuple[int | None, list[str]]:
    """``--workers N`` (or ``--workers=N``) taken out of the command line: (N or None, the rest)."""
    rest: list[str] = []
    count: str | None = None
    args = iter(argv)
    for arg in args:
        if arg == "--workers":
            count = next(args, "")
        elif arg.startswith("--workers="):
            count = arg.removeprefix("--workers=")
        else:
            rest.append(arg)
    if count is None:
        return None, rest
    if not count.isdigit() or not 1 <= int(count) <= MAX_WORKERS:
        raise UsageError(f"--workers: expected a whole number from 1 to {MAX_WORKERS}, got {count!r}")
    return int(count), rest


# -- inside a worker ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    index: int  # 1-based
    of: int
    pid: int = field(default_factory=os.getpid)

    def as_json(self) -> dict[str, int]:
        return {"worker": self.index, "workers": self.of, "pid": self.pid}


def identity() -> Identity:
    """Which worker this process is (1 of 1 when it runs alone)."""
    raw = os.environ.get(WORKER_VARIABLE, "1/1")
    index, _, of = raw.partition("/")
    return Identity(int(index), int(of)) if index.isdigit() and of.isdigit() else Identity(1, 1)


def supervised() -> bool:
    return WORKER_VARIABLE in os.environ


def check_store(store: StoreLocation) -> None:
    """Refuse a store that cannot be shared when there is more than one worker (ValueError)."""
    workers = identity().of
    if workers > 1 and store.backend is not Backend.REDIS:
        kept = "in each worker's memory" if store.backend is Backend.MEMORY else "in one worker's file"
        raise ValueError(
            f"cache_store: {workers} workers need a shared store (CACHE_STORE=redis://...): with "
            f"{store.shown} entries are kept {kept}, so coalescing, purge, clear, Clear-Cache and the "
            "refresh window would hold only in the worker a request happens to reach"
        )


async def report_ready(servers: object) -> None:
    """Tell the supervisor this worker listens (once every listener runs)."""
    fd = os.environ.pop(READY_VARIABLE, None)
    if fd is None:
        return
    while not all(getattr(s, "is_running", False) for s in servers):  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
    with contextlib.suppress(OSError):
        os.write(int(fd), b"1")
        os.close(int(fd))


# -- the supervisor ------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"mitmcache: workers: {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, however it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process
    started: float


class Supervisor:
    def __init__(self, argv: Sequence[str], count: int) -> None:
        self.argv = [sys.executable, "-m", "mitmcache", *argv]
        self.count = count
        self.workers: dict[int, Worker] = {}
        self.stopping = asyncio.Event()

    async def run(self) -> Exit:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        starting = asyncio.create_task(self._start_all())
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([starting, stop], return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.result() is not None:
            stop.cancel()
            await self._stop_all()
            return Exit.STARTUP
        keepers = [asyncio.create_task(self._keep(i)) for i in range(1, self.count + 1)]
        await stop
        for task in (starting, *keepers):
            task.cancel()
        return await self._stop_all()

    async def _start_all(self) -> int | None:
        """The first worker alone (a bad setting is said once), then the others; the first
        worker's exit code if it could not start."""
        first = await self._start(1)
        if first is not None:
            log(f"the first worker could not start (exit code {first}): stopping")
            return first
        await asyncio.gather(*(self._start(i) for i in range(2, self.count + 1)))
        log(f"{self.count} worker(s) running: {', '.join(str(w.proc.pid) for w in self.workers.values())}")
        return None

    async def _start(self, index: int) -> int | None:
        """Start worker ``index`` and wait until it listens; its exit code if it died first."""
        read, write = os.pipe()
        env = {**os.environ, WORKER_VARIABLE: f"{index}/{self.count}", READY_VARIABLE: str(write)}
        proc = await asyncio.create_subprocess_exec(
            *self.argv, env=env, pass_fds=(write,), preexec_fn=_die_with_parent
        )
        os.close(write)
        self.workers[index] = Worker(index, proc, time.monotonic())
        ready = await asyncio.get_running_loop().run_in_executor(None, _read_ready, read)
        if ready:
            return None
        with contextlib.suppress(asyncio.TimeoutError):
            return await asyncio.wait_for(proc.wait(), 5)
        return -1

    async def _keep(self, index: int) -> None:
        """Start worker ``index`` again whenever it dies, backing off while it keeps dying."""
        delay = FIRST_DELAY
        while True:
            worker = self.workers[index]
            code = await worker.proc.wait()
            if time.monotonic() - worker.started >= STABLE_SECONDS:
                delay = FIRST_DELAY
            log(f"worker {index} (pid {worker.proc.pid}) exited with code {code}: restarting in {delay:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
            if await self._start(index) is None:
                log(f"worker {index} restarted (pid {self.workers[index].proc.pid})")

    async def _stop_all(self) -> Exit:
        running = [w.proc for w in self.workers.values() if w.proc.returncode is None]
        log(f"stopping {len(running)} worker(s)")
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        _, late = await asyncio.wait(
            [asyncio.create_task(p.wait()) for p in running], timeout=STOP_GRACE_SECONDS
        )
        result = Exit.STOPPED
        if late:
            result = Exit.KILLED
            for proc in running:
                if proc.returncode is None:
                    log(f"worker pid {proc.pid} did not stop within {STOP_GRACE_SECONDS:g} s: killed")
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(p.wait() for p in running))
        elif any(p.returncode not in (0, -signal.SIGTERM) for p in running):
            result = Exit.KILLED
        log(f"stopped (exit code {int(result)})")
        return result


def _read_ready(fd: int) -> bool:
    """Block until the worker reports it listens (True) or dies without doing so (False)."""
    try:
        return os.read(fd, 1) == b"1"
    finally:
        os.close(fd)


def supervise(argv: Sequence[str], count: int) -> int:
    return int(asyncio.run(Supervisor(argv, count).run()))
