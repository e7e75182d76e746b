"""Workers on one port (scripts/serve.sh --workers N), end to end: a real supervisor and its real
worker processes on a redis-server of the test's own, in front of a real origin."""

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_write_queue import burst, delivered_ids, pg_url, wait_until
from tests.support.harness import REPO_ROOT, Origin, clean_env, free_port, json_body
from tests.support.redis_server import RedisServer

__all__ = ["pg_url"]  # the write queue's PostgreSQL database fixture, used here too

KEY = "workers-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
SERVE = REPO_ROOT / "scripts" / "serve.sh"
RUN = REPO_ROOT / "scripts" / "run.sh"


class Workers:
    """``scripts/serve.sh --workers N`` in front of ``origin``; ``start()`` waits until every worker
    answers on the port."""

    def __init__(self, origin: Origin, count: int, settings: dict[str, str], tmp: Path) -> None:
        self.count = count
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [str(SERVE), "--workers", str(count), "--mode", f"reverse:{origin.url}@127.0.0.1:{self.port}"]
        for name, value in {"connection_strategy": "lazy", "termlog_verbosity": "warn", **settings}.items():
            args += ["--set", f"{name}={value}"]
        self.args = args
        self.log_path = tmp / f"workers-{self.port}.log"
        self.cwd = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> "Workers":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=self.cwd, env=clean_env({"MITMCACHE_SKIP_SETUP": "1"}), stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while len(self.pids()) < self.count:
            assert self.proc.poll() is None, f"supervisor exited {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"workers not all up in {timeout} s:\n{self.log()}"
            time.sleep(0.2)
        return self

    def health(self) -> dict:
        with httpx.Client(trust_env=False, timeout=5) as fresh:  # a new connection: any worker
            return json_body(fresh.get(f"{self.url}/__cache/health"))

    def pids(self, tries: int = 40) -> dict[int, int]:
        """worker number -> pid, as many as ``tries`` new connections find."""
        seen: dict[int, int] = {}
        for _ in range(tries):
            try:
                health = self.health()
            except httpx.HTTPError:
                continue
            seen[health["worker"]] = health["pid"]
            if len(seen) == self.count:
                break
        return seen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the supervisor did not stop in {timeout} s:\n{self.log()}") from None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def workers(origin, redis_server, tmp_path):
    started: list[Workers] = []

    def start(count: int = 2, **settings: str) -> Workers:
        w = Workers(
            origin, count, {"cache_store": redis_server.url, "cache_admin_key": KEY, **settings}, tmp_path
        )
        started.append(w)
        return w.start()

    yield start
    for w in started:
        if w.proc is not None and w.proc.poll() is None:
            w.stop(signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_share_one_port_and_one_cache(origin, workers):
    origin.route("/a", headers={"Cache-Control": "max-age=60"}, body="shared")
    w = workers(2)
    answered_by, caches = set(), []
    for _ in range(30):
        with httpx.Client(trust_env=False, timeout=5) as fresh:
            response = fresh.get(f"{w.url}/a")
            caches.append(response.headers["x-cache"])
            answered_by.add(json_body(fresh.get(f"{w.url}/__cache/stats", headers=AUTH))["worker"])
    assert answered_by == {1, 2}
    assert caches.count("MISS") == 1 and origin.count("/a") == 1


async def test_a_herd_spread_over_the_workers_makes_one_upstream_request(origin, workers):
    origin.route("/herd", headers={"Cache-Control": "max-age=60"}, body="herd", delay=0.5)
    w = workers(2)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=20, limits=limits, trust_env=False) as client:
        answers = await asyncio.gather(*(client.get(f"{w.url}/herd") for _ in range(100)))
    assert {a.status_code for a in answers} == {200} and {a.text for a in answers} == {"herd"}
    assert origin.count("/herd") == 1


def test_a_purge_through_one_worker_reaches_the_other(origin, workers):
    origin.route("/p", headers={"Cache-Control": "max-age=60"}, body="p")
    w = workers(2)
    assert len(w.pids()) == 2
    for _ in range(10):
        httpx.get(f"{w.url}/p", trust_env=False)
    purged = httpx.post(f"{w.url}/__cache/purge", json={"url": "/p"}, headers=AUTH, trust_env=False)
    assert json_body(purged)["purged"] == 1
    time.sleep(0.2)
    answers = [httpx.get(f"{w.url}/p", trust_env=False).headers["x-cache"] for _ in range(10)]
    assert answers.count("MISS") == 1 and origin.count("/p") == 2


