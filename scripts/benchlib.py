"""Shared pieces of the benchmark scripts (``bench.py``, ``bench_memory.py``, ``bench_coalescing.py``).

Not product code and not tests: processes on loopback, ``wrk`` runs, ``/proc`` readings and a small raw
HTTP/1.1 client that can hold 1000 connections without the client itself becoming the bottleneck.

Core layout (on a machine with >= 2 cores): every proxy under test runs on core 0
(``taskset -c 0``); the load generators (``wrk``, the asyncio clients in this process) and the origin
run on core 1. mitmproxy runs one event loop on one thread, so one core is all it can use; keeping the
client and origin off that core means the proxy's numbers are not eaten by its own load.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.harness import (
    MITMDUMP,
    Origin,
    clean_env,
    free_port,
    pattern_sha256,
    session_confdir,
)

__all__ = [
    "ADDON",
    "ADMIN_KEY",
    "CEILING_ADDON",
    "LOAD_CORE",
    "MITMDUMP",
    "MITMWEB",
    "PROXY_CORE",
    "Origin",
    "Server",
    "pattern_sha256",
]

MITMWEB = MITMDUMP.with_name("mitmweb")
ADDON = REPO_ROOT / "addons" / "cache.py"
CEILING_ADDON = REPO_ROOT / "scripts" / "ceiling_addon.py"
# The lean production launcher (docs/launcher.md): our addon is built in; -s addons/cache.py is accepted.
LEAN = REPO_ROOT / "scripts" / "serve.sh"
ADMIN_KEY = "bench-admin-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

_CORES = sorted(os.sched_getaffinity(0))
PROXY_CORE: int | None = _CORES[0] if len(_CORES) >= 2 else None
LOAD_CORE: int | None = _CORES[1] if len(_CORES) >= 2 else None

# Options every mitmproxy under test gets, so that the configurations differ only in what they measure.
COMMON_OPTIONS = (
    "--set",
    "connection_strategy=lazy",
    "--set",
    "flow_detail=0",
    "--set",
    "termlog_verbosity=warn",
    "--set",
    "confdir={confdir}",
)


def reverse_proxy(*extra: str, tool: Path = MITMDUMP) -> tuple[str, ...]:
    """A proxy command line template: ``{upstream}``, ``{port}``, ``{confdir}``, ``{web_port}`` are filled in."""
    return (str(tool), "--mode", "reverse:{upstream}@127.0.0.1:{port}", *COMMON_OPTIONS, *extra)


def cache_proxy(*settings: str, tool: Path = MITMDUMP) -> tuple[str, ...]:
    """Our addon, as a user runs it, plus ``--set`` pairs (``"cache_ttl=2"``, ...)."""
    sets = [x for s in settings for x in ("--set", s)]
    return reverse_proxy("-s", str(ADDON), "--set", f"cache_admin_key={ADMIN_KEY}", *sets, tool=tool)


CACHE_DEFAULT = cache_proxy()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- machine, processes ---------------------------------------------------------------------------


def pin(pid: int, core: int | None) -> None:
    if core is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {core})


def pinned(argv: Sequence[str], core: int | None) -> list[str]:
    """``argv`` prefixed with ``taskset -c CORE`` (so the printed command can be pasted as it is)."""
    if core is None or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", str(core), *argv]


def raise_fd_limit(want: int = 65536) -> int:
    """Raise this process's soft fd limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
    return out


def rss(pid: int) -> int:
    return memory(pid)["VmRSS"]


class RssSampler:
    """Samples a process's RSS in a thread; ``peak`` is the highest seen (VmHWM cannot be reset)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def wait_fds_at_most(pid: int, at_most: int, timeout: float = 10) -> None:
    """Wait until connections of an earlier step are closed on the server side too."""
    deadline = time.perf_counter() + timeout
    while open_fds(pid) > at_most and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)


async def wait_accepted(pid: int, at_least: int, timeout: float = 5, settle: float = 0.5) -> int:
    """Wait until the process holds ``at_least`` fds, or their number stopped growing for ``settle``
    seconds (or ``timeout``); returns the number of fds.

    A client's connect() returns once the kernel completed the handshake, which may be before the
    server accepted it: a burst larger than the listen backlog (asyncio's default is 100; the cache
    sets CACHE_LISTEN_BACKLOG) overflows the accept queue. With SYN cookies on, the overflowing
    connections look established to the client and are only accepted when their first request arrives.
    """
    deadline = time.perf_counter() + timeout
    last, last_change = -1, time.perf_counter()
    while True:
        fds = open_fds(pid)
        now = time.perf_counter()
        if fds != last:
            last, last_change = fds, now
        if fds >= at_least or now > deadline or now - last_change > settle:
            return fds
        await asyncio.sleep(0.02)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    import mitmproxy.version

    return {
        "cpu": model,
        "cores_visible": len(_CORES),
        "load_average_at_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "mitmproxy": mitmproxy.version.VERSION,
        "commit": commit,
        "proxy_core": PROXY_CORE,
        "load_core": LOAD_CORE,
    }


def layout_text() -> str:
    if PROXY_CORE is None:
        return "fewer than 2 cores visible: nothing pinned (proxy, origin and load generator share the CPU)"
    return (
        f"proxy under test on core {PROXY_CORE} (taskset -c {PROXY_CORE}); load generator (wrk -t1, or this "
        f"script's asyncio clients), origin and this script on core {LOAD_CORE}"
    )


class Server:
    """A proxy process started from a command line template; stopped by its own PID only."""

    def __init__(
        self,
        name: str,
        template: Sequence[str],
        upstream: str,
        *,
        core: int | None = PROXY_CORE,
        addon_health: bool | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.web_port = free_port() if any("{web_port}" in a for a in template) else None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        values = {
            "upstream": upstream,
            "port": self.port,
            "confdir": session_confdir(),
            "web_port": self.web_port,
            "repo": REPO_ROOT,
        }
        self.argv = pinned([a.format(**values) for a in template], core)
        self.addon_health = str(ADDON) in self.argv if addon_health is None else addon_health
        self.env = clean_env(env)
        self.log_path = self.workdir / "proxy.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.idle_fds = 0  # open fds once ready: listening sockets, logs, the upstream pool

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command_line(self) -> str:
        return " ".join(self.argv)

    def start(self, timeout: float = 30.0) -> Self:
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _started.append(self)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                status, _, body = http_get_once("127.0.0.1", self.port, "/__cache/health", timeout=2)
                if not self.addon_health:
                    break
                with contextlib.suppress(ValueError):
                    if status == 200 and json.loads(body).get("service") == "mitmcache":
                        break
                last = f"{status} {body[:200]!r}"
            except OSError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready in {timeout}s ({last}):\n{self.log_text()}")
            time.sleep(0.05)
        time.sleep(0.2)
        self.idle_fds = open_fds(self.pid)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in _started:
            _started.remove(self)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def stats(self) -> dict[str, Any]:
        """Our addon's ``/__cache/stats``."""
        status, _, body = http_get_once(
            "127.0.0.1", self.port, "/__cache/stats", headers={"Clear-Cache-Key": ADMIN_KEY}
        )
        if status != 200:
            raise RuntimeError(f"stats: {status} {body[:300]!r}")
        return json.loads(body)


_X_CACHE_FIELDS = {
    "HIT": "hits",
    "STALE": "stale_hits",
    "MISS": "misses",
    "COALESCED": "coalesced",
    "REVALIDATED": "revalidated",
    "BYPASS": "bypasses",
}


def served(stats: Mapping[str, Any], x_cache: str) -> int:
    """How many replies with this X-Cache the stats count (current and older stats layouts)."""
    if "counts" in stats:
        return int(stats["counts"].get(x_cache, 0))
    return int(stats.get(_X_CACHE_FIELDS[x_cache], 0))


_started: list[Server] = []