def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(origin, workers):
    origin.route("/k", headers={"Cache-Control": "max-age=60"}, body="k")
    w = workers(2)
    before = w.pids()
    os.kill(before[2], signal.SIGKILL)
    for _ in range(20):  # the other worker answers meanwhile
        assert httpx.get(f"{w.url}/k", trust_env=False, timeout=5).status_code == 200
    deadline = time.monotonic() + 60
    while (after := w.pids()).get(2) in (None, before[2]):
        assert time.monotonic() < deadline, w.log()
        time.sleep(0.2)
    assert after[1] == before[1] and alive(after[2])
    assert f"worker 2 (pid {before[2]}) exited with code -9: restarting" in w.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_worker_cleanly_with_exit_code_0(origin, workers, sig):
    w = workers(2)
    pids = w.pids()
    assert w.stop(sig) == 0
    assert not any(alive(pid) for pid in pids.values())
    assert "stopped (exit code 0)" in w.log()


@pytest.mark.parametrize("store", ["memory", "disk"])
def test_more_than_one_worker_on_a_store_that_cannot_be_shared_is_refused(origin, tmp_path, store):
    w = Workers(origin, 2, {"cache_store": store}, tmp_path)
    with open(w.log_path, "wb") as log:
        code = subprocess.run(
            w.args,
            check=False,
            cwd=tmp_path,
            env=clean_env({"MITMCACHE_SKIP_SETUP": "1"}),
            stdout=log,
            stderr=log,
            timeout=60,
        ).returncode
    assert code == 1
    assert "2 workers need a shared store (CACHE_STORE=redis://...)" in w.log()
    assert w.log().count("need a shared store") == 1  # said once: the other worker never started


def test_one_worker_on_the_disk_store_is_supervised(origin, tmp_path):
    origin.route("/d", headers={"Cache-Control": "max-age=60"}, body="d")
    w = Workers(origin, 1, {"cache_store": "disk"}, tmp_path).start()
    try:
        assert httpx.get(f"{w.url}/d", trust_env=False).status_code == 200
        assert w.health()["worker"] == 1
    finally:
        assert w.stop() == 0
    assert (tmp_path / "data" / "cache.db").exists()


@pytest.mark.parametrize("value", ["0", "two", "-1", ""])
def test_a_bad_workers_value_is_a_usage_error(origin, tmp_path, value):
    result = subprocess.run(
        check=False,
        args=[str(SERVE), "--workers", value, "--mode", f"reverse:{origin.url}@127.0.0.1:{free_port()}"],
        env=clean_env({"MITMCACHE_SKIP_SETUP": "1"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--workers: expected a whole number from 1 to 256" in result.stderr


@pytest.mark.parametrize("tool", [{}, {"MITMWEB": "1"}])
def test_workers_without_production_are_refused(origin, tool):
    result = subprocess.run(
        [str(RUN), origin.url],
        check=False,
        env=clean_env({"WORKERS": "2", "LISTEN_PORT": str(free_port()), **tool}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "WORKERS=2 needs PRODUCTION=1" in result.stderr


def test_run_sh_with_workers_and_production_runs_them(origin, redis_server, tmp_path):
    port = free_port()
    env = clean_env(
        {"WORKERS": "2", "PRODUCTION": "1", "LISTEN_PORT": str(port), "CACHE_STORE": redis_server.url}
    )
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(RUN), origin.url], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 90
        while seen != {1, 2}:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            try:
                with httpx.Client(trust_env=False, timeout=5) as fresh:
                    seen.add(json_body(fresh.get(f"http://127.0.0.1:{port}/__cache/health"))["worker"])
            except httpx.HTTPError:
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert "--workers 2" in log_path.read_text()  # run.sh's command line


# -- the write queue with workers ----------------------------------------------------------------------


@pytest.mark.parametrize("queue", ["sqlite", "postgresql"])
def test_the_write_queue_with_two_workers_delivers_each_write_once(origin, workers, queue, request):
    origin.route("/events/shared", status=200, delay=0.02)
    settings = {"async_routes": "POST /events/*", "async_request_timeout": "2", "async_workers": "4"}
    if queue == "postgresql":
        settings["async_queue_url"] = request.getfixturevalue("pg_url")
    w = workers(2, **settings)
    accepted = burst(w, 300, "/events/shared", threads=8)  # new connections reach both workers
    assert len(accepted) == 300
    wait_until(lambda: set(accepted) <= set(delivered_ids(origin)), timeout=90, what="every write delivered")
    assert set(delivered_ids(origin).values()) == {1}
    if queue == "sqlite":
        assert (w.cwd / "data" / "queue.db").exists()  # one file in the shared data directory