def stop_all() -> None:
    for server in _started.copy():
        with contextlib.suppress(Exception):
            server.cleanup()


def start_origin() -> Origin:
    """The test origin (tests/support/origin.py), pinned to the load core."""
    origin = Origin().start()
    pin(origin_pid(origin), LOAD_CORE)
    return origin


def origin_pid(origin: Origin) -> int:
    # CPU/RSS of the "upstream alone" row need the origin's PID; the harness exposes it for Proxy only.
    pid = getattr(origin, "pid", None)
    return int(pid) if pid is not None else origin._proc.pid  # type: ignore[union-attr]


def origin_request_count(origin: Origin) -> int:
    """Requests the origin has logged, without downloading the (possibly huge) log."""
    return int(origin._control("GET", "health")["requests"])


# -- a small blocking HTTP/1.1 GET (readiness, stats) ----------------------------------------------


def http_get_once(
    host: str, port: int, path: str, headers: Mapping[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, fields = parse_head(head)
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return status, fields, body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """An HTTP/1.1 response head (without its blank line): the status code, and the fields by
    lower-case name."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return status, fields


def _dechunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


# -- asyncio raw HTTP/1.1 client (1000 connections, herds, hot keys) -------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body_sha256: str
    size: int
    started: float  # time.perf_counter() when the request was written
    finished: float  # when the last body byte arrived
    body: bytes | None = None  # kept for bodies up to KEEP_BODY bytes

    @property
    def latency(self) -> float:
        return self.finished - self.started


KEEP_BODY = 64 * 1024


def _keep(kept: list[bytes] | None, chunk: bytes, size: int) -> list[bytes] | None:
    if kept is None or size > KEEP_BODY:
        return None
    kept.append(chunk)
    return kept


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int, timeout: float = 30) -> "Connection":
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 20), timeout)
        return cls(reader, writer, f"{host}:{port}")

    def send(self, path: str, headers: Mapping[str, str] | None = None) -> float:
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return time.perf_counter()

    async def receive(self, started: float, read_size: int = 1 << 18) -> Reply:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, fields = parse_head(head[:-4])
        digest = hashlib.sha256()
        size = 0
        kept: list[bytes] | None = []
        if fields.get("transfer-encoding", "").lower() == "chunked":
            while True:
                line = await self.reader.readuntil(b"\r\n")
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                chunk = await self.reader.readexactly(n + 2)
                digest.update(chunk[:-2])
                size += n
                kept = _keep(kept, chunk[:-2], size)
        else:
            remaining = int(fields.get("content-length", "0"))
            while remaining:
                chunk = await self.reader.read(min(read_size, remaining))
                if not chunk:
                    raise ConnectionError(f"connection closed with {remaining} body bytes missing")
                digest.update(chunk)
                size += len(chunk)
                remaining -= len(chunk)
                kept = _keep(kept, chunk, size)
        body = b"".join(kept) if kept is not None else None
        return Reply(status, fields, digest.hexdigest(), size, started, time.perf_counter(), body)

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        started = self.send(path, headers)
        return await self.receive(started)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def open_many(host: str, port: int, n: int, timeout: float = 60) -> tuple[list[Connection], int]:
    """Open ``n`` connections concurrently; returns the open ones and how many failed."""
    results = await asyncio.gather(
        *(Connection.open(host, port, timeout) for _ in range(n)), return_exceptions=True
    )
    conns = [r for r in results if isinstance(r, Connection)]
    return conns, n - len(conns)


async def close_all(conns: Iterable[Connection]) -> None:
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


async def _herd_client(host: str, port: int, path: str, started: float, timeout: float) -> Reply:
    conn = await Connection.open(host, port, timeout)
    try:
        conn.send(path)
        return await conn.receive(started)
    finally:
        await conn.close()


async def herd(ports: Sequence[int], path: str, n: int, timeout: float) -> list[Reply | BaseException]:
    """``n`` clients that connect at the same instant, each sending its request at once (to the
    ports in turn), and leave with the answer: what a listen backlog and coalescing must absorb
    (opening connections in waves hides a short backlog). A latency counts from the herd's start,
    connecting included; a client without an answer within ``timeout`` fails."""
    started = time.perf_counter()
    clients = (
        asyncio.wait_for(_herd_client("127.0.0.1", ports[i % len(ports)], path, started, timeout), timeout)
        for i in range(n)
    )
    return await asyncio.gather(*clients, return_exceptions=True)


HERD_ROUNDS, QUICK_HERD_ROUNDS = 3, 1  # rounds of every herd scenario (bench.py --herd-rounds)


def herd_rounds(quick: bool, rounds: int | None = None) -> int:
    """How many rounds a herd scenario runs: ``rounds`` when given, else the default for the mode."""
    return rounds or (QUICK_HERD_ROUNDS if quick else HERD_ROUNDS)


def cold_herds(
    origin: Origin, ports: Sequence[int], clients: int, repeats: int, label: str
) -> list[dict[str, Any]]:
    """``repeats`` herds (``herd``), each on a key not asked for before (``/herd?cold=R``): their
    summaries, with how many requests each made upstream (``upstream_requests``)."""
    results = []
    for r in range(repeats):
        path = f"/herd?cold={r}"
        result = herd_summary(asyncio.run(herd(ports, path, clients, 60)))
        result["upstream_requests"] = origin.count(path)
        results.append(result)
        log(
            f"{label} round {r + 1}: upstream {result['upstream_requests']}, errors "
            f"{result['error_count']}, p99 {fmt((result['p99'] or 0) * 1000, 0)} ms"
        )
    return results


def herd_summary(replies: Sequence[Reply | BaseException]) -> dict[str, Any]:
    """Failures by kind (an exception, or a status other than 200), distinct bodies, X-Cache values
    and latency percentiles of a herd's replies."""
    ok = [r for r in replies if isinstance(r, Reply)]
    errors: Counter[str] = Counter(type(r).__name__ for r in replies if not isinstance(r, Reply))
    errors.update(f"status {r.status}" for r in ok if r.status != 200)
    latencies = [r.latency for r in ok]
    return {
        "n": len(replies),
        "answered": len(ok),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "bodies": len({r.body_sha256 for r in ok if r.status == 200}),
        "sha256": next(iter({r.body_sha256 for r in ok}), None),
        "x_cache": dict(Counter(r.headers.get("x-cache", "-") for r in ok)),
        "p50": percentile(latencies, 50) if latencies else None,
        "p99": percentile(latencies, 99) if latencies else None,
        "max": max(latencies) if latencies else None,
    }


# -- wrk -------------------------------------------------------------------------------------------

WRK_INSTALL_HINT = "install it with: apt-get update && apt-get install -y wrk   (Debian/Ubuntu package 'wrk')"


def ensure_wrk() -> str:
    """The path of ``wrk``; installs the Debian package when missing and we are root with apt-get."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk not found: installing the Debian package (apt-get update && apt-get install -y wrk)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            done = subprocess.run(
                cmd, check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
            )
            if done.returncode != 0:
                sys.exit(f"bench: '{' '.join(cmd)}' failed:\n{done.stdout}{done.stderr}\n{WRK_INSTALL_HINT}")
        found = shutil.which("wrk")
    if not found:
        sys.exit(f"bench: the load generator 'wrk' is not installed; {WRK_INSTALL_HINT}")
    return found


# done() prints one JSON line; request() (unique mode) makes every request a new cache key;
# response() (limit mode) stops after a fixed number of responses; a 4th and 5th argument set the
# method and body (writes).
_WRK_LUA = r"""
local mode, prefix, limit = "fixed", "k", 0
local counter, seen = 0, 0
function init(args)
  mode = args[1] or "fixed"
  prefix = args[2] or "k"
  limit = tonumber(args[3] or "0")
  if args[4] and args[4] ~= "" then
    wrk.method = args[4]
    wrk.body = args[5] or ""
  end
  if mode == "unique" then
    request = function()
      counter = counter + 1
      return wrk.format(nil, wrk.path .. "?u=" .. prefix .. "-" .. counter)
    end
  end
  if limit > 0 then
    -- wrk's main thread sleeps for the whole -d duration even when a thread stops, so tell the
    -- caller, which interrupts wrk (SIGINT: wrk stops and reports as usual).
    response = function()
      seen = seen + 1
      if seen == limit then
        io.write("WRKLIMIT\n")
        io.flush()
        wrk.thread:stop()
      end
    end
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f, "max_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int] = field(default_factory=dict)
    cpu_s: float | None = None  # CPU time of the measured server process during the run

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.cpu_s is None or not self.requests:
            return None
        return self.cpu_s * 1000 / self.requests

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_ms_per_request": self.cpu_ms_per_request}


_lua_path: Path | None = None


def _lua_script() -> Path:
    global _lua_path
    if _lua_path is None:
        fd, name = tempfile.mkstemp(prefix="bench-", suffix=".lua")
        os.write(fd, _WRK_LUA.encode())
        os.close(fd)
        _lua_path = Path(name)
    return _lua_path


_unique_runs = 0


def _run_until_done(argv: list[str], timeout: float) -> tuple[str, str, int]:
    """Run wrk; interrupt it (SIGINT) as soon as it prints WRKLIMIT, or at ``timeout``."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        lines = []
        try:
            for out_line in proc.stdout:
                lines.append(out_line)
                if out_line.startswith("WRKLIMIT"):
                    proc.send_signal(signal.SIGINT)
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        return "".join(lines), err.read().decode(errors="replace"), proc.returncode


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    unique: bool = False,
    limit: int = 0,
    measure_pid: int | None = None,
    headers: Sequence[str] = (),
    timeout: float = 10,
    method: str = "",
    body: str = "",
) -> WrkResult:
    """One wrk run (one thread, on the load core) against ``url``; ``unique`` appends ``?u=<new>``;
    ``method`` and ``body`` make it send writes (default: GET without a body)."""
    global _unique_runs
    _unique_runs += 1
    prefix = f"{os.getpid()}-{time.time_ns()}-{_unique_runs}"
    argv = [
        ensure_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout:g}s",
    ]
    for h in headers:
        argv += ["-H", h]
    argv += ["-s", str(_lua_script()), url, "--", "unique" if unique else "fixed", prefix, str(limit)]
    if method:
        argv += [method, body]
    cpu_before = cpu_seconds(measure_pid) if measure_pid else None
    stdout, stderr, returncode = _run_until_done(pinned(argv, LOAD_CORE), seconds + 120)
    cpu_after = cpu_seconds(measure_pid) if measure_pid else None
    line = next((x for x in stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({returncode}): {' '.join(argv)}\n{stdout}\n{stderr}")
    data = json.loads(line[len("WRKJSON ") :])
    secs = data["duration_us"] / 1e6
    detail = {k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    return WrkResult(
        requests=data["requests"],
        seconds=secs,
        rps=data["requests"] / secs if secs else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=sum(detail.values()),
        error_detail=detail,
        cpu_s=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
    )


# -- reporting ------------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Budget:
    name: str
    measured: str
    target: str
    ok: bool | None  # None: not measured (skipped)
    note: str = ""

    def line(self) -> str:
        verdict = "SKIP" if self.ok is None else "PASS" if self.ok else "MISS"
        note = f" ({self.note})" if self.note else ""
        return f"{verdict}: {self.name}: {self.measured} (target {self.target}){note}"


@dataclass
class Section:
    """What one scenario reports: a markdown block, its budgets, and raw data for ``--json``."""

    title: str
    markdown: str
    budgets: list[Budget] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seconds": round(self.seconds, 1),
            "budgets": [asdict(b) | {"line": b.line()} for b in self.budgets],
            "data": self.data,
        }
